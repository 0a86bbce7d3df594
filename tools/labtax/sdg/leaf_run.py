"""One leaf's streaming generation: the books every pipeline shares.

A leaf starts first-stage requests (`launch`) while the work in progress is not expected to reach its
target; every candidate then moves on by itself, as a coroutine, the moment its previous answer is in
(`labtax.sdg.skill_pipelines`, `labtax.sdg.knowledge_pipeline`). All requests of all leaves share the
teacher's slots through a `Dispatcher`, most urgent first.

Exactness, whatever the timing:
- **Lineage.** A candidate is named by the path that made it (`(j,)`: the j-th first-stage request;
  `(j, i)`: the i-th item of its answer; ...). Request keys, in-context examples and seeds derive from
  the lineage and the prompt, never from arrival order, so a resumed run asks the same requests and
  replays their answers from the journal.
- **Decisions in lineage order.** Of two equal candidates the one with the lower lineage wins,
  whichever arrived first; the samples are the first `target` kept candidates in lineage order, and a
  leaf is finished only when nothing below its `target`-th kept candidate is still in progress. A
  candidate beyond that point waits instead of asking (it can only be needed if a kept one turns out a
  duplicate), so requests beyond the target are at most those already in flight.
- **Budget.** A first-stage request starts only when the most requests its candidates can lead to fit
  the leaf's budget, and sets them aside (`Reservation`); what they do not need goes back. Requests
  asked, sent or replayed, never exceed the budget, except those of a candidate that turned out a
  duplicate of an earlier one after it had started (speculative work, bounded by what was in flight):
  they are given back, so that how many requests a budget-bound leaf starts never depends on timing.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from labtax.records.generation import COMPLETE, INCOMPLETE, LeafSummary, RejectedCandidate, StageCounts, TeacherFailure
from labtax.records.sample import Message, Sample, SampleMetadata, TeacherExchange
from labtax.sdg.answer_parsing import BLOCKS, ITEMS, QA_PAIRS, SCORE, AnswerFormat
from labtax.sdg.dispatch import Dispatcher
from labtax.sdg.inputs import GenerationInputs
from labtax.sdg.params import SCORE_KEYS, GenerationParams, chain_cost, pipeline_for, stage_shapes
from labtax.sdg.prompts import PromptTemplate
from labtax.sdg.store import Journal
from labtax.sdg.teacher import Teacher, TeacherRequest, TeacherResult
from labtax.taxonomy.leaf import Leaf, LeafKind
from labtax.text import normalise

Lineage = tuple[int, ...]
T = TypeVar("T")
# A pipeline's first stage: (run, number, reservation) asks the `number`-th first-stage request and spawns
# a candidate per item of its answer.
Source = Callable[["LeafRun", int, "Reservation"], Awaitable[None]]
SEED_LINEAGE: Lineage = (-1,)  # seed questions outrank every generated candidate
# Launch more work while what is in progress is expected to yield less than need × MARGIN + SLACK:
# enough to keep the slots busy through a heavy-tailed answer, little enough not to overshoot much.
MARGIN, SLACK = 1.3, 2.0
PRIOR_WEIGHT = 4.0  # pseudo-candidates at the nominal keep rate, before a stage has measured its own


class Progress(Protocol):
    """Where a run reports its requests, per stage; the command turns this into progress bars."""

    def queued(self, stage: str, count: int) -> None: ...

    def done(self, stage: str, count: int) -> None: ...


class NoProgress:
    def queued(self, stage: str, count: int) -> None:
        pass

    def done(self, stage: str, count: int) -> None:
        pass


class Abandoned(Exception):
    """A candidate stops here without a teacher verdict: `reason` is its drop reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class StageStats:
    requests: int = 0  # asked (sent + replayed)
    sent: int = 0
    replayed: int = 0
    failed: int = 0
    rescued: int = 0
    partial: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)
    answered: int = 0  # candidates (first stage: requests) that got a usable answer here
    passed: int = 0  # candidates they passed on (first stage: items)

    def record(self) -> StageCounts:
        return StageCounts(
            self.requests, self.sent, self.replayed, self.failed, self.rescued, self.kept,
            dict(self.dropped), self.partial, dict(self.notes),
        )  # fmt: skip


class Reservation:
    """Requests set aside in a leaf's budget for one candidate and everything it can lead to."""

    def __init__(self, run: LeafRun, units: int) -> None:
        self.run = run
        self.units = max(0, units)
        run.reserved += self.units

    def spend(self) -> bool:
        """Pay for one request: from this reservation, else from the leaf's free budget."""
        run = self.run
        if self.units > 0:
            self.units -= 1
            run.reserved -= 1
        elif run.free_budget <= 0:
            return False
        run.issued += 1
        return True

    def split(self, count: int, each: int) -> list[Reservation]:
        """`count` reservations of `each` from this one, in order (when short, the first candidates get a
        whole share: they are asked first and decide the samples); the rest goes back."""
        sizes, left = [], self.units
        for _ in range(count):
            sizes.append(min(each, left))
            left -= sizes[-1]
        shares = []
        for size in sizes:
            self.units -= size
            self.run.reserved -= size
            shares.append(Reservation(self.run, size))
        self.release()
        return shares

    def release(self) -> None:
        self.run.reserved -= self.units
        self.units = 0


@dataclass
class Kept:
    stage: str
    user: str
    assistant: str
    scores: Mapping[str, int | None]
    exchanges: tuple[TeacherExchange, ...]


class LeafRun:
    """One leaf's generation: its candidates, its budget, its claims on texts, its kept samples."""

    def __init__(
        self,
        leaf: Leaf,
        inputs: GenerationInputs,
        cache_key: str,
        teacher: Teacher,
        journal: Journal,
        params: GenerationParams,
        dispatcher: Dispatcher,
        rank: int = 0,
        progress: Progress | None = None,
    ) -> None:
        self.leaf = leaf
        self.inputs = inputs
        self.kind = LeafKind(inputs.kind)
        self.pipeline = pipeline_for(self.kind)
        self.stage_index = {stage.template: n for n, stage in enumerate(self.pipeline.stages)}
        self.cache_key = cache_key
        self.teacher = teacher
        self.journal = journal
        self.params = params
        self.dispatcher = dispatcher
        self.rank = rank
        self.progress = progress or NoProgress()
        self.target = params.target_for(self.kind)
        self.budget = params.budget_for(self.kind)
        self.chain_cost = chain_cost(self.kind, params)
        self.issued = 0  # requests asked (sent or replayed)
        self.reserved = 0  # requests set aside by reservations
        self.launched = 0
        self.stats: dict[str, StageStats] = {name: StageStats() for name in self.pipeline.prompts}
        self.failures: list[TeacherFailure] = []
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.samples: list[Sample] = []
        self.rejected: list[tuple[Lineage, RejectedCandidate]] = []
        self.finished = False
        self._kept: dict[Lineage, Kept] = {}
        self._kept_order: list[Lineage] = []
        self._claims: dict[tuple[str, str], Lineage] = {("question", q): SEED_LINEAGE for q in inputs.seed_questions}
        self._heldout = set(inputs.heldout_questions)
        self._claimed_by: dict[Lineage, tuple[str, str]] = {}
        self._displaced: set[Lineage] = set()
        self._spent: Counter[Lineage] = Counter()  # requests charged to the budget, per candidate
        self._active: dict[Lineage, int] = {}  # lineage -> the stage index it is at
        self._active_order: list[Lineage] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._fatal: BaseException | None = None
        self._content: dict[Lineage, dict[str, Any]] = {}  # what a candidate is, for its drop record

    # --- budget -------------------------------------------------------------------------------------

    @property
    def free_budget(self) -> int:
        return self.budget - self.issued - self.reserved

    # --- driving the leaf ---------------------------------------------------------------------------

    async def run(self, source: Source) -> None:
        """Launch first-stage requests while more are needed; finish when the target is settled or nothing
        more can be done (budget spent, every candidate done)."""
        try:
            while not self._settled():
                if self._fatal is not None:
                    raise self._fatal
                # A first-stage request starts only when its whole chain can be paid for: no candidate is then
                # ever short of budget halfway, and how many start depends only on what each chain cost, so
                # a budget-bound leaf ends the same way on every run (and its re-run replays it all).
                if self._wants_more() and self.free_budget >= self.chain_cost:
                    if not self.dispatcher.has_room():
                        await self._wait_any(self.dispatcher.room(self.rank))
                        continue
                    reservation = Reservation(self, self.chain_cost)
                    number = self.launched
                    self.launched += 1
                    self.spawn((number,), 0, source(self, number, reservation), reservation)
                    await asyncio.sleep(0)  # let it queue its request before deciding on the next
                    continue
                if not self._active:
                    break  # nothing in progress and nothing more worth starting (or affordable)
                await self._wait_any(None)
            if self._fatal is not None:
                raise self._fatal
        finally:
            await self._stop_all()
        self._finish()

    def _wants_more(self) -> bool:
        need = self.target - len(self._kept)
        if need <= 0:
            return False
        return self._expected_yield() < need * MARGIN + SLACK

    def _rates(self) -> list[float]:
        """Expected samples from one candidate entering each stage (first: one first-stage request)."""
        stages = self.pipeline.stages
        shapes = stage_shapes(self.kind, self.params)
        rates = [1.0] * (len(stages) + 1)
        for n in range(len(stages) - 1, -1, -1):
            stats, (_, out) = self.stats[stages[n].template], shapes[n]
            nominal = stages[n].nominal_keep * out
            measured = (stats.passed + PRIOR_WEIGHT * nominal) / (stats.answered + PRIOR_WEIGHT)
            rates[n] = measured * rates[n + 1]
        return rates

    def _expected_yield(self) -> float:
        rates = self._rates()
        return sum(rates[stage] for stage in self._active.values())

    async def _wait_any(self, other: Awaitable[None] | None) -> None:
        changed = asyncio.ensure_future(self._changed.wait())
        waits: set[asyncio.Future[Any]] = {changed}
        if other is not None:
            waits.add(asyncio.ensure_future(other))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in waits:
                if not future.done():
                    future.cancel()
        self._changed.clear()

    def _signal(self) -> None:
        self._changed.set()

    def _settled(self) -> bool:
        """The target is reached and nothing below the target-th kept candidate is still in progress."""
        if len(self._kept_order) < self.target:
            return False
        cutoff = self._kept_order[self.target - 1]
        return not self._active_order or self._active_order[0] > cutoff

    def spawn(self, lineage: Lineage, stage: int, work: Awaitable[None], reservation: Reservation) -> None:
        """Run one candidate's remaining pipeline as its own task."""
        self._enter(lineage, stage)
        task = asyncio.ensure_future(self._candidate(lineage, work, reservation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def ask_items(
        self, lineage: Lineage, request: TeacherRequest, reservation: Reservation, where: dict[str, Any], key: str
    ) -> TeacherResult | None:
        """Ask for a list (new instructions, contexts, questions, Q&A pairs): the answer, its list under
        `key`; None when the request failed (recorded against `where`, what it was about)."""
        answer = await self.ask(lineage, request, reservation)
        if not answer.ok:
            self.failed(lineage, request.stage, answer, where)
            return None
        assert answer.data is not None
        self.passed(request.stage, answered=1, passed=len(answer.data[key]))
        return answer

    def fan_out(
        self,
        lineage: Lineage,
        stage: str,
        items: Sequence[T],
        reservation: Reservation,
        each: int,
        claim: Callable[[T], tuple[str, str, dict[str, Any]]],
        work: Callable[[Lineage, T, Reservation], Awaitable[None]],
    ) -> None:
        """Each of `items` (the list `stage` answered) goes on as its own candidate `(*lineage, i)` with its
        share of `reservation` (`each` units): `claim(item)` says what must be new ((namespace, text,
        content)); a duplicate is dropped and its share returned, a new one runs `work(child, item, share)`."""
        at = self.stage_index[stage] + 1
        for i, (item, share) in enumerate(zip(items, reservation.split(len(items), each), strict=True)):
            child = (*lineage, i)
            namespace, text, content = claim(item)
            if self.claim(child, namespace, text, stage, content):
                self.spawn(child, at, work(child, item, share), share)
            else:
                share.release()

    async def _candidate(self, lineage: Lineage, work: Awaitable[None], reservation: Reservation) -> None:
        try:
            await work
        except Abandoned as abandoned:
            stage = self.pipeline.stages[self._active.get(lineage, 0)].template
            self.drop(lineage, stage, abandoned.reason, self._content.get(lineage, {}))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug or a fatal teacher condition: the whole run stops
            if self._fatal is None:
                self._fatal = exc
        finally:
            reservation.release()
            self._leave(lineage)
            self._signal()

    def _enter(self, lineage: Lineage, stage: int) -> None:
        if lineage not in self._active:
            bisect.insort(self._active_order, lineage)
        self._active[lineage] = stage

    def at_stage(self, lineage: Lineage, template: str) -> None:
        self._active[lineage] = self.stage_index[template]

    def _leave(self, lineage: Lineage) -> None:
        if self._active.pop(lineage, None) is not None:
            self._active_order.pop(bisect.bisect_left(self._active_order, lineage))

    async def _stop_all(self) -> None:
        """Cancel what is still in progress: candidates beyond the target (or the run is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- claims: one candidate per text, the lowest lineage wins ------------------------------------

    def claim(self, lineage: Lineage, namespace: str, text: str, stage: str, content: dict[str, Any]) -> bool:
        """Whether `text` is new for this leaf as far as `lineage` can tell; records the drop when not."""
        self._content[lineage] = content
        key = normalise(text)
        if not key:
            self.drop(lineage, stage, "empty", content)
            return False
        if namespace == "question" and key in self._heldout:
            self.drop(lineage, stage, "heldout: equals a held-out seed question", content)
            return False
        holder = self._claims.get((namespace, key))
        if holder is not None and holder < lineage:
            what = "a seed" if holder == SEED_LINEAGE else "an earlier candidate"
            self.drop(lineage, stage, f"duplicate: equals {what}", content)
            return False
        if holder is not None:  # a later candidate got here first: it gives way
            self._displace(holder)
        self._claims[(namespace, key)] = lineage
        self._claimed_by[lineage] = (namespace, key)
        return True

    def _displace(self, lineage: Lineage) -> None:
        self._displaced.add(lineage)
        # What it (and its descendants) cost is given back to the budget: speculative work, bounded by
        # what was in flight, that a run with other timing would not have done. Charging it would make
        # how many first-stage requests a budget-bound leaf starts depend on timing.
        depth = len(lineage)
        for spender in [k for k in self._spent if k[:depth] == lineage]:
            self.issued -= self._spent.pop(spender)
        kept = self._kept.pop(lineage, None)
        if kept is not None:
            self._kept_order.pop(bisect.bisect_left(self._kept_order, lineage))
            self.stats[kept.stage].kept -= 1
            self.drop(lineage, kept.stage, "duplicate: equals an earlier candidate", {"user": kept.user})
        self._signal()

    def _displaced_above(self, lineage: Lineage) -> bool:
        return any(lineage[: n + 1] in self._displaced for n in range(len(lineage)))

    # --- requests -----------------------------------------------------------------------------------

    def build_request(
        self,
        template: PromptTemplate,
        slot: str,
        values: Mapping[str, object],
        examples: Sequence[tuple[str, str]] = (),
        *,
        judge: bool = False,
        limit: int = 0,
        variant: int = 0,
    ) -> TeacherRequest:
        """Render `template`; with `examples` ((seed id, text)), as many as fit the teacher's context (at
        least one). `limit`: the most items the answer is read for; `variant`: another sample of the very
        same prompt (its key and seed differ, its messages do not)."""
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
        answer: AnswerFormat = template.answer.with_limit(limit) if limit else template.answer
        material = json.dumps([slot, variant, messages, max_tokens, temperature], ensure_ascii=False)
        key = hashlib.sha256(material.encode("utf-8")).hexdigest()[:24]
        seed_ids = tuple(seed for seed, _ in shown) if "examples" in template.user else ()
        return TeacherRequest(
            key, template.name, messages, None, max_tokens, temperature, int(key[:8], 16), seed_ids,
            answer, answer.stop_sequences(),
        )  # fmt: skip

    async def ask(self, lineage: Lineage, request: TeacherRequest, reservation: Reservation) -> TeacherResult:
        """The answer to `request` for the candidate `lineage`: replayed from the journal, or asked.

        Raises Abandoned when the candidate is no longer needed (a duplicate of a lower one, or beyond
        the settled target) or the budget cannot pay for the request."""
        self.at_stage(lineage, request.stage)
        await self._until_needed(lineage)
        stats = self.stats[request.stage]
        answer = self.journal.get(request)
        if not reservation.spend():
            raise Abandoned("budget: the leaf's request budget is spent")
        self._spent[lineage] += 1
        if answer is None:
            self.progress.queued(request.stage, 1)
            stats.sent += 1  # counted when asked: one cancelled in flight (the leaf settled) was paid for too
            answer = await self.dispatcher.complete((self.rank, *lineage), request)
            self.journal.append(answer)
            self.prompt_tokens += answer.prompt_tokens
            self.completion_tokens += answer.completion_tokens
            self.progress.done(request.stage, 1)
        else:
            stats.replayed += 1
        stats.requests += 1
        stats.rescued += answer.rescued
        stats.partial += answer.partial
        stats.notes.update(answer.notes)
        if not answer.ok:
            stats.failed += 1
            self.failures.append(
                TeacherFailure(request.key, request.stage, answer.error_kind or "", answer.error or "", answer.attempts)
            )
        if self._displaced_above(lineage):
            raise Abandoned("duplicate: equals an earlier candidate")
        return answer

    async def _until_needed(self, lineage: Lineage) -> None:
        """Wait while `target` kept candidates rank below `lineage` (it could only be needed if one of them
        turns out a duplicate); give up once the leaf is settled."""
        while True:
            if self._displaced_above(lineage):
                raise Abandoned("duplicate: equals an earlier candidate")
            below = bisect.bisect_left(self._kept_order, lineage)
            if below < self.target:
                return
            if self.finished or self._settled():
                raise Abandoned("target-met: the leaf already has its target of samples")
            await self._wait_any(None)

    def passed(self, stage: str, answered: int = 1, passed: int = 1) -> None:
        """Measure a stage: `answered` candidates got a usable answer, `passed` went on."""
        stats = self.stats[stage]
        stats.answered += answered
        stats.passed += passed
        stats.kept += passed

    @staticmethod
    def exchange(
        request: TeacherRequest,
        answer: TeacherResult,
        wrote: tuple[str, ...],
        item: str | dict[str, str],
        judge_score: int = -1,
    ) -> TeacherExchange:
        """The record of a request whose answer became part of a sample; `item` is the sample's part of the
        answer, written back alone in the stage's format."""
        return TeacherExchange(
            stage=request.stage,
            request_id=request.key,
            messages=tuple(Message(role, content) for role, content in request.messages),
            output=answer.text,
            finish_reason=answer.finish_reason,
            seed_ids=request.seed_ids,
            wrote=wrote,
            item_output=item_output(request.answer, item),
            judge_score=judge_score,
        )

    # --- outcomes -----------------------------------------------------------------------------------

    def drop(self, lineage: Lineage, stage: str, reason: str, content: Mapping[str, Any]) -> None:
        self.stats[stage].dropped[reason.split(":")[0]] += 1
        self.rejected.append(
            (
                lineage,
                RejectedCandidate(
                    self.leaf.path, self.leaf.leaf_hash, stage, reason, json.dumps(dict(content), ensure_ascii=False)
                ),
            )
        )

    def failed(self, lineage: Lineage, stage: str, answer: TeacherResult, content: Mapping[str, Any]) -> None:
        self.drop(lineage, stage, f"teacher-failure: {answer.error_kind}: {answer.error}", content)

    def keep(
        self,
        lineage: Lineage,
        stage: str,
        user: str,
        assistant: str,
        scores: Mapping[str, int | None],
        exchanges: Sequence[TeacherExchange],
    ) -> None:
        if self._displaced_above(lineage):
            raise Abandoned("duplicate: equals an earlier candidate")
        self._kept[lineage] = Kept(stage, user, assistant, scores, tuple(exchanges))
        bisect.insort(self._kept_order, lineage)
        self._signal()

    def _finish(self) -> None:
        """The first `target` kept candidates in lineage order become the samples; the rest are dropped."""
        self.finished = True
        for n, lineage in enumerate(self._kept_order):
            kept = self._kept[lineage]
            if n >= self.target:
                self.stats[kept.stage].kept -= 1
                self.drop(
                    lineage, kept.stage, "target-met: the leaf already has its target of samples",
                    {"user": kept.user, "assistant": kept.assistant},
                )  # fmt: skip
                continue
            self.samples.append(
                Sample(
                    messages=(Message("user", kept.user), Message("assistant", kept.assistant)),
                    metadata=SampleMetadata(
                        leaf=self.leaf.path,
                        leaf_hash=self.leaf.leaf_hash,
                        pipeline=self.pipeline.name,
                        prompt_version=self.pipeline.prompt_version,
                        teacher=self.teacher.name,
                        scores={key: _score(kept.scores.get(key)) for key in SCORE_KEYS},
                        exchanges=kept.exchanges,
                    ),
                )
            )

    def rng(self, slot: str) -> random.Random:
        return random.Random(f"{self.cache_key}/{slot}")

    def pick(self, items: Sequence[tuple[str, str]], slot: str) -> list[tuple[str, str]]:
        """A reproducible random choice of in-context examples for one request."""
        count = min(len(items), self.params.examples_in_prompt)
        return self.rng(slot).sample(list(items), count)

    def rejected_rows(self) -> list[RejectedCandidate]:
        return [row for _, row in sorted(self.rejected, key=lambda item: item[0])]

    def summary(self) -> LeafSummary:
        stats = self.stats.values()
        notes: Counter[str] = Counter()
        for s in stats:
            notes.update(s.notes)
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
            params=self.params.key_fields(self.kind),
            status=COMPLETE if len(self.samples) >= self.target else INCOMPLETE,
            kept=len(self.samples),
            target=self.target,
            rejected=len(self.rejected),
            launched=self.launched,
            budget=self.budget,
            requests=sum(s.requests for s in stats),
            sent=sum(s.sent for s in stats),
            replayed=sum(s.replayed for s in stats),
            failed=sum(s.failed for s in stats),
            rescued=sum(s.rescued for s in stats),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            stages={name: s.record() for name, s in self.stats.items()},
            failures=tuple(sorted(self.failures, key=lambda f: (f.stage, f.key))),
            teacher_notes=dict(sorted(notes.items())),
        )


def item_output(answer: AnswerFormat | None, item: str | dict[str, str]) -> str:
    """One item written back alone in its stage's format (what the teacher would have written for it)."""
    kind = answer.kind if answer else ""
    if isinstance(item, dict):
        return f"Q: {item.get('question', '')}\nA: {item.get('answer', '')}" if kind == QA_PAIRS else json.dumps(item)
    if kind == ITEMS:
        return f"1. {item}"
    if kind == BLOCKS and answer is not None:
        return f"[Start of {answer.tag}]\n{item}\n[End of {answer.tag}]"
    if kind == SCORE:
        return item
    return item


def _score(value: int | None) -> int:
    """Every sample carries every score key, as an integer (-1: not scored by this pipeline), so that
    all pipelines' files load together as one table (Arrow cannot merge a null column with an int one)."""
    return -1 if value is None else int(value)
