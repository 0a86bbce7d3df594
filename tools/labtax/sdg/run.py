"""Running generation: every leaf that needs work, concurrently, each with its own journal.

`generate` checks everything that can be wrong before the first request (parameters, documents, the
teacher's reachability), plans (`labtax.sdg.plan`), runs each planned leaf's pipeline
(`labtax.sdg.skill_pipelines`, `labtax.sdg.knowledge_pipeline`) with bounded concurrency, and writes
the per-leaf results, `generation.json` and a run summary.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from labtax.errors import LabtaxError
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
from labtax.records.sample import write_samples
from labtax.sdg.chunking import Chunk, Spans, chunk_documents, tokenizer_spans, word_spans
from labtax.sdg.knowledge_pipeline import run_knowledge
from labtax.sdg.leaf_run import LeafRun, NoProgress, Progress
from labtax.sdg.params import PIPELINE_VERSION, GenerationParams
from labtax.sdg.plan import GenerationConfig, GenerationPlan, LeafPlan, generation_config, plan_generation
from labtax.sdg.skill_pipelines import run_freeform, run_grounded
from labtax.sdg.store import JOURNAL_FILE, Journal, finished_summary, leaf_dir, scan_cache
from labtax.sdg.teacher import Teacher
from labtax.sdg.teacher_spec import TeacherSpec
from labtax.taxonomy.leaf import Leaf, LeafKind


@dataclass(frozen=True)
class TeacherInfo:
    """What the run learnt about the teacher it talked to."""

    context_length: int
    context_source: str


@dataclass
class GenerationResult:
    plan: GenerationPlan
    index: GenerationIndex  # as written to generation.json
    summary: RunSummary  # as written to runs/
    summary_path: Path
    index_path: Path

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
) -> GenerationResult:
    """Generate what is missing for `leaves` into `output_dir`; everything else is reused."""
    params = params or GenerationParams()
    params.validate()
    spec.validate()
    leaves = list(leaves)
    with exclusive(output_dir):
        return _generate(leaves, spec, generation_config(spec, output_dir, params, project_root, selected), progress)


def _generate(
    leaves: list[Leaf], spec: TeacherSpec, config: GenerationConfig, progress: Progress | None
) -> GenerationResult:
    started = datetime.now(UTC)
    clock = time.monotonic()
    output_dir, project_root = config.output_dir, config.project_root
    params = config.params
    plan = plan_generation(leaves, config, scan_cache(output_dir))
    spans = chunker_spans(spec) if any(p.leaf.kind is LeafKind.KNOWLEDGE for p in plan.to_run) else word_spans
    # Everything that can fail on the user's input fails here, before the first request.
    chunks = {
        p.cache_key: prepare_chunks(p.leaf, project_root, params, spans)
        for p in plan.to_run
        if p.leaf.kind is LeafKind.KNOWLEDGE
    }
    results, sent, teacher_info = asyncio.run(_run_all(plan, spec, config, chunks, progress or NoProgress()))
    return _finish(plan, config, results, sent, teacher_info, started, time.monotonic() - clock)


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


async def _run_all(
    plan: GenerationPlan,
    spec: TeacherSpec,
    config: GenerationConfig,
    chunks: dict[str, list[Chunk]],
    progress: Progress,
) -> tuple[dict[str, LeafSummary], int, TeacherInfo | None]:
    if not plan.to_run:
        return {}, 0, None
    # Leaves in progress at once: enough to keep every request slot busy (a leaf's stage often has
    # fewer requests than --concurrency), few enough that a taxonomy of thousands of leaves does not
    # hold thousands of journals open.
    leaves_at_once = asyncio.Semaphore(max(4, 2 * spec.concurrency))

    async def one_leaf(item: LeafPlan, teacher: Teacher) -> LeafSummary:
        async with leaves_at_once:
            return await _run_leaf(item, teacher, config, chunks.get(item.cache_key, []), progress)

    async with spec.open() as teacher:
        summaries = await asyncio.gather(*(one_leaf(p, teacher) for p in plan.to_run))
        info = TeacherInfo(teacher.context_length, getattr(teacher, "context_source", "model"))
        return {s.cache_key: s for s in summaries}, int(teacher.requests_sent), info


async def _run_leaf(
    plan: LeafPlan, teacher: Teacher, config: GenerationConfig, chunks: list[Chunk], progress: Progress
) -> LeafSummary:
    directory = leaf_dir(config.output_dir, plan.cache_key)
    journal = Journal(directory / JOURNAL_FILE)
    run = LeafRun(plan.leaf, plan.cache_key, teacher, journal, config.params, progress)
    try:
        await runner_for(run, chunks)()
    finally:
        journal.close()
    summary = run.summary()
    write_samples(directory / SAMPLES_FILE, run.samples)
    write_rejected(directory / REJECTED_FILE, run.rejected)
    write_leaf_summary(directory / SUMMARY_FILE, summary)  # last: marks the leaf finished
    if summary.status == COMPLETE:
        journal.remove()  # the results say it all; an incomplete leaf keeps its journal to resume
    return summary


def _finish(
    plan: GenerationPlan,
    config: GenerationConfig,
    results: dict[str, LeafSummary],
    sent: int,
    teacher_info: TeacherInfo | None,
    started: datetime,
    seconds: float,
) -> GenerationResult:
    entries: list[GeneratedLeaf] = []
    rows: list[RunLeaf] = []
    stages: dict[str, Counter[str]] = {}
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
                p.leaf.path,
                p.cache_key,
                p.action,
                outcome,
                kept,
                p.target,
                ran.requests,
                ran.sent,
                ran.replayed,
                ran.failed,
                ran.rescued,
                ran.rejected,
            )
        )
        for stage, stats in ran.stages.items():
            counter = stages.setdefault(stage, Counter())
            for name in ("requests", "sent", "replayed", "failed", "rescued", "kept"):
                counter[name] += getattr(stats, name)
            counter["dropped"] += sum(stats.dropped.values())
    index = GenerationIndex(config.teacher, tuple(entries))
    index_path = write_generation_index(config.output_dir, index)
    generated = list(results.values())
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
        requests=sum(s.requests for s in generated),
        sent=sum(s.sent for s in generated),
        replayed=sum(s.replayed for s in generated),
        failed=sum(s.failed for s in generated),
        rescued=sum(s.rescued for s in generated),
        http_requests=sent,
        prompt_tokens=sum(s.prompt_tokens for s in generated),
        completion_tokens=sum(s.completion_tokens for s in generated),
        kept=sum(s.kept for s in generated),
        stages={stage: StageTotals(**counter) for stage, counter in stages.items()},
        leaves=tuple(rows),
        missing=tuple(row.leaf for row in rows if row.outcome == MISSING),
    )
    summary_path = write_run_summary(config.output_dir, summary, started)
    return GenerationResult(plan, index, summary, summary_path, index_path)


def runner_for(run: LeafRun, chunks: Sequence[Chunk]) -> Callable[[], Awaitable[None]]:
    if run.leaf.kind is LeafKind.KNOWLEDGE:
        return lambda: run_knowledge(run, chunks)
    if run.leaf.kind is LeafKind.GROUNDED_SKILL:
        return lambda: run_grounded(run)
    return lambda: run_freeform(run)
