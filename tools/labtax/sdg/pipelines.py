"""The LAB generation pipelines, one per kind of leaf, and the per-leaf bookkeeping they share.

- freeform skill: instructions (from training seeds) → instruction judge (keep/drop + reason) →
  responses → pair judge on LAB's 3-point scale (keep 2 and 3)
- grounded skill: contexts → questions per context → responses → pair judge
- knowledge: QA pairs per document chunk (training seeds as in-context examples) → judge
  faithfulness, relevance and question quality → keep passing pairs

Foundational skills run the freeform or grounded pipeline like any other skill. A leaf runs in
rounds until it has its target of kept samples or its request budget is spent. Every request has a
key derived from its slot (round, stage, index) and its exact prompt, so a resumed run replays
the journal's answers and follows the very same path; every dropped candidate lands in
`rejected` with its stage and reason. Held-out seeds (`heldout_pairs`) never reach the teacher,
and a generated question equal to a held-out one is dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from labtax.errors import UsageError
from labtax.sdg.chunking import Chunk
from labtax.sdg.prompts import PromptTemplate, load_prompt
from labtax.sdg.store import Journal
from labtax.sdg.teacher import Teacher, TeacherRequest, TeacherResult
from labtax.taxonomy.leaf import Leaf, LeafKind, heldout_pairs, training_seeds

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


# --- the per-leaf run -----------------------------------------------------------------------------


class Progress(Protocol):
    """Where a run reports its requests, per stage; the command turns this into progress bars."""

    def queued(self, stage: str, count: int) -> None: ...

    def done(self, stage: str, count: int) -> None: ...


class NoProgress:
    def queued(self, stage: str, count: int) -> None:
        pass

    def done(self, stage: str, count: int) -> None:
        pass


@dataclass
class StageStats:
    requests: int = 0  # asked (sent + replayed)
    sent: int = 0
    replayed: int = 0
    failed: int = 0
    rescued: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "sent": self.sent,
            "replayed": self.replayed,
            "failed": self.failed,
            "rescued": self.rescued,
            "kept": self.kept,
            "dropped": dict(self.dropped),
        }


def normalise(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


class LeafRun:
    """One leaf's generation: asks through the journal, keeps the budget, collects samples and drops."""

    def __init__(
        self,
        leaf: Leaf,
        cache_key: str,
        teacher: Teacher,
        journal: Journal,
        params: GenerationParams,
        progress: Progress | None = None,
    ) -> None:
        self.leaf = leaf
        self.pipeline = pipeline_for(leaf)
        self.cache_key = cache_key
        self.teacher = teacher
        self.journal = journal
        self.params = params
        self.progress = progress or NoProgress()
        self.target = params.target_for(leaf.kind)
        self.budget = params.budget_for(leaf.kind)
        self.issued = 0
        self.samples: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self.stats: dict[str, StageStats] = {name: StageStats() for name in self.pipeline.prompts}
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.rounds = 0
        self.seen: set[str] = {normalise(pair.question) for pair in leaf.qna_pairs}
        self.heldout = {normalise(pair.question) for _, pair in heldout_pairs(leaf)}

    # budget ---------------------------------------------------------------------------------------

    @property
    def remaining(self) -> int:
        return max(0, self.budget - self.issued)

    @property
    def needed(self) -> int:
        return max(0, self.target - len(self.samples))

    def affordable(self, wanted: int, cost: int) -> int:
        """How many of `wanted` first-stage requests the budget can carry through every later stage
        (each costs `cost` requests in all); at least one while any budget is left."""
        return min(wanted, max(1, self.remaining // cost))

    def reserve(self, count: int) -> int:
        """Claim up to `count` requests from the budget, in order (so a resumed run claims the same)."""
        granted = max(0, min(count, self.remaining))
        self.issued += granted
        return granted

    # requests -------------------------------------------------------------------------------------

    def build_request(
        self,
        template: PromptTemplate,
        slot: str,
        values: dict[str, object],
        examples: Sequence[str] = (),
        *,
        judge: bool = False,
    ) -> TeacherRequest:
        """Render `template`; with `examples`, as many as fit the teacher's context (at least one)."""
        max_tokens = self.params.judge_max_tokens if judge else self.params.max_tokens
        shown = list(examples)
        while True:
            rendered = dict(values)
            if "examples" in template.user:
                rendered["examples"] = "\n\n".join(shown) if shown else "(none)"
            messages = template.render(**rendered)
            if len(shown) <= 1 or self.teacher.count_tokens(messages) + max_tokens <= self.teacher.context_length:
                break
            shown.pop()
        temperature = self.params.judge_temperature if judge else self.params.temperature
        material = json.dumps([slot, messages, max_tokens, temperature], ensure_ascii=False)
        key = hashlib.sha256(material.encode("utf-8")).hexdigest()[:24]
        return TeacherRequest(key, template.name, messages, template.schema, max_tokens, temperature, int(key[:8], 16))

    async def ask(self, request: TeacherRequest) -> TeacherResult:
        stats = self.stats[request.stage]
        stats.requests += 1
        answer = self.journal.get(request.key)
        if answer is not None:
            stats.replayed += 1
        else:
            answer = await self.teacher.complete(request)
            self.journal.append(answer)
            stats.sent += 1
            self.prompt_tokens += answer.prompt_tokens
            self.completion_tokens += answer.completion_tokens
        self.progress.done(request.stage, 1)
        if answer.rescued:
            stats.rescued += 1
        if not answer.ok:
            stats.failed += 1
            self.failures.append(
                {
                    "key": request.key,
                    "stage": request.stage,
                    "kind": answer.error_kind,
                    "error": answer.error,
                    "attempts": answer.attempts,
                }
            )
        return answer

    async def ask_all(self, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
        if requests:
            self.progress.queued(requests[0].stage, len(requests))
        return list(await asyncio.gather(*(self.ask(request) for request in requests)))

    # outcomes -------------------------------------------------------------------------------------

    def drop(self, stage: str, reason: str, content: dict[str, Any]) -> None:
        self.stats[stage].dropped[reason.split(":")[0]] += 1
        self.rejected.append(
            {
                "leaf": self.leaf.path,
                "leaf_hash": self.leaf.leaf_hash,
                "stage": stage,
                "reason": reason,
                "content": json.dumps(content, ensure_ascii=False),
            }
        )

    def failed(self, stage: str, answer: TeacherResult, content: dict[str, Any]) -> None:
        self.drop(stage, f"teacher-failure: {answer.error_kind}: {answer.error}", content)

    def novel(self, stage: str, text: str, content: dict[str, Any]) -> bool:
        """False (and the drop recorded) for a duplicate or a held-out question; else remember it."""
        key = normalise(text)
        if not key:
            self.drop(stage, "empty", content)
            return False
        if key in self.heldout:
            self.drop(stage, "heldout: equals a held-out seed question", content)
            return False
        if key in self.seen:
            self.drop(stage, "duplicate: equals a seed or an earlier candidate", content)
            return False
        self.seen.add(key)
        return True

    def keep(self, stage: str, user: str, assistant: str, scores: Mapping[str, int | None]) -> None:
        if len(self.samples) >= self.target:
            self.drop(
                stage, "target-met: the leaf already has its target of samples", {"user": user, "assistant": assistant}
            )
            return
        self.stats[stage].kept += 1
        self.samples.append(
            {
                "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}],
                "metadata": {
                    "leaf": self.leaf.path,
                    "leaf_hash": self.leaf.leaf_hash,
                    "pipeline": self.pipeline.name,
                    "prompt_version": self.pipeline.prompt_version,
                    "teacher": self.teacher.name,
                    "scores": {key: _score(scores.get(key)) for key in SCORE_KEYS},
                },
            }
        )

    def rng(self, slot: str) -> random.Random:
        return random.Random(f"{self.cache_key}/{slot}")

    def pick(self, items: Sequence[str], slot: str) -> list[str]:
        """A reproducible random choice of in-context examples for one request."""
        count = min(len(items), self.params.examples_in_prompt)
        return self.rng(slot).sample(list(items), count)

    def summary(self) -> dict[str, Any]:
        return {
            "leaf": self.leaf.path,
            "leaf_hash": self.leaf.leaf_hash,
            "branch": self.leaf.branch,
            "kind": str(self.leaf.kind),
            "pipeline": self.pipeline.name,
            "pipeline_version": self.pipeline.version,
            "prompt_version": self.pipeline.prompt_version,
            "cache_key": self.cache_key,
            "teacher": self.teacher.name,
            "params": self.params.key_fields(self.leaf.kind),
            "status": "complete" if len(self.samples) >= self.target else "incomplete",
            "kept": len(self.samples),
            "target": self.target,
            "rejected": len(self.rejected),
            "rounds": self.rounds,
            "budget": self.budget,
            "requests": sum(s.requests for s in self.stats.values()),
            "sent": sum(s.sent for s in self.stats.values()),
            "replayed": sum(s.replayed for s in self.stats.values()),
            "failed": sum(s.failed for s in self.stats.values()),
            "rescued": sum(s.rescued for s in self.stats.values()),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "stages": {name: stats.as_json() for name, stats in self.stats.items()},
            "failures": self.failures,
        }


def _score(value: int | None) -> int:
    """Every sample carries every score key, as an integer (-1: not scored by this pipeline), so that
    all pipelines' files load together as one table (Arrow cannot merge a null column with an int one)."""
    return -1 if value is None else int(value)


def _keep_rate(kept: int, tried: int, nominal: float) -> float:
    """The measured rate once there is something to measure, bounded so one bad round cannot explode a plan."""
    if tried < 5:
        return nominal
    return min(1.0, max(0.1, kept / tried))


# --- skills ---------------------------------------------------------------------------------------


def _instruction_examples(leaf: Leaf) -> list[str]:
    return [f"- {seed.qna[0].question}" for seed in training_seeds(leaf)]


def _response_examples(leaf: Leaf) -> list[str]:
    out = []
    for seed in training_seeds(leaf):
        context = f"Context:\n{seed.context}\n" if seed.context else ""
        out.append(f"{context}Instruction: {seed.qna[0].question}\nResponse: {seed.qna[0].answer}")
    return out


async def _respond_and_judge(run: LeafRun, round_slot: str, items: list[tuple[str, str | None]]) -> None:
    """Responses, then the pair judge, for (instruction, context) items; keeps pairs rated 2 or 3."""
    leaf = run.leaf
    respond, judge = load_prompt("response"), load_prompt("pair_judge")
    affordable = run.reserve(2 * min(len(items), run.remaining // 2)) // 2
    for instruction, context in items[affordable:]:
        run.drop(
            "response", "budget: the leaf's request budget is spent", {"instruction": instruction, "context": context}
        )
    items = items[:affordable]
    examples = _response_examples(leaf)
    requests = [
        run.build_request(
            respond,
            f"{round_slot}/response/{i}",
            {
                "task_description": leaf.task_description,
                "context_block": _context_block(context),
                "instruction": instruction,
            },
            run.pick(examples, f"{round_slot}/response/{i}"),
        )
        for i, (instruction, context) in enumerate(items)
    ]
    answers = await run.ask_all(requests)
    pairs = []
    for (instruction, context), answer in zip(items, answers, strict=True):
        if not answer.ok:
            run.failed("response", answer, {"instruction": instruction, "context": context})
            continue
        assert answer.data is not None
        pairs.append((instruction, context, str(answer.data["response"]).strip()))
        run.stats["response"].kept += 1
    judged = await run.ask_all(
        [
            run.build_request(
                judge,
                f"{round_slot}/pair_judge/{i}",
                {"context_block": _context_block(context), "instruction": instruction, "response": response},
                judge=True,
            )
            for i, (instruction, context, response) in enumerate(pairs)
        ]
    )
    for (instruction, context, response), verdict in zip(pairs, judged, strict=True):
        content = {"instruction": instruction, "context": context, "response": response}
        if not verdict.ok:
            run.failed("pair_judge", verdict, content)
            continue
        assert verdict.data is not None
        score = int(verdict.data["score"])
        if score < 2:
            run.drop("pair_judge", f"low-score: rated {score} of 3: {verdict.data.get('explanation', '')}", content)
            continue
        user = f"{context}\n\n{instruction}" if context else instruction
        run.keep(
            "pair_judge",
            user,
            response,
            {"pair": score, "instruction": 1 if run.leaf.kind is LeafKind.FREEFORM_SKILL else None},
        )


def _context_block(context: str | None) -> str:
    return f"Context:\n{context}\n\n" if context else ""


async def run_freeform(run: LeafRun) -> None:
    leaf = run.leaf
    generate, judge = load_prompt("freeform_instructions"), load_prompt("instruction_judge")
    examples = _instruction_examples(leaf)
    tried = 0
    while run.needed and run.remaining and run.rounds < run.params.max_rounds:
        slot = f"r{run.rounds}"
        run.rounds += 1
        rate = _keep_rate(len(run.samples), tried, NOMINAL_INSTRUCTION_KEEP * NOMINAL_PAIR_KEEP)
        wanted = math.ceil(run.needed / rate)
        per_request = run.params.instructions_per_request
        count = run.reserve(run.affordable(math.ceil(wanted / per_request), 1 + 3 * per_request))
        requests = [
            run.build_request(
                generate,
                f"{slot}/instructions/{j}",
                {"task_description": leaf.task_description, "count": run.params.instructions_per_request},
                run.pick(examples, f"{slot}/instructions/{j}"),
            )
            for j in range(count)
        ]
        candidates = _novel_items(
            run, "freeform_instructions", await run.ask_all(requests), "instructions", "instruction"
        )
        # Judge only what the budget can carry through responses and the pair judge (3 requests each).
        candidates = _affordable(run, candidates, "instruction_judge", "instruction")
        tried += len(candidates)
        verdicts = await run.ask_all(
            [
                run.build_request(
                    judge,
                    f"{slot}/instruction_judge/{i}",
                    {"task_description": leaf.task_description, "instruction": text},
                    judge=True,
                )
                for i, text in enumerate(candidates)
            ]
        )
        accepted: list[tuple[str, str | None]] = []
        for text, verdict in zip(candidates, verdicts, strict=True):
            if not verdict.ok:
                run.failed("instruction_judge", verdict, {"instruction": text})
            elif not verdict.data or not verdict.data["keep"]:
                reason = (verdict.data or {}).get("reason", "")
                run.drop("instruction_judge", f"judged-unfit: {reason}", {"instruction": text})
            else:
                run.stats["instruction_judge"].kept += 1
                accepted.append((text, None))
        if not candidates and not count:
            break
        await _respond_and_judge(run, slot, accepted)


def _novel_items(run: LeafRun, stage: str, answers: list[TeacherResult], field: str, record_key: str) -> list[str]:
    """The new texts a generation stage's answers list under `field`; failures and repeats are recorded."""
    items: list[str] = []
    for answer in answers:
        if not answer.ok:
            run.failed(stage, answer, {})
            continue
        assert answer.data is not None
        for text in answer.data[field]:
            text = str(text).strip()
            if run.novel(stage, text, {record_key: text}):
                items.append(text)
                run.stats[stage].kept += 1
    return items


def _affordable(run: LeafRun, items: list[str], next_stage: str, record_key: str) -> list[str]:
    """As many items as the budget carries through `next_stage`, a response and the pair judge (3 requests
    each); the rest are recorded as dropped for budget."""
    affordable = run.reserve(min(len(items), run.remaining // 3))
    for text in items[affordable:]:
        run.drop(next_stage, "budget: the leaf's request budget is spent", {record_key: text})
    return items[:affordable]


async def run_grounded(run: LeafRun) -> None:
    leaf = run.leaf
    make_contexts, make_questions = load_prompt("grounded_contexts"), load_prompt("grounded_questions")
    seeds = training_seeds(leaf)
    context_examples = [f"- {seed.context}" for seed in seeds if seed.context]
    question_examples = _instruction_examples(leaf)
    tried = 0
    while run.needed and run.remaining and run.rounds < run.params.max_rounds:
        slot = f"r{run.rounds}"
        run.rounds += 1
        rate = _keep_rate(len(run.samples), tried, NOMINAL_PAIR_KEEP)
        questions_wanted = math.ceil(run.needed / rate)
        contexts_wanted = math.ceil(questions_wanted / run.params.questions_per_context)
        per_request = run.params.contexts_per_request
        cost = 1 + per_request * (1 + 2 * run.params.questions_per_context)
        count = run.reserve(run.affordable(math.ceil(contexts_wanted / per_request), cost))
        requests = [
            run.build_request(
                make_contexts,
                f"{slot}/contexts/{j}",
                {"task_description": leaf.task_description, "count": run.params.contexts_per_request},
                run.pick(context_examples, f"{slot}/contexts/{j}"),
            )
            for j in range(count)
        ]
        contexts = _novel_items(run, "grounded_contexts", await run.ask_all(requests), "contexts", "context")
        contexts = _affordable(run, contexts, "grounded_questions", "context")
        answers = await run.ask_all(
            [
                run.build_request(
                    make_questions,
                    f"{slot}/questions/{i}",
                    {
                        "task_description": leaf.task_description,
                        "count": run.params.questions_per_context,
                        "context": context,
                    },
                    run.pick(question_examples, f"{slot}/questions/{i}"),
                )
                for i, context in enumerate(contexts)
            ]
        )
        items: list[tuple[str, str | None]] = []
        for context, answer in zip(contexts, answers, strict=True):
            if not answer.ok:
                run.failed("grounded_questions", answer, {"context": context})
                continue
            assert answer.data is not None
            for question in answer.data["questions"][: run.params.questions_per_context]:
                question = str(question).strip()
                if run.novel("grounded_questions", question, {"context": context, "instruction": question}):
                    items.append((question, context))
                    run.stats["grounded_questions"].kept += 1
        tried += len(items)
        if not items and not count:
            break
        await _respond_and_judge(run, slot, items)


# --- knowledge ------------------------------------------------------------------------------------


def _knowledge_examples(leaf: Leaf) -> list[str]:
    return [f"Q: {pair.question}\nA: {pair.answer}" for seed in training_seeds(leaf) for pair in seed.qna]


async def run_knowledge(run: LeafRun, chunks: Sequence[Chunk]) -> None:
    leaf = run.leaf
    make_pairs, judge = load_prompt("knowledge_qa"), load_prompt("knowledge_judge")
    examples = _knowledge_examples(leaf)
    cursor = 0  # chunks are visited in order, round after round, so every part of the documents is used
    tried = 0
    while run.needed and run.remaining and run.rounds < run.params.max_rounds and chunks:
        slot = f"r{run.rounds}"
        run.rounds += 1
        rate = _keep_rate(len(run.samples), tried, NOMINAL_KNOWLEDGE_KEEP)
        wanted = math.ceil(run.needed / rate)
        count = run.reserve(
            run.affordable(math.ceil(wanted / run.params.pairs_per_chunk), 1 + run.params.pairs_per_chunk)
        )
        picked = [chunks[(cursor + j) % len(chunks)] for j in range(count)]
        cursor += count
        requests = [
            run.build_request(
                make_pairs,
                f"{slot}/qa/{j}",
                {
                    "domain": leaf.domain,
                    "outline": leaf.document_outline,
                    "chunk": chunk.text,
                    "count": run.params.pairs_per_chunk,
                },
                run.pick(examples, f"{slot}/qa/{j}"),
            )
            for j, chunk in enumerate(picked)
        ]
        candidates: list[tuple[Chunk, str, str]] = []
        for chunk, answer in zip(picked, await run.ask_all(requests), strict=True):
            if not answer.ok:
                run.failed("knowledge_qa", answer, {"source": chunk.source, "chunk": chunk.index})
                continue
            assert answer.data is not None
            for pair in answer.data["pairs"][: run.params.pairs_per_chunk]:
                question, reply = str(pair["question"]).strip(), str(pair["answer"]).strip()
                content = {"source": chunk.source, "chunk": chunk.index, "question": question, "answer": reply}
                if run.novel("knowledge_qa", question, content):
                    candidates.append((chunk, question, reply))
                    run.stats["knowledge_qa"].kept += 1
        affordable = run.reserve(min(len(candidates), run.remaining))
        for _, question, reply in candidates[affordable:]:
            run.drop(
                "knowledge_judge", "budget: the leaf's request budget is spent", {"question": question, "answer": reply}
            )
        candidates = candidates[:affordable]
        tried += len(candidates)
        verdicts = await run.ask_all(
            [
                run.build_request(
                    judge, f"{slot}/judge/{i}", {"chunk": chunk.text, "question": question, "answer": reply}, judge=True
                )
                for i, (chunk, question, reply) in enumerate(candidates)
            ]
        )
        for (chunk, question, reply), verdict in zip(candidates, verdicts, strict=True):
            content = {"source": chunk.source, "chunk": chunk.index, "question": question, "answer": reply}
            if not verdict.ok:
                run.failed("knowledge_judge", verdict, content)
                continue
            assert verdict.data is not None
            scores = {k: int(verdict.data[k]) for k in ("faithfulness", "relevance", "question_quality")}
            problems = [
                name
                for name, ok in (
                    ("unfaithful", scores["faithfulness"] == 1),
                    ("irrelevant", scores["relevance"] >= 2),
                    ("poor-question", scores["question_quality"] >= 2),
                )
                if not ok
            ]
            if problems:
                run.drop(
                    "knowledge_judge", f"{'+'.join(problems)}: {verdict.data.get('reason', '')}", {**content, **scores}
                )
                continue
            run.keep("knowledge_judge", question, reply, scores)
        if not candidates and not count:
            break


def runner_for(run: LeafRun, chunks: Sequence[Chunk]) -> Callable[[], Awaitable[None]]:
    if run.leaf.kind is LeafKind.KNOWLEDGE:
        return lambda: run_knowledge(run, chunks)
    if run.leaf.kind is LeafKind.GROUNDED_SKILL:
        return lambda: run_grounded(run)
    return lambda: run_freeform(run)
