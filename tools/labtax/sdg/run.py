"""Planning and running generation: which leaves need work, then doing it with bounded concurrency.

`plan_generation` is pure: leaves, configuration and (optionally) the cache's contents in, a
`GenerationPlan` out, with the action and the expected requests for every leaf. The reviewer report
calls it too. `generate` checks everything that can be wrong before the first request (parameters,
documents, the teacher's reachability), then runs every leaf that needs work concurrently, each
with its own journal, and writes the per-leaf results, `generation.json` and a run summary.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labtax.errors import LabtaxError, UsageError
from labtax.fileio import write_json_atomic, write_jsonl_atomic
from labtax.sdg.chunking import Chunk, Spans, chunk_documents, tokenizer_spans, word_spans
from labtax.sdg.pipelines import (
    PIPELINE_VERSION,
    GenerationParams,
    LeafRun,
    NoProgress,
    Progress,
    expected_requests,
    pipeline_for,
    runner_for,
)
from labtax.sdg.store import (
    GENERATION_FORMAT,
    INDEX_FILE,
    JOURNAL_FILE,
    REJECTED_FILE,
    SAMPLES_FILE,
    SUMMARY_FILE,
    CacheEntry,
    Journal,
    leaf_dir,
    scan_cache,
    write_run_summary,
)
from labtax.sdg.teacher import LocalSettings, LocalTeacher, OpenAITeacher, Teacher, TeacherSettings, local_teacher_name
from labtax.taxonomy.leaf import Leaf, LeafKind

CACHE_KEY_FORMAT = "labtax-generation-key/1"

# Plan actions
CACHED, GENERATE, RESUME, SKIP = "cached", "generate", "resume", "skip"


@dataclass(frozen=True)
class TeacherSpec:
    """Which teacher, and how to talk to it. `model` naming a directory means a local transformers model."""

    model: str
    url: str | None = None
    concurrency: int = 32
    timeout_s: float = 120.0
    context_length: int | None = None
    batch_size: int = 8
    backoff_base_s: float = 0.5
    max_retries: int = 6

    @property
    def is_local(self) -> bool:
        return Path(self.model).is_dir()

    def identity(self) -> str:
        """The teacher as the cache key sees it: the served model name, or a local model's digest."""
        return local_teacher_name(Path(self.model).resolve()) if self.is_local else self.model

    def validate(self) -> None:
        if self.is_local:
            if self.url:
                raise UsageError(
                    f"--teacher-model '{self.model}' is a local directory, so it would run here and ignore "
                    f"--teacher-url {self.url}; drop one of them (a served model's name must not be a local path)"
                )
            LocalTeacher(LocalSettings(Path(self.model), batch_size=self.batch_size))
            return
        if not self.url:
            raise UsageError(
                f"--teacher-model '{self.model}' is not a local model directory, so --teacher-url is needed "
                "(an OpenAI-compatible server such as vLLM: http://localhost:8000/v1)"
            )
        self.http_settings().validate()

    def http_settings(self) -> TeacherSettings:
        return TeacherSettings(
            url=self.url or "",
            model=self.model,
            concurrency=self.concurrency,
            timeout_s=self.timeout_s,
            context_length=self.context_length,
            backoff_base_s=self.backoff_base_s,
            max_retries=self.max_retries,
        )

    def open(self) -> AbstractAsyncContextManager[Any]:
        if self.is_local:
            return LocalTeacher(LocalSettings(Path(self.model), batch_size=self.batch_size))
        return OpenAITeacher(self.http_settings())


@dataclass(frozen=True)
class GenerationConfig:
    output_dir: Path
    teacher: str  # TeacherSpec.identity()
    params: GenerationParams = field(default_factory=GenerationParams)
    project_root: Path = Path(".")
    selected: frozenset[str] | None = None  # leaf paths that may be generated (--base); None: every leaf


@dataclass(frozen=True)
class LeafPlan:
    leaf: Leaf
    pipeline: str
    cache_key: str
    action: str  # cached | generate | resume | skip
    target: int
    expected_requests: int  # at the nominal keep rates; 0 for cached and skipped leaves
    max_requests: int  # the leaf's request budget

    def as_json(self) -> dict[str, Any]:
        return {
            "leaf": self.leaf.path,
            "leaf_hash": self.leaf.leaf_hash,
            "kind": str(self.leaf.kind),
            "pipeline": self.pipeline,
            "cache_key": self.cache_key,
            "action": self.action,
            "target": self.target,
            "expected_requests": self.expected_requests,
            "max_requests": self.max_requests,
        }


@dataclass(frozen=True)
class GenerationPlan:
    teacher: str
    leaves: tuple[LeafPlan, ...]

    @property
    def to_run(self) -> tuple[LeafPlan, ...]:
        return tuple(p for p in self.leaves if p.action in (GENERATE, RESUME))

    @property
    def expected_requests(self) -> int:
        return sum(p.expected_requests for p in self.leaves)

    @property
    def max_requests(self) -> int:
        return sum(p.max_requests for p in self.to_run)

    def as_json(self) -> dict[str, Any]:
        return {
            "teacher": self.teacher,
            "expected_requests": self.expected_requests,
            "max_requests": self.max_requests,
            "leaves": [p.as_json() for p in self.leaves],
        }


def cache_key(leaf: Leaf, teacher: str, params: GenerationParams) -> str:
    """Hash of (leaf hash, pipeline and prompt versions, teacher, generation parameters)."""
    pipeline = pipeline_for(leaf)
    material = {
        "format": CACHE_KEY_FORMAT,
        "leaf_hash": leaf.leaf_hash,
        "pipeline": f"{pipeline.name}@{pipeline.version}",
        "prompts": pipeline.prompt_version,
        "teacher": teacher,
        "params": params.key_fields(leaf.kind),
    }
    encoded = json.dumps(material, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()[:32]


def plan_generation(
    leaves: Iterable[Leaf], config: GenerationConfig, cache: Mapping[str, CacheEntry] | None = None
) -> GenerationPlan:
    """What a run would do for every leaf. Pure: pass `cache` (from `store.scan_cache`) to see hits.

    A leaf is `cached` when a finished complete result exists for its cache key, `resume` when a
    journal or an incomplete result exists, `generate` otherwise, and `skip` when it is not among
    `config.selected` (and not cached). `expected_requests` assumes the nominal keep rates.
    """
    cache = cache or {}
    plans = []
    for leaf in sorted(leaves, key=lambda item: item.path):
        key = cache_key(leaf, config.teacher, config.params)
        entry = cache.get(key)
        budget = config.params.budget_for(leaf.kind)
        expected = expected_requests(leaf.kind, config.params)
        if entry is not None and entry.finished and entry.status == "complete":
            action, expected = CACHED, 0
        elif config.selected is not None and leaf.path not in config.selected:
            action, expected = SKIP, 0
        elif entry is not None:
            action, expected = RESUME, max(0, expected - entry.journal_lines)
        else:
            action = GENERATE
        plans.append(
            LeafPlan(leaf, pipeline_for(leaf).name, key, action, config.params.target_for(leaf.kind), expected, budget)
        )
    return GenerationPlan(config.teacher, tuple(plans))


# --- running --------------------------------------------------------------------------------------


@dataclass
class GenerationResult:
    plan: GenerationPlan
    entries: list[dict[str, Any]]  # generation.json's leaves
    summary: dict[str, Any]  # the run summary
    summary_path: Path
    index_path: Path
    requests_sent: int  # HTTP requests (or local generations), retries included
    incomplete: list[dict[str, Any]] = field(default_factory=list)


def chunker_name(spec: TeacherSpec) -> str:
    """A local teacher's tokenizer measures chunks; otherwise whitespace words (docs/generation.md)."""
    return f"tokenizer:{spec.identity()}" if spec.is_local else "words"


def chunker_spans(spec: TeacherSpec) -> Spans:
    if spec.is_local:
        from transformers import AutoTokenizer

        return tokenizer_spans(AutoTokenizer.from_pretrained(spec.model))
    return word_spans


def generation_config(
    spec: TeacherSpec,
    output_dir: Path,
    params: GenerationParams | None = None,
    project_root: Path = Path("."),
    selected: frozenset[str] | None = None,
) -> GenerationConfig:
    """The configuration a run with `spec` uses (its chunk unit filled in), for `plan_generation` or a dry run."""
    params = replace(params or GenerationParams(), chunker=chunker_name(spec))
    return GenerationConfig(output_dir, spec.identity(), params, project_root, selected)


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
) -> tuple[dict[str, dict[str, Any]], int, dict[str, Any]]:
    if not plan.to_run:
        return {}, 0, {}
    # Leaves in progress at once: enough to keep every request slot busy (a leaf's stage often has
    # fewer requests than --concurrency), few enough that a taxonomy of thousands of leaves does not
    # hold thousands of journals open.
    leaves_at_once = asyncio.Semaphore(max(4, 2 * spec.concurrency))

    async def one_leaf(item: LeafPlan, teacher: Teacher) -> dict[str, Any]:
        async with leaves_at_once:
            return await _run_leaf(item, teacher, config, chunks.get(item.cache_key, []), progress)

    async with spec.open() as teacher:
        summaries = await asyncio.gather(*(one_leaf(p, teacher) for p in plan.to_run))
        info = {"context_length": teacher.context_length, "context_source": getattr(teacher, "context_source", "model")}
        return {s["cache_key"]: s for s in summaries}, int(teacher.requests_sent), info


async def _run_leaf(
    plan: LeafPlan, teacher: Teacher, config: GenerationConfig, chunks: list[Chunk], progress: Progress
) -> dict[str, Any]:
    directory = leaf_dir(config.output_dir, plan.cache_key)
    journal = Journal(directory / JOURNAL_FILE)
    run = LeafRun(plan.leaf, plan.cache_key, teacher, journal, config.params, progress)
    try:
        await runner_for(run, chunks)()
    finally:
        journal.close()
    summary = run.summary()
    write_jsonl_atomic(directory / SAMPLES_FILE, run.samples)
    write_jsonl_atomic(directory / REJECTED_FILE, run.rejected)
    write_json_atomic(directory / SUMMARY_FILE, summary)  # last: marks the leaf finished
    if summary["status"] == "complete":
        journal.remove()  # the results say it all; an incomplete leaf keeps its journal to resume
    return summary


def _finish(
    plan: GenerationPlan,
    config: GenerationConfig,
    results: dict[str, dict[str, Any]],
    sent: int,
    teacher_info: dict[str, Any],
    started: datetime,
    seconds: float,
) -> GenerationResult:
    from labtax.sdg.store import read_json

    entries = []
    leaf_rows = []
    stages: dict[str, Counter[str]] = {}
    for p in plan.leaves:
        directory = leaf_dir(config.output_dir, p.cache_key)
        summary = results.get(p.cache_key) or read_json(directory / SUMMARY_FILE)
        if p.cache_key in results:
            status = "generated" if summary and summary["status"] == "complete" else "incomplete"
        elif summary is not None:
            status = "cached" if summary.get("status") == "complete" else "incomplete"
        else:
            status = "missing"
        kept = int(summary.get("kept", 0)) if summary else 0
        entries.append(
            {
                "leaf": p.leaf.path,
                "leaf_hash": p.leaf.leaf_hash,
                "branch": p.leaf.branch,
                "kind": str(p.leaf.kind),
                "pipeline": p.pipeline,
                "cache_key": p.cache_key,
                "samples": f"leaves/{p.cache_key}/{SAMPLES_FILE}",
                "rejected": f"leaves/{p.cache_key}/{REJECTED_FILE}",
                "status": status,
                "kept": kept,
                "target": p.target,
            }
        )
        row = {
            "leaf": p.leaf.path,
            "cache_key": p.cache_key,
            "action": p.action,
            "status": status,
            "kept": kept,
            "target": p.target,
        }
        if p.cache_key in results:
            leaf_summary = results[p.cache_key]
            row.update({k: leaf_summary[k] for k in ("requests", "sent", "replayed", "failed", "rescued", "rejected")})
            for stage, stats in leaf_summary["stages"].items():
                counter = stages.setdefault(stage, Counter())
                for name in ("requests", "sent", "replayed", "failed", "rescued", "kept"):
                    counter[name] += stats[name]
                counter["dropped"] += sum(stats["dropped"].values())
        leaf_rows.append(row)
    index = {"format": GENERATION_FORMAT, "teacher": config.teacher, "leaves": entries}
    index_path = config.output_dir / INDEX_FILE
    write_json_atomic(index_path, index)
    generated = [results[k] for k in results]
    incomplete = [row for row in leaf_rows if row["status"] == "incomplete"]
    missing = [row["leaf"] for row in leaf_rows if row["status"] == "missing"]
    summary = {
        "format": "labtax-generation-run/1",
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "teacher": config.teacher,
        **teacher_info,
        "pipeline_version": PIPELINE_VERSION,
        "params": {k: v for k, v in vars(config.params).items()},
        "leaves_total": len(plan.leaves),
        "leaves_run": len(results),
        "requests": sum(s["requests"] for s in generated),
        "sent": sum(s["sent"] for s in generated),
        "replayed": sum(s["replayed"] for s in generated),
        "failed": sum(s["failed"] for s in generated),
        "rescued": sum(s["rescued"] for s in generated),
        "http_requests": sent,
        "prompt_tokens": sum(s["prompt_tokens"] for s in generated),
        "completion_tokens": sum(s["completion_tokens"] for s in generated),
        "kept": sum(s["kept"] for s in generated),
        "stages": {stage: dict(counter) for stage, counter in stages.items()},
        "leaves": leaf_rows,
        "incomplete": incomplete,
        "missing": missing,
    }
    summary_path = write_run_summary(config.output_dir, summary, started)
    return GenerationResult(plan, entries, summary, summary_path, index_path, sent, incomplete)
