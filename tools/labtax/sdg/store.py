"""Generation's cache on disk: the per-leaf cache directories, the resume journal, and writing them
with a clear message when the disk is full.

Layout (docs/architecture.md, "Generation output"; the files' records: labtax.records.generation):

    GEN/generation.json                     index of every current leaf, rewritten atomically per run
    GEN/leaves/<cache_key>/samples.jsonl    kept samples        (written atomically when the leaf ends)
    GEN/leaves/<cache_key>/rejected.jsonl   every drop, with stage and reason
    GEN/leaves/<cache_key>/summary.json     written last: its presence marks the leaf as finished
    GEN/leaves/<cache_key>/journal.jsonl    while running: one fsync'd line per answered request
    GEN/runs/<UTC timestamp>-<n>.json       one summary per run

The journal is append-only. Every line is handed to the kernel before the run moves on, and fsync'd at
least once a second (group commit). A run killed at any point (kill -9), or stopped by a full disk,
leaves at worst a torn last line, which is cut off on the next open; every complete line is an answer that is
replayed instead of being asked again. Nothing read back is trusted: each line carries the SHA-256 of
its content (a line edited by hand, or damaged, fails it and the request is asked again), and the
answer's content is read again from its raw text by the request's own parser, never taken from the
line. Transport failures (nothing came back) are journaled for the record; a later run asks them again.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from labtax.errors import LabtaxError
from labtax.records.base import NewerFormatError, RecordError
from labtax.records.generation import SUMMARY_FILE, LeafSummary, read_leaf_summary
from labtax.sdg.teacher import PARSE, TRANSPORT, TRUNCATED, TeacherRequest, TeacherResult

JOURNAL_FILE = "journal.jsonl"
SYNC_INTERVAL_S = 1.0
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
T = TypeVar("T")


class DiskFull(LabtaxError):
    """A write failed for lack of space: names the file and the space it needed (exit code 1)."""

    exit_code = 1


def _size(count: int) -> str:
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} bytes"


def no_space_error(path: Path, needed: int, exc: OSError) -> DiskFull:
    try:
        free = shutil.disk_usage(path.parent if path.parent.exists() else Path(".")).free
        where = f"; {_size(free)} free there"
    except OSError:
        where = ""
    reason = "the file size limit was reached" if exc.errno == errno.EFBIG else os.strerror(exc.errno or errno.ENOSPC)
    return DiskFull(
        f"cannot write {path} ({reason}): it needed {_size(needed)} more{where}. Free some space and re-run the "
        "same command: every answer already written is kept and nothing is asked twice"
    )


@contextmanager
def space_for(path: Path, needed: int) -> Iterator[None]:
    """Turn a full disk (or quota, or file size limit) while writing `path` into one clear DiskFull."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _NO_SPACE:
            raise no_space_error(path, needed, exc) from None
        raise


def write_or_explain(path: Path, data: bytes, writer: Callable[[Path, bytes], T]) -> T:
    with space_for(path, len(data)):
        return writer(path, data)


# --- the journal ----------------------------------------------------------------------------------


def _checksum(record: dict[str, object]) -> str:
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class Journal:
    """Answered requests of one leaf, by request key. Opening it reads what an earlier run wrote."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.answers: dict[str, TeacherResult] = {}
        self.lines = 0
        self.untrusted = 0  # lines that failed their checksum (edited or damaged): asked again
        path.parent.mkdir(parents=True, exist_ok=True)
        self._load()
        self._stream = path.open("ab")
        self._synced = time.monotonic()

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
                check = record.pop("sha256", None)
                if not isinstance(record, dict) or check != _checksum(record):
                    self.untrusted += 1
                    continue
                result = TeacherResult.from_json(record)
            except (ValueError, TypeError, KeyError, AttributeError):
                self.untrusted += 1
                continue
            self.lines += 1
            if result.error_kind == TRANSPORT:
                continue  # nothing came back: ask again in this run
            self.answers[result.key] = result

    def get(self, request: TeacherRequest) -> TeacherResult | None:
        """The journaled answer to `request`, its content read again from the raw text; None when the
        journal has none (or only one for another stage: a damaged or foreign line)."""
        stored = self.answers.get(request.key)
        if stored is None or stored.stage != request.stage:
            return None
        result = TeacherResult(
            stored.key, stored.stage, text=stored.text, finish_reason=stored.finish_reason,
            prompt_tokens=stored.prompt_tokens, completion_tokens=stored.completion_tokens,
            attempts=stored.attempts, max_tokens=stored.max_tokens, notes=list(stored.notes),
            error_kind=stored.error_kind, error=stored.error,
        )  # fmt: skip
        if stored.error_kind in (None, PARSE, TRUNCATED) and isinstance(stored.text, str):
            result.take(request.read(stored.text, stored.finish_reason), request)
        return result

    def append(self, result: TeacherResult) -> None:
        record = result.as_json()
        record["data"] = None  # the content is always read again from `text`; storing it would only invite trust
        line = (json.dumps({**record, "sha256": _checksum(record)}, ensure_ascii=False) + "\n").encode("utf-8")
        with space_for(self.path, len(line)):
            self._stream.write(line)
            self._stream.flush()  # in the kernel now: a killed process loses nothing
            # Group commit: fsync (against a crash of the machine itself) at most once per interval, so
            # that the disk's latency never paces the event loop (4 ms per fsync here, at 600 answers/s).
            now = time.monotonic()
            if now - self._synced >= SYNC_INTERVAL_S:
                os.fsync(self._stream.fileno())
                self._synced = now
        self.lines += 1
        if result.error_kind != TRANSPORT:
            self.answers[result.key] = result

    def close(self) -> None:
        try:
            if not self._stream.closed:
                self._stream.flush()
                os.fsync(self._stream.fileno())
            self._stream.close()
        except OSError:
            pass  # a full disk may refuse the final flush of a torn line; the next open cuts it

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
