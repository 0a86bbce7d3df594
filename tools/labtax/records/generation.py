"""The generation stage's files (`labtax generate --output GEN`), each with its one reader and writer.

    GEN/generation.json                     GenerationIndex: every current leaf and its samples file
    GEN/leaves/<cache_key>/samples.jsonl    Samples (labtax.records.sample)
    GEN/leaves/<cache_key>/rejected.jsonl   RejectedCandidate per dropped candidate
    GEN/leaves/<cache_key>/summary.json     LeafSummary, written last: it marks the leaf finished
    GEN/runs/<UTC timestamp>-<n>.json       RunSummary, one per run

`generation.json` describes the *content* of GEN: a leaf's `status` is whether its samples are
complete, never whether this run or an earlier one made them (that is the run summary's `outcome`).
So identical data gives a byte-identical index, and everything hashed downstream (curation.json,
release.json) changes only when the data does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from labtax.fileio import file_sha256, write_bytes_atomic, write_text_atomic
from labtax.records.base import RecordError, RecordFormat, decode, dumps_json, read_json_file, to_json

GENERATE = "re-run `labtax generate` with the same --output"
INDEX_FORMAT = RecordFormat("labtax-generation", 2, "generation index (generation.json)", GENERATE)
# /2: streaming pipelines: `launched` (first-stage requests) replaces `rounds`; answers cut but kept
# (`partial`) and what the teacher did not honour (`notes`) are counted.
LEAF_SUMMARY_FORMAT = RecordFormat("labtax-generation-leaf", 2, "leaf generation summary (summary.json)", GENERATE)
RUN_FORMAT = RecordFormat("labtax-generation-run", 2, "generation run summary (runs/*.json)", GENERATE)

INDEX_FILE = "generation.json"
SAMPLES_FILE = "samples.jsonl"
REJECTED_FILE = "rejected.jsonl"
SUMMARY_FILE = "summary.json"
RUNS_DIR = "runs"

# A leaf's status in generation.json
COMPLETE, INCOMPLETE, MISSING = "complete", "incomplete", "missing"
# A leaf's outcome in a run summary: what this run did
GENERATED, CACHED = "generated", "cached"


# --- generation.json ------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedLeaf:
    """One leaf of the current taxonomy in generation.json; paths are relative to GEN."""

    leaf: str  # Leaf.path
    leaf_hash: str
    branch: str
    kind: str  # "knowledge" | "freeform_skill" | "grounded_skill"
    pipeline: str
    cache_key: str  # hash of (leaf hash, pipeline and prompt versions, teacher, generation parameters)
    samples: str  # "leaves/<cache_key>/samples.jsonl"
    rejected: str  # "leaves/<cache_key>/rejected.jsonl"
    status: str  # COMPLETE (target reached) | INCOMPLETE (fewer samples; resumable) | MISSING (not generated)
    kept: int
    target: int


@dataclass(frozen=True)
class GenerationIndex:
    teacher: str  # the teacher's identity (served model name, or a local model's digest)
    leaves: tuple[GeneratedLeaf, ...]  # sorted by leaf path

    def entry(self, leaf: str) -> GeneratedLeaf | None:
        return next((e for e in self.leaves if e.leaf == leaf), None)


def write_generation_index(gen_dir: Path, index: GenerationIndex) -> Path:
    path = gen_dir / INDEX_FILE
    write_text_atomic(path, dumps_json({"format": INDEX_FORMAT.tag, **to_json(index)}))
    return path


def read_generation_index(gen_dir: Path) -> GenerationIndex:
    """generation.json of GEN; paths in it must stay inside GEN."""
    path = gen_dir / INDEX_FILE
    if not path.is_file():
        raise RecordError(
            f"{path} not found; the generation directory is the --output of `labtax generate` (run it first)"
        )
    where = str(path)
    index = decode(GenerationIndex, read_json_file(path, INDEX_FORMAT), where, GENERATE)
    for entry in index.leaves:
        for relative in (entry.samples, entry.rejected):
            parts = PurePosixPath(relative).parts
            if PurePosixPath(relative).is_absolute() or ".." in parts:
                raise RecordError(f"{where}: leaf {entry.leaf}: {relative!r} is not a path inside {gen_dir}")
    return GenerationIndex(index.teacher, tuple(sorted(index.leaves, key=lambda e: e.leaf)))


def generation_index_sha256(gen_dir: Path) -> str:
    return file_sha256(gen_dir / INDEX_FILE)


# --- leaves/<key>/summary.json --------------------------------------------------------------------


@dataclass(frozen=True)
class StageCounts:
    """One pipeline stage of one leaf: requests asked (sent + replayed from the journal) and their fate."""

    requests: int = 0
    sent: int = 0
    replayed: int = 0
    failed: int = 0
    rescued: int = 0  # the answer was found in a shape other than the one asked for
    kept: int = 0  # candidates this stage passed on
    dropped: dict[str, int] = field(default_factory=dict)  # reason id -> count
    partial: int = 0  # answers cut at max_tokens whose complete items were kept
    notes: dict[str, int] = field(default_factory=dict)  # what the teacher did not honour -> answers

    @property
    def keep_rate(self) -> float | None:
        """Candidates passed on over candidates decided at this stage (None before any was)."""
        decided = self.kept + sum(self.dropped.values())
        return self.kept / decided if decided else None


@dataclass(frozen=True)
class TeacherFailure:
    key: str  # the request's key
    stage: str
    kind: str  # labtax.sdg.teacher error kinds: transport, parse, truncated, too_long, refused
    error: str
    attempts: int


@dataclass(frozen=True)
class LeafSummary:
    """How one leaf's generation went; its presence marks the leaf's cache directory as finished."""

    leaf: str
    leaf_hash: str
    branch: str
    kind: str
    pipeline: str
    pipeline_version: int
    prompt_version: str
    cache_key: str
    teacher: str
    params: dict[str, Any]  # the generation parameters that enter this leaf's cache key
    status: str  # COMPLETE | INCOMPLETE
    kept: int
    target: int
    rejected: int
    launched: int  # first-stage requests started (each fans out into candidates)
    budget: int
    requests: int
    sent: int
    replayed: int
    failed: int
    rescued: int
    prompt_tokens: int
    completion_tokens: int
    stages: dict[str, StageCounts]
    failures: tuple[TeacherFailure, ...]
    teacher_notes: dict[str, int] = field(default_factory=dict)  # what the teacher did not honour -> answers


def write_leaf_summary(path: Path, summary: LeafSummary) -> None:
    write_text_atomic(path, dumps_json({"format": LEAF_SUMMARY_FORMAT.tag, **to_json(summary)}))


def read_leaf_summary(path: Path) -> LeafSummary:
    return decode(LeafSummary, read_json_file(path, LEAF_SUMMARY_FORMAT), str(path), GENERATE)


# --- leaves/<key>/rejected.jsonl ------------------------------------------------------------------


@dataclass(frozen=True)
class RejectedCandidate:
    """A candidate generation dropped: at which stage and why (`reason` starts with a reason id)."""

    leaf: str
    leaf_hash: str
    stage: str
    reason: str
    content: str  # the candidate as JSON text (its fields differ by stage)


def write_rejected(path: Path, rows: list[RejectedCandidate]) -> None:
    data = "".join(json.dumps(to_json(row), ensure_ascii=False) + "\n" for row in rows)
    write_bytes_atomic(path, data.encode("utf-8"))


def read_rejected(path: Path) -> list[RejectedCandidate]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [
        decode(RejectedCandidate, json.loads(line), f"{path}:{n}", GENERATE)
        for n, line in enumerate(lines, start=1)
        if line.strip()
    ]


# --- runs/<stamp>-<n>.json ------------------------------------------------------------------------


@dataclass(frozen=True)
class StageTotals:
    """One stage summed over the leaves a run ran."""

    requests: int = 0
    sent: int = 0
    replayed: int = 0
    failed: int = 0
    rescued: int = 0
    kept: int = 0
    dropped: int = 0
    partial: int = 0

    @property
    def keep_rate(self) -> float | None:
        decided = self.kept + self.dropped
        return self.kept / decided if decided else None


@dataclass(frozen=True)
class RunLeaf:
    """One leaf in a run: the planned action and its outcome; request counts only for leaves this run ran."""

    leaf: str
    cache_key: str
    action: str  # the plan's action: cached | generate | resume | skip
    outcome: str  # GENERATED | CACHED | INCOMPLETE | MISSING
    kept: int
    target: int
    requests: int | None = None
    sent: int | None = None
    replayed: int | None = None
    failed: int | None = None
    rescued: int | None = None
    rejected: int | None = None
    # HTTP requests (or local generations) the teacher got for this leaf: `sent` with retries and hedges.
    # None in summaries written before it was counted per leaf.
    http_requests: int | None = None


@dataclass(frozen=True)
class RunSummary:
    started: str  # ISO 8601, UTC, seconds
    seconds: float
    teacher: str
    context_length: int | None  # the teacher's context, as learnt (None when no leaf ran)
    context_source: str | None  # "server" | "configured" | "default" | "model"
    pipeline_version: int
    params: dict[str, Any]
    leaves_total: int
    leaves_run: int
    requests: int
    sent: int
    replayed: int
    failed: int
    rescued: int
    http_requests: int  # HTTP requests (or local generations), retries included
    prompt_tokens: int
    completion_tokens: int
    kept: int
    stages: dict[str, StageTotals]
    leaves: tuple[RunLeaf, ...]
    missing: tuple[str, ...]  # leaves with no data (not selected and not cached)
    # Added without a format bump (older summaries read with these defaults):
    planned_requests: int = 0  # the planner's estimate for the leaves this run ran (what --dry-run showed)
    teacher_notes: dict[str, int] = field(default_factory=dict)  # what the teacher did not honour -> answers
    teacher_said: tuple[str, ...] = ()  # one line each about the teacher (a replica down, ...)

    @property
    def incomplete(self) -> tuple[RunLeaf, ...]:
        return tuple(row for row in self.leaves if row.outcome == INCOMPLETE)


def write_run_summary(gen_dir: Path, summary: RunSummary, started: datetime) -> Path:
    """runs/<UTC stamp>-<n>.json; a counter after the stamp keeps two runs in the same second apart,
    and names sort in run order."""
    runs = gen_dir / RUNS_DIR
    runs.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    number = 1
    while (runs / f"{stamp}-{number:03d}.json").exists():
        number += 1
    path = runs / f"{stamp}-{number:03d}.json"
    write_text_atomic(path, dumps_json({"format": RUN_FORMAT.tag, **to_json(summary)}))
    return path


def read_run_summary(path: Path) -> RunSummary:
    return decode(RunSummary, read_json_file(path, RUN_FORMAT), str(path), GENERATE)


def run_summaries(gen_dir: Path) -> list[Path]:
    """Every run summary of GEN, oldest first."""
    return sorted((gen_dir / RUNS_DIR).glob("*.json"))
