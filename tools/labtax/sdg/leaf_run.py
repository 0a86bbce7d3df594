"""One leaf's generation bookkeeping, shared by every pipeline: the request budget, asking the teacher
through the resume journal, and collecting kept samples, drops and per-stage counts.

Every request has a key derived from its slot (round, stage, index) and its exact prompt, so a resumed
run replays the journal's answers and follows the very same path; every dropped candidate lands in
`rejected` with its stage and reason. A question equal to a seed, an earlier candidate or a held-out
seed (`labtax.text.normalise`) is dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from labtax.records.generation import COMPLETE, INCOMPLETE, LeafSummary, RejectedCandidate, StageCounts, TeacherFailure
from labtax.records.sample import Message, Sample, SampleMetadata, TeacherExchange
from labtax.sdg.params import SCORE_KEYS, GenerationParams, pipeline_for
from labtax.sdg.prompts import PromptTemplate
from labtax.sdg.store import Journal
from labtax.sdg.teacher import Teacher, TeacherRequest, TeacherResult
from labtax.taxonomy.leaf import Leaf, heldout_pairs
from labtax.text import normalise

# An in-context example a prompt may show: (seed id, text). Seed ids: see labtax.records.sample.
Example = tuple[str, str]


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

    def record(self) -> StageCounts:
        return StageCounts(
            self.requests, self.sent, self.replayed, self.failed, self.rescued, self.kept, dict(self.dropped)
        )


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
        self.samples: list[Sample] = []
        self.rejected: list[RejectedCandidate] = []
        self.failures: list[TeacherFailure] = []
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
        examples: Sequence[Example] = (),
        *,
        judge: bool = False,
    ) -> TeacherRequest:
        """Render `template`; with `examples`, as many as fit the teacher's context (at least one). The
        request records the seed ids of the examples it shows."""
        max_tokens = self.params.judge_max_tokens if judge else self.params.max_tokens
        shown = list(examples)
        while True:
            rendered = dict(values)
            if "examples" in template.user:
                rendered["examples"] = "\n\n".join(text for _, text in shown) if shown else "(none)"
            messages = template.render(**rendered)
            if len(shown) <= 1 or self.teacher.count_tokens(messages) + max_tokens <= self.teacher.context_length:
                break
            shown.pop()
        temperature = self.params.judge_temperature if judge else self.params.temperature
        material = json.dumps([slot, messages, max_tokens, temperature], ensure_ascii=False)
        key = hashlib.sha256(material.encode("utf-8")).hexdigest()[:24]
        seed_ids = tuple(seed for seed, _ in shown) if "examples" in template.user else ()
        return TeacherRequest(
            key, template.name, messages, template.schema, max_tokens, temperature, int(key[:8], 16), seed_ids
        )

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
                TeacherFailure(request.key, request.stage, answer.error_kind or "", answer.error or "", answer.attempts)
            )
        return answer

    async def ask_all(self, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
        if requests:
            self.progress.queued(requests[0].stage, len(requests))
        return list(await asyncio.gather(*(self.ask(request) for request in requests)))

    @staticmethod
    def exchange(
        request: TeacherRequest, answer: TeacherResult, wrote: tuple[str, ...], item: object
    ) -> TeacherExchange:
        """The record of a request whose answer became part of a sample; `item` is the sample's part of
        the answer, written back as a one-item answer in the stage's schema."""
        schema = request.schema or {"properties": {"text": {"type": "string"}}}  # free text: {"text": answer}
        field_name = next(iter(schema["properties"]))
        one = item if schema["properties"][field_name].get("type") != "array" else [item]
        return TeacherExchange(
            stage=request.stage,
            request_id=request.key,
            messages=tuple(Message(role, content) for role, content in request.messages),
            output=answer.text,
            finish_reason=answer.finish_reason,
            seed_ids=request.seed_ids,
            wrote=wrote,
            item_output=json.dumps({field_name: one}, ensure_ascii=False),
        )

    # outcomes -------------------------------------------------------------------------------------

    def drop(self, stage: str, reason: str, content: dict[str, Any]) -> None:
        self.stats[stage].dropped[reason.split(":")[0]] += 1
        self.rejected.append(
            RejectedCandidate(
                self.leaf.path, self.leaf.leaf_hash, stage, reason, json.dumps(content, ensure_ascii=False)
            )
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

    def keep(
        self,
        stage: str,
        user: str,
        assistant: str,
        scores: Mapping[str, int | None],
        exchanges: Sequence[TeacherExchange],
    ) -> None:
        if len(self.samples) >= self.target:
            self.drop(
                stage, "target-met: the leaf already has its target of samples", {"user": user, "assistant": assistant}
            )
            return
        self.stats[stage].kept += 1
        self.samples.append(
            Sample(
                messages=(Message("user", user), Message("assistant", assistant)),
                metadata=SampleMetadata(
                    leaf=self.leaf.path,
                    leaf_hash=self.leaf.leaf_hash,
                    pipeline=self.pipeline.name,
                    prompt_version=self.pipeline.prompt_version,
                    teacher=self.teacher.name,
                    scores={key: _score(scores.get(key)) for key in SCORE_KEYS},
                    exchanges=tuple(exchanges),
                ),
            )
        )

    def rng(self, slot: str) -> random.Random:
        return random.Random(f"{self.cache_key}/{slot}")

    def pick(self, items: Sequence[Example], slot: str) -> list[Example]:
        """A reproducible random choice of in-context examples for one request."""
        count = min(len(items), self.params.examples_in_prompt)
        return self.rng(slot).sample(list(items), count)

    def summary(self) -> LeafSummary:
        stats = self.stats.values()
        return LeafSummary(
            leaf=self.leaf.path,
            leaf_hash=self.leaf.leaf_hash,
            branch=self.leaf.branch,
            kind=str(self.leaf.kind),
            pipeline=self.pipeline.name,
            pipeline_version=self.pipeline.version,
            prompt_version=self.pipeline.prompt_version,
            cache_key=self.cache_key,
            teacher=self.teacher.name,
            params=self.params.key_fields(self.leaf.kind),
            status=COMPLETE if len(self.samples) >= self.target else INCOMPLETE,
            kept=len(self.samples),
            target=self.target,
            rejected=len(self.rejected),
            rounds=self.rounds,
            budget=self.budget,
            requests=sum(s.requests for s in stats),
            sent=sum(s.sent for s in stats),
            replayed=sum(s.replayed for s in stats),
            failed=sum(s.failed for s in stats),
            rescued=sum(s.rescued for s in stats),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            stages={name: s.record() for name, s in self.stats.items()},
            failures=tuple(self.failures),
        )


def _score(value: int | None) -> int:
    """Every sample carries every score key, as an integer (-1: not scored by this pipeline), so that
    all pipelines' files load together as one table (Arrow cannot merge a null column with an int one)."""
    return -1 if value is None else int(value)


def keep_rate(kept: int, tried: int, nominal: float) -> float:
    """The measured rate once there is something to measure, bounded so one bad round cannot explode a plan."""
    if tried < 5:
        return nominal
    return min(1.0, max(0.1, kept / tried))
