"""Running generation: every leaf that needs work, streaming, all leaves sharing the teacher's slots.

`generate` checks everything that can be wrong before the first request (parameters, documents, the
teacher's reachability), plans (`labtax.sdg.plan`), and runs each planned leaf (`LeafRun`) with its
pipeline's first stage (`labtax.sdg.skill_pipelines`, `labtax.sdg.knowledge_pipeline`); a leaf's results
are written the moment it is settled, then `generation.json` and a run summary. When every planned leaf
is cached the teacher is never contacted (a cached re-run works with the server down). A fatal
condition (the teacher gone, the disk full) stops the run with one message; the journals keep every
answer, so the same command resumes it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labtax.errors import LabtaxError
from labtax.fileio import write_bytes_atomic
from labtax.records.generation import (
    CACHED,
    COMPLETE,
    GENERATED,
    MISSING,
    REJECTED_FILE,
    SAMPLES_FILE,
    SUMMARY_FILE,
    GeneratedLeaf,
    GenerationIndex,
    LeafSummary,
    RunLeaf,
    RunSummary,
    StageTotals,
    write_generation_index,
    write_leaf_summary,
    write_rejected,
    write_run_summary,
)
from labtax.records.sample import samples_bytes
from labtax.sdg.chunking import Chunk, Spans, chunk_documents, tokenizer_spans, word_spans
from labtax.sdg.dispatch import Dispatcher
from labtax.sdg.inputs import inputs_for
from labtax.sdg.knowledge_pipeline import knowledge_source
from labtax.sdg.leaf_run import LeafRun, NoProgress, Progress, Source
from labtax.sdg.params import PIPELINE_VERSION, GenerationParams
from labtax.sdg.plan import GenerationConfig, GenerationPlan, LeafPlan, generation_config, plan_generation
from labtax.sdg.skill_pipelines import freeform_source, grounded_source
from labtax.sdg.store import JOURNAL_FILE, Journal, finished_summary, leaf_dir, scan_cache, space_for
from labtax.sdg.teacher import NOTES, REQUEST_OWNER, Teacher
from labtax.sdg.teacher_spec import TeacherSpec
from labtax.taxonomy.leaf import Leaf, LeafKind


@dataclass(frozen=True)
class TeacherInfo:
    """What the run learnt about the teacher it talked to."""

    context_length: int
    context_source: str
    said: tuple[str, ...] = ()


@dataclass
class GenerationResult:
    plan: GenerationPlan
    index: GenerationIndex  # as written to generation.json
    summary: RunSummary  # as written to runs/
    summary_path: Path
    index_path: Path
    notes: list[str] = field(default_factory=list)  # one line each, for the user

    @property
    def requests_sent(self) -> int:
        """HTTP requests (or local generations), retries included."""
        return self.summary.http_requests

    @property
    def incomplete(self) -> tuple[RunLeaf, ...]:
        return self.summary.incomplete


def chunker_spans(spec: TeacherSpec) -> Spans:
    if spec.is_local:
        from transformers import AutoTokenizer

        return tokenizer_spans(AutoTokenizer.from_pretrained(spec.model))
    return word_spans


def prepare_chunks(leaf: Leaf, project_root: Path, params: GenerationParams, spans: Spans) -> list[Chunk]:
    """The leaf's document chunks; a clear error when the documents cannot be had or hold no text."""
    from labtax.documents import DocumentError, document_text, read_documents

    if leaf.document is None:
        raise LabtaxError(f"{leaf.path}: a knowledge leaf needs a document reference; run labtax validate")
    try:
        # From git objects only, as `labtax validate --check-documents` reads them (labtax.documents).
        documents = read_documents(project_root, leaf.document)
        texts = [(document.path, document_text(document)) for document in documents]
    except DocumentError as exc:
        raise LabtaxError(f"{leaf.path}: {exc}") from None
    chunks = chunk_documents(texts, params.chunk_size, params.chunk_overlap, spans)
    if not chunks:
        raise LabtaxError(f"{leaf.path}: the documents selected by document.patterns hold no text")
    return chunks


def generate(
    leaves: Iterable[Leaf],
    spec: TeacherSpec,
    output_dir: Path,
    *,
    params: GenerationParams | None = None,
    project_root: Path = Path("."),
    selected: frozenset[str] | None = None,
    progress: Progress | None = None,
    vet: bool = False,
) -> GenerationResult:
    """Generate what is missing for `leaves` into `output_dir`; everything else is reused.

    `vet`: trust nothing GEN holds: every cached result is checked against its own records
    (`labtax.sdg.vet`) and regenerated when it does not hold up."""
    params = params or GenerationParams()
    params.validate()
    spec.validate()
    leaves = list(leaves)
    with exclusive(output_dir):
        config = generation_config(spec, output_dir, params, project_root, selected)
        return _generate(leaves, spec, config, progress, vet)


def _generate(
    leaves: list[Leaf], spec: TeacherSpec, config: GenerationConfig, progress: Progress | None, vet: bool
) -> GenerationResult:
    started = datetime.now(UTC)
    clock = time.monotonic()
    output_dir, project_root = config.output_dir, config.project_root
    params = config.params
    notes = list(spec.notes())
    if vet:
        from labtax.sdg.vet import vet_cache

        notes += vet_cache(leaves, config)
    plan = plan_generation(leaves, config, scan_cache(output_dir))
    spans = chunker_spans(spec) if any(p.leaf.kind is LeafKind.KNOWLEDGE for p in plan.to_run) else word_spans
    # Everything that can fail on the user's input fails here, before the first request.
    chunks = {
        p.cache_key: prepare_chunks(p.leaf, project_root, params, spans)
        for p in plan.to_run
        if p.leaf.kind is LeafKind.KNOWLEDGE
    }
    results: dict[str, LeafSummary] = {}
    sent: Counter[str] = Counter()
    teacher_info = None
    if plan.to_run:  # a run with everything cached never contacts the teacher
        sent, teacher_info = asyncio.run(_run_all(plan, spec, config, chunks, progress or NoProgress(), results))
    return _finish(plan, config, results, sent, teacher_info, notes, started, time.monotonic() - clock)


@contextmanager
def exclusive(output_dir: Path) -> Iterator[None]:
    """Hold GEN/.lock for the run: two runs appending to the same journals would interleave their work."""
    import fcntl

    output_dir.mkdir(parents=True, exist_ok=True)
    with (output_dir / ".lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LabtaxError(
                f"another labtax generate is writing {output_dir}; wait for it to finish (or use another --output)"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _capacity(teacher: Any, spec: TeacherSpec) -> int:
    """Requests the teacher takes at once: every replica's slots, or a local model's batch (twice, so
    the next batch is gathered while one generates)."""
    replicas = len(getattr(teacher, "replicas", ())) or 1
    return spec.concurrency * replicas if not spec.is_local else 2 * spec.batch_size


async def _run_all(
    plan: GenerationPlan,
    spec: TeacherSpec,
    config: GenerationConfig,
    chunks: dict[str, list[Chunk]],
    progress: Progress,
    results: dict[str, LeafSummary],
) -> tuple[Counter[str], TeacherInfo]:
    """Run every leaf of the plan; the requests sent, per leaf (cache key), and what was learnt of the teacher."""
    async with spec.open() as teacher:
        dispatcher = Dispatcher(teacher, _capacity(teacher, spec))
        # Leaves open at once: enough for every slot to have work, few enough that a taxonomy of thousands
        # of leaves does not hold thousands of journals open. They start in plan order (their rank).
        open_leaves = asyncio.Semaphore(max(4, dispatcher.capacity))

        async def one_leaf(rank: int, item: LeafPlan) -> None:
            REQUEST_OWNER.set(item.cache_key)  # this task's context: what it sends is counted for the leaf
            async with open_leaves:
                summary = await _run_leaf(
                    item, rank, teacher, dispatcher, config, chunks.get(item.cache_key, []), progress
                )
                results[summary.cache_key] = summary

        tasks = [asyncio.ensure_future(one_leaf(rank, item)) for rank, item in enumerate(plan.to_run)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        said = tuple(getattr(teacher, "notes", ()))
        info = TeacherInfo(teacher.context_length, getattr(teacher, "context_source", "model"), said)
        return Counter(teacher.sent.by_owner), info


def source_for(kind: LeafKind, chunks: Sequence[Chunk]) -> Source:
    if kind is LeafKind.KNOWLEDGE:
        return knowledge_source(chunks)
    return grounded_source if kind is LeafKind.GROUNDED_SKILL else freeform_source


async def _run_leaf(
    plan: LeafPlan,
    rank: int,
    teacher: Teacher,
    dispatcher: Dispatcher,
    config: GenerationConfig,
    chunks: list[Chunk],
    progress: Progress,
) -> LeafSummary:
    directory = leaf_dir(config.output_dir, plan.cache_key)
    journal = Journal(directory / JOURNAL_FILE)
    inputs = inputs_for(plan.leaf)
    run = LeafRun(plan.leaf, inputs, plan.cache_key, teacher, journal, config.params, dispatcher, rank, progress)
    try:
        await run.run(source_for(plan.leaf.kind, chunks))
    finally:
        journal.close()
    summary = run.summary()
    if journal.untrusted:
        summary = _with_note(summary, "journal_untrusted", journal.untrusted)
    # Serialising a leaf's samples takes a while; in a thread, the other leaves' requests keep flowing.
    await asyncio.to_thread(_write_leaf, directory, run, summary)
    if summary.status == COMPLETE:
        journal.remove()  # the results say it all; an incomplete leaf keeps its journal to resume
    return summary


def _write_leaf(directory: Path, run: LeafRun, summary: LeafSummary) -> None:
    data = samples_bytes(run.samples)
    with space_for(directory / SAMPLES_FILE, len(data)):
        write_bytes_atomic(directory / SAMPLES_FILE, data)
        write_rejected(directory / REJECTED_FILE, run.rejected_rows())
        write_leaf_summary(directory / SUMMARY_FILE, summary)  # last: marks the leaf finished


def _with_note(summary: LeafSummary, note: str, count: int) -> LeafSummary:
    from dataclasses import replace

    return replace(summary, teacher_notes={**summary.teacher_notes, note: count})


def honour_line(notes: Counter[str] | dict[str, int], answers: int) -> str | None:
    """One line on what the teacher did not honour in this run, or None when it honoured everything."""
    phrases = {
        "response_format": "structured output (response_format): {n} answers were not the bare JSON asked for",
        "stop": "stop sequences: {n} answers ran on past them (cut here)",
        "format": "the answer format: {n} answers were not in the format asked for (unusable, or only rescued)",
        "max_tokens": "max_tokens: {n} answers were longer than allowed",
        "sampling": "temperature and seed: a retry with another seed gave the same text ({n}); bad answers "
        "are no longer retried",
        "cut": "the length: {n} answers were cut at max_tokens (complete items before the cut were kept; raise "
        "--max-tokens for fewer cuts)",
    }
    parts = [phrases[key].format(n=notes[key]) for key in NOTES if notes.get(key)]
    if not parts:
        return None
    return f"the teacher did not honour, of {answers} answers: " + "; ".join(parts)


def _finish(
    plan: GenerationPlan,
    config: GenerationConfig,
    results: dict[str, LeafSummary],
    sent: Counter[str],
    teacher_info: TeacherInfo | None,
    notes: list[str],
    started: datetime,
    seconds: float,
) -> GenerationResult:
    entries: list[GeneratedLeaf] = []
    rows: list[RunLeaf] = []
    stages: dict[str, Counter[str]] = {}
    teacher_notes: Counter[str] = Counter()
    for p in plan.leaves:
        ran = results.get(p.cache_key)
        found = ran or finished_summary(leaf_dir(config.output_dir, p.cache_key))
        # generation.json says what GEN holds (complete or not); the run summary says what this run did.
        status = MISSING if found is None else found.status
        if status == COMPLETE:
            outcome = GENERATED if ran else CACHED
        else:
            outcome = status
        kept = found.kept if found else 0
        entries.append(
            GeneratedLeaf(
                leaf=p.leaf.path,
                leaf_hash=p.leaf.leaf_hash,
                branch=p.leaf.branch,
                kind=str(p.leaf.kind),
                pipeline=p.pipeline,
                cache_key=p.cache_key,
                samples=f"leaves/{p.cache_key}/{SAMPLES_FILE}",
                rejected=f"leaves/{p.cache_key}/{REJECTED_FILE}",
                status=status,
                kept=kept,
                target=p.target,
            )
        )
        if ran is None:
            rows.append(RunLeaf(p.leaf.path, p.cache_key, p.action, outcome, kept, p.target))
            continue
        rows.append(
            RunLeaf(
                p.leaf.path, p.cache_key, p.action, outcome, kept, p.target,
                ran.requests, ran.sent, ran.replayed, ran.failed, ran.rescued, ran.rejected,
                sent[p.cache_key],
            )
        )  # fmt: skip
        teacher_notes.update(ran.teacher_notes)
        for stage, stats in ran.stages.items():
            counter = stages.setdefault(stage, Counter())
            for name in ("requests", "sent", "replayed", "failed", "rescued", "kept", "partial"):
                counter[name] += getattr(stats, name)
            counter["dropped"] += sum(stats.dropped.values())
    index = GenerationIndex(config.teacher, tuple(entries))
    index_path = config.output_dir / "generation.json"
    with space_for(index_path, 1 << 16):
        write_generation_index(config.output_dir, index)
    generated = list(results.values())
    answers = sum(s.requests for s in generated)
    said = list(notes) + list(teacher_info.said if teacher_info else ())
    untrusted = teacher_notes.pop("journal_untrusted", 0)
    if untrusted:
        said.append(f"{untrusted} journal lines failed their checksum (edited or damaged) and were asked again")
    line = honour_line(teacher_notes, answers)
    if line:
        said.append(line)
    summary = RunSummary(
        started=started.isoformat(timespec="seconds"),
        seconds=round(seconds, 3),
        teacher=config.teacher,
        context_length=teacher_info.context_length if teacher_info else None,
        context_source=teacher_info.context_source if teacher_info else None,
        pipeline_version=PIPELINE_VERSION,
        params=dict(vars(config.params)),
        leaves_total=len(plan.leaves),
        leaves_run=len(results),
        requests=answers,
        sent=sum(s.sent for s in generated),
        replayed=sum(s.replayed for s in generated),
        failed=sum(s.failed for s in generated),
        rescued=sum(s.rescued for s in generated),
        http_requests=sum(sent.values()),
        prompt_tokens=sum(s.prompt_tokens for s in generated),
        completion_tokens=sum(s.completion_tokens for s in generated),
        kept=sum(s.kept for s in generated),
        stages={stage: StageTotals(**counter) for stage, counter in stages.items()},
        leaves=tuple(rows),
        missing=tuple(row.leaf for row in rows if row.outcome == MISSING),
        planned_requests=sum(p.expected_requests for p in plan.to_run),
        teacher_notes=dict(sorted(teacher_notes.items())),
        teacher_said=tuple(said),
    )
    runs_dir = config.output_dir / "runs"
    with space_for(runs_dir / "run.json", 1 << 16):
        summary_path = write_run_summary(config.output_dir, summary, started)
    return GenerationResult(plan, index, summary, summary_path, index_path, said)
