"""Generation parameters and the LAB pipelines' definitions: what shapes generated data, pure and cheap.

`GenerationParams` (every field enters the cache key), the three `Pipeline`s and their prompt
templates, `pipeline_for` a leaf, and `expected_requests`, the planner's estimate that the reviewer
report shows. No I/O and nothing heavy: the contributor path (labtax report) imports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from labtax.errors import UsageError
from labtax.sdg.prompts import PromptTemplate, load_prompt
from labtax.taxonomy.leaf import Leaf, LeafKind

PIPELINE_VERSION = 1
# instruction: 1 when the instruction judge kept it; pair: LAB's 1-3 rating; faithfulness 0/1, relevance and
# question_quality 1-3 from the knowledge judge. -1 where the pipeline has no such judge.
SCORE_KEYS = ("instruction", "pair", "faithfulness", "relevance", "question_quality")

# Assumed keep rates, used to size the first round and to estimate a plan's requests; later
# rounds use the rates measured on the leaf itself.
NOMINAL_INSTRUCTION_KEEP = 0.8
NOMINAL_PAIR_KEEP = 0.67
NOMINAL_KNOWLEDGE_KEEP = 0.8


@dataclass(frozen=True)
class GenerationParams:
    """Everything that shapes generated data; all of it (per kind) is part of the cache key."""

    target: int | None = None  # overrides the per-kind defaults below
    knowledge_target: int = 100
    skill_target: int = 50
    temperature: float = 0.7
    judge_temperature: float = 0.0
    max_tokens: int = 1024
    judge_max_tokens: int = 256
    budget_factor: float = 10.0  # request budget per leaf = budget_factor × target
    instructions_per_request: int = 5
    contexts_per_request: int = 3
    questions_per_context: int = 3
    pairs_per_chunk: int = 3
    chunk_size: int = 400
    chunk_overlap: int = 50
    chunker: str = "words"  # "words", or the name of the tokenizer that measures chunks
    examples_in_prompt: int = 3
    max_rounds: int = 20

    def target_for(self, kind: LeafKind) -> int:
        if self.target is not None:
            return self.target
        return self.knowledge_target if kind is LeafKind.KNOWLEDGE else self.skill_target

    def budget_for(self, kind: LeafKind) -> int:
        return max(1, math.ceil(self.target_for(kind) * self.budget_factor))

    def validate(self) -> None:
        positive = (
            "knowledge_target",
            "skill_target",
            "max_tokens",
            "judge_max_tokens",
            "instructions_per_request",
            "contexts_per_request",
            "questions_per_context",
            "pairs_per_chunk",
            "chunk_size",
            "examples_in_prompt",
            "max_rounds",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise UsageError(f"generation parameter {name} must be at least 1 (it is {getattr(self, name)})")
        if self.target is not None and self.target < 1:
            raise UsageError("--target must be at least 1")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise UsageError("the chunk overlap must be at least 0 and smaller than the chunk size")
        if self.budget_factor <= 0:
            raise UsageError("the request budget factor must be positive")
        if not (0 <= self.temperature <= 2 and 0 <= self.judge_temperature <= 2):
            raise UsageError("temperatures must be between 0 and 2")

    def key_fields(self, kind: LeafKind) -> dict[str, Any]:
        """The parameters that matter for a leaf of `kind`, as they enter its cache key."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("target", "knowledge_target", "skill_target"):
            values.pop(name)
        values["target"] = self.target_for(kind)
        if kind is not LeafKind.KNOWLEDGE:
            for name in ("pairs_per_chunk", "chunk_size", "chunk_overlap", "chunker"):
                values.pop(name)
        return values


@dataclass(frozen=True)
class Pipeline:
    name: str  # "freeform_skill" | "grounded_skill" | "knowledge"
    prompts: tuple[str, ...]
    version: int = PIPELINE_VERSION

    @property
    def templates(self) -> tuple[PromptTemplate, ...]:
        return tuple(load_prompt(name) for name in self.prompts)

    @property
    def prompt_version(self) -> str:
        """The templates and their versions, as samples record them: `knowledge_qa@1,knowledge_judge@1`."""
        return ",".join(template.label for template in self.templates)


FREEFORM = Pipeline("freeform_skill", ("freeform_instructions", "instruction_judge", "response", "pair_judge"))
GROUNDED = Pipeline("grounded_skill", ("grounded_contexts", "grounded_questions", "response", "pair_judge"))
KNOWLEDGE = Pipeline("knowledge", ("knowledge_qa", "knowledge_judge"))


def pipeline_for(leaf: Leaf) -> Pipeline:
    return {LeafKind.KNOWLEDGE: KNOWLEDGE, LeafKind.GROUNDED_SKILL: GROUNDED}.get(leaf.kind, FREEFORM)


def expected_requests(kind: LeafKind, params: GenerationParams) -> int:
    """Requests a leaf needs to reach its target at the nominal keep rates (capped by its budget)."""
    target = params.target_for(kind)
    if kind is LeafKind.KNOWLEDGE:
        pairs = math.ceil(target / NOMINAL_KNOWLEDGE_KEEP)
        estimate = math.ceil(pairs / params.pairs_per_chunk) + pairs
    elif kind is LeafKind.GROUNDED_SKILL:
        questions = math.ceil(target / NOMINAL_PAIR_KEEP)
        contexts = math.ceil(questions / params.questions_per_context)
        estimate = math.ceil(contexts / params.contexts_per_request) + contexts + 2 * questions
    else:
        instructions = math.ceil(target / (NOMINAL_INSTRUCTION_KEEP * NOMINAL_PAIR_KEEP))
        judged_in = math.ceil(instructions * NOMINAL_INSTRUCTION_KEEP)
        estimate = math.ceil(instructions / params.instructions_per_request) + instructions + 2 * judged_in
    return min(estimate, params.budget_for(kind))
