"""Generation output on disk: the per-leaf cache directories, the resume journal and the index files.

Layout (docs/architecture.md, "Generation output"):

    GEN/generation.json                     index of every current leaf, rewritten atomically per run
    GEN/leaves/<cache_key>/samples.jsonl    kept samples        (written atomically when the leaf ends)
    GEN/leaves/<cache_key>/rejected.jsonl   every drop, with stage and reason
    GEN/leaves/<cache_key>/summary.json     written last: its presence marks the leaf as finished
    GEN/leaves/<cache_key>/journal.jsonl    while running: one fsync'd line per answered request
    GEN/runs/<UTC timestamp>-<n>.json       one summary per run

The journal is append-only. A run killed at any point (kill -9) leaves at worst a torn last line,
which is cut off on the next open; every complete line is an answer that is replayed instead of
being asked again. Transport failures (nothing came back) are journaled too, for the record, but a
later run asks them again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labtax.fileio import write_json_atomic
from labtax.sdg.teacher import TRANSPORT, TeacherResult

GENERATION_FORMAT = "labtax-generation/1"
INDEX_FILE = "generation.json"
SAMPLES_FILE = "samples.jsonl"
REJECTED_FILE = "rejected.jsonl"
SUMMARY_FILE = "summary.json"
JOURNAL_FILE = "journal.jsonl"


# --- atomic files ---------------------------------------------------------------------------------


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


# --- the journal ----------------------------------------------------------------------------------


class Journal:
    """Answered requests of one leaf, by request key. Opening it replays what an earlier run wrote."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.answers: dict[str, TeacherResult] = {}
        self.lines = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._load()
        self._stream = path.open("ab")

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            # A torn last line from a killed run: cut it off, or the next append would glue onto it.
            with self.path.open("r+b") as stream:
                stream.truncate(len(complete))
        for line in complete.splitlines():
            try:
                record = json.loads(line)
                result = TeacherResult.from_json(record)
            except (ValueError, TypeError, KeyError):
                continue
            self.lines += 1
            if result.error_kind == TRANSPORT:
                continue  # nothing came back: ask again in this run
            self.answers[result.key] = result

    def get(self, key: str) -> TeacherResult | None:
        return self.answers.get(key)

    def append(self, result: TeacherResult) -> None:
        self._stream.write((json.dumps(result.as_json(), ensure_ascii=False) + "\n").encode("utf-8"))
        self._stream.flush()
        os.fsync(self._stream.fileno())
        self.lines += 1
        if result.error_kind != TRANSPORT:
            self.answers[result.key] = result

    def close(self) -> None:
        self._stream.close()

    def remove(self) -> None:
        self.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


# --- the cache ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CacheEntry:
    """What the output directory already holds for one cache key."""

    cache_key: str
    finished: bool  # summary.json is there
    status: str  # the summary's status ("complete" or "incomplete"), or "partial" for a journal only
    kept: int
    journal_lines: int


def leaf_dir(output_dir: Path, cache_key: str) -> Path:
    return output_dir / "leaves" / cache_key


def scan_cache(output_dir: Path) -> dict[str, CacheEntry]:
    """Every cache key in `output_dir/leaves` with what it holds."""
    entries: dict[str, CacheEntry] = {}
    root = output_dir / "leaves"
    if not root.is_dir():
        return entries
    for directory in sorted(root.iterdir()):
        if not directory.is_dir():
            continue
        summary = read_json(directory / SUMMARY_FILE)
        journal = directory / JOURNAL_FILE
        lines = _count_lines(journal) if journal.exists() else 0
        if summary is not None and summary.get("cache_key") == directory.name:
            entries[directory.name] = CacheEntry(
                directory.name, True, str(summary.get("status", "")), int(summary.get("kept", 0)), lines
            )
        elif lines:
            entries[directory.name] = CacheEntry(directory.name, False, "partial", 0, lines)
    return entries


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def utc_stamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def write_run_summary(output_dir: Path, summary: dict[str, Any], started: datetime) -> Path:
    runs = output_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    # A counter after the stamp keeps two runs in the same second apart, and names sort in run order.
    number = 1
    path = runs / f"{utc_stamp(started)}-{number:03d}.json"
    while path.exists():
        number += 1
        path = runs / f"{utc_stamp(started)}-{number:03d}.json"
    write_json_atomic(path, summary)
    return path
