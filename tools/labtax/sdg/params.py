"""Generation parameters and the LAB pipelines' definitions: what shapes generated data, pure and cheap.

`GenerationParams` (every field enters the cache key, per kind), the three `Pipeline`s with their
stages and prompt templates, `pipeline_for` a leaf, and `expected_requests`, the planner's estimate
that `generate --dry-run`, the reviewer report, the release notes and the run summary all show. No
I/O and nothing heavy: the contributor path (labtax report) imports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from labtax.errors import UsageError
from labtax.sdg.prompts import PromptTemplate, load_prompt
from labtax.taxonomy.leaf import Leaf, LeafKind

# 2: streaming pipelines, free-text answers, the grounded question filter, three knowledge judges.
PIPELINE_VERSION = 2
# Every sample carries every key, an integer, -1 where its pipeline has no such judge:
# instruction: the instruction judge's 0/1; pair: LAB's 1-3 rating of a skill pair; faithfulness 0/1,
# relevance 0-2 (knowledge); question_quality 0/1 (the knowledge question judge or the grounded question filter).
SCORE_KEYS = ("instruction", "pair", "faithfulness", "relevance", "question_quality")


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
    candidates_per_prompt: int = 1  # responses per skill instruction (2+: answers to one prompt, for preference pairs)
    chunk_size: int = 400
    chunk_overlap: int = 50
    chunker: str = "words"  # "words", or the name of the tokenizer that measures chunks
    examples_in_prompt: int = 3
    min_pair_score: int = 2  # LAB's 3-point pair rating: keep 2 and 3 (InstructLab's filter: >= 2)
    min_relevance: int = 2  # knowledge relevance, 0-2: InstructLab's filter keeps its top score, 2
    min_question_quality: int = 1  # question judges, 0/1: keep 1

    def target_for(self, kind: LeafKind) -> int:
        if self.target is not None:
            return self.target
        return self.knowledge_target if kind is LeafKind.KNOWLEDGE else self.skill_target

    def budget_for(self, kind: LeafKind) -> int:
        """budget_factor × target, but never less than two first-stage requests can lead to: a small target
        must still afford a whole candidate or two of a wide pipeline (a grounded request fans out 3 × 3)."""
        return max(math.ceil(self.target_for(kind) * self.budget_factor), 2 * chain_cost(kind, self))

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
            "candidates_per_prompt",
            "chunk_size",
            "examples_in_prompt",
        )
        for name in positive:
            if getattr(self, name) < 1:
                option = {"max_tokens": "--max-tokens", "judge_max_tokens": "--judge-max-tokens"}.get(name, name)
                raise UsageError(f"generation parameter {option} must be at least 1 (it is {getattr(self, name)})")
        if self.target is not None and self.target < 1:
            raise UsageError("--target must be at least 1")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise UsageError("the chunk overlap must be at least 0 and smaller than the chunk size")
        if self.budget_factor <= 0:
            raise UsageError("the request budget factor must be positive")
        if not (0 <= self.temperature <= 2 and 0 <= self.judge_temperature <= 2):
            raise UsageError("temperatures must be between 0 and 2")
        for name, low, high in (("min_pair_score", 1, 3), ("min_relevance", 0, 2), ("min_question_quality", 0, 1)):
            if not low <= getattr(self, name) <= high:
                raise UsageError(f"generation parameter {name} must be between {low} and {high}")

    def key_fields(self, kind: LeafKind) -> dict[str, Any]:
        """The parameters that matter for a leaf of `kind`, as they enter its cache key."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("target", "knowledge_target", "skill_target"):
            values.pop(name)
        values["target"] = self.target_for(kind)
        if kind is not LeafKind.KNOWLEDGE:
            for name in ("pairs_per_chunk", "chunk_size", "chunk_overlap", "chunker", "min_relevance"):
                values.pop(name)
        else:
            for name in ("instructions_per_request", "contexts_per_request", "questions_per_context",
                         "candidates_per_prompt", "min_pair_score"):  # fmt: skip
                values.pop(name)
        if kind is LeafKind.FREEFORM_SKILL:
            for name in ("contexts_per_request", "questions_per_context", "min_question_quality"):
                values.pop(name)
        if kind is LeafKind.GROUNDED_SKILL:
            values.pop("instructions_per_request")
        return values


@dataclass(frozen=True)
class Stage:
    """One step of a pipeline: its prompt template and the share of its candidates it is assumed to keep
    (the planner's estimate and the first guess of a run, which then measures its own)."""

    template: str
    nominal_keep: float
    judge: bool = False


@dataclass(frozen=True)
class Pipeline:
    name: str  # "freeform_skill" | "grounded_skill" | "knowledge"
    stages: tuple[Stage, ...]
    version: int = PIPELINE_VERSION

    @property
    def prompts(self) -> tuple[str, ...]:
        return tuple(stage.template for stage in self.stages)

    @property
    def templates(self) -> tuple[PromptTemplate, ...]:
        return tuple(load_prompt(name) for name in self.prompts)

    @property
    def prompt_version(self) -> str:
        """The templates and their versions, as samples record them: `knowledge_qa@2,knowledge_faithfulness@1,...`."""
        return ",".join(template.label for template in self.templates)


FREEFORM = Pipeline(
    "freeform_skill",
    (
        Stage("freeform_instructions", 0.9),
        Stage("instruction_judge", 0.8, judge=True),
        Stage("response", 0.95),
        Stage("pair_judge", 0.67, judge=True),
    ),
)
GROUNDED = Pipeline(
    "grounded_skill",
    (
        Stage("grounded_contexts", 0.9),
        Stage("grounded_questions", 0.9),
        Stage("grounded_question_judge", 0.8, judge=True),
        Stage("response", 0.95),
        Stage("pair_judge", 0.67, judge=True),
    ),
)
KNOWLEDGE = Pipeline(
    "knowledge",
    (
        Stage("knowledge_qa", 0.9),
        Stage("knowledge_faithfulness", 0.9, judge=True),
        Stage("knowledge_relevance", 0.8, judge=True),
        Stage("knowledge_question", 0.9, judge=True),
    ),
)


def pipeline_for(leaf: Leaf | LeafKind) -> Pipeline:
    kind = leaf.kind if isinstance(leaf, Leaf) else leaf
    return {LeafKind.KNOWLEDGE: KNOWLEDGE, LeafKind.GROUNDED_SKILL: GROUNDED}.get(kind, FREEFORM)


def stage_shapes(kind: LeafKind, params: GenerationParams) -> tuple[tuple[int, int], ...]:
    """Per stage: (requests per candidate entering it, candidates out per candidate entering it). A first
    stage's "candidate" is the request itself; the response stage asks `candidates_per_prompt` times."""
    k = params.candidates_per_prompt
    if kind is LeafKind.KNOWLEDGE:
        return ((1, params.pairs_per_chunk), (1, 1), (1, 1), (1, 1))
    if kind is LeafKind.GROUNDED_SKILL:
        return ((1, params.contexts_per_request), (1, params.questions_per_context), (1, 1), (k, 1), (k, 1))
    return ((1, params.instructions_per_request), (1, 1), (k, 1), (k, 1))


def chain_cost(kind: LeafKind, params: GenerationParams) -> int:
    """The most requests one first-stage request can lead to, every candidate of it going all the way."""
    total, width = 0, 1
    for per_candidate, out in stage_shapes(kind, params):
        total += width * per_candidate
        width *= out
    return total


def expected_requests(kind: LeafKind, params: GenerationParams) -> int:
    """Requests a leaf needs to reach its target at the nominal keep rates (capped by its budget).

    The same estimate everywhere a count is announced: `generate --dry-run`, the reviewer report, the
    release notes and the run summary's "planned" figure."""
    pipeline = pipeline_for(kind)
    k = params.candidates_per_prompt
    alive, requests = 1.0, 0.0  # per first-stage request
    for stage, (per_candidate, out) in zip(pipeline.stages, stage_shapes(kind, params), strict=True):
        requests += alive * per_candidate
        # a pair judge keeps an instruction when the best of its k responses passes
        keep = 1 - (1 - stage.nominal_keep) ** k if stage.template == "pair_judge" else stage.nominal_keep
        alive *= out * keep
    first = math.ceil(params.target_for(kind) / alive)
    return min(math.ceil(first * requests), params.budget_for(kind))
