"""Generation's cache on disk: the per-leaf cache directories and the resume journal.

Layout (docs/architecture.md, "Generation output"; the files' records: labtax.records.generation):

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
from pathlib import Path

from labtax.records.base import NewerFormatError, RecordError
from labtax.records.generation import SUMMARY_FILE, LeafSummary, read_leaf_summary
from labtax.sdg.teacher import TRANSPORT, TeacherResult

JOURNAL_FILE = "journal.jsonl"


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


def finished_summary(directory: Path) -> LeafSummary | None:
    """The leaf summary that marks a cache directory finished; None when there is none (or a damaged or
    older one: the leaf is then generated again). One written by a newer labtax is an error."""
    try:
        summary = read_leaf_summary(directory / SUMMARY_FILE)
    except NewerFormatError:
        raise
    except RecordError:
        return None
    return summary if summary.cache_key == directory.name else None


def scan_cache(output_dir: Path) -> dict[str, CacheEntry]:
    """Every cache key in `output_dir/leaves` with what it holds."""
    entries: dict[str, CacheEntry] = {}
    root = output_dir / "leaves"
    if not root.is_dir():
        return entries
    for directory in sorted(root.iterdir()):
        if not directory.is_dir():
            continue
        summary = finished_summary(directory)
        journal = directory / JOURNAL_FILE
        lines = _count_lines(journal) if journal.exists() else 0
        if summary is not None:
            entries[directory.name] = CacheEntry(directory.name, True, summary.status, summary.kept, lines)
        elif lines:
            entries[directory.name] = CacheEntry(directory.name, False, "partial", 0, lines)
    return entries


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0
