"""Writing result files so that nothing is ever half-written or half-trusted, and hashing them.

Every stage writes its outputs through here: a temporary file in the same directory, flushed to
disk, then renamed over the target. A reader (or a re-run after kill -9) sees the old file or the
new one, never a torn one.

A full disk is one clear error wherever it happens: a write through here that fails for lack of
space (ENOSPC, a quota, the file size limit) raises `DiskFullError`, which names the file, the bytes
it needed and the space left there, and exits 1; the temporary file is removed and the previous
version of the target is untouched, so the same command re-run after freeing space resumes.
`space_for` gives writers outside this module (torch, `save_pretrained`, git) the same message, and
`labtax.cli_utils.entry` maps a raw no-space error that escaped everything else to it too.

A directory of outputs is trusted only as a whole: the stage that wrote it records the SHA-256 of
each file in its manifest (curation.json's `outputs`, training.json's `outputs`), written last, and
the next stage calls `check_hashes` before it reads anything, so a half-written directory (a stage
killed between two files) or a file changed afterwards is refused instead of consumed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labtax.errors import LabtaxError

# errno -> what happened, for the message. EFBIG is a file size limit (ulimit -f), not a full disk,
# but the remedy is the same: make room, then run the same command again.
NO_SPACE_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "the file size limit was reached",
}
# Libraries that write through C/C++/Rust (torch.save, safetensors) report a full disk in their own
# exception types; only the operating system's message survives in the text.
_NO_SPACE_TEXTS = (*(os.strerror(code) for code in NO_SPACE_ERRNOS), "StorageFull", "QuotaExceeded")


class DiskFullError(LabtaxError):
    """A write failed for lack of space: names the file, the space it needed and what is free (exit code 1)."""

    exit_code = 1


class StaleOutputError(LabtaxError):
    """A stage's output directory does not match the manifest its writer recorded: unfinished or changed."""

    exit_code = 1


# --- a full disk --------------------------------------------------------------------------------------


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it was raised from) is a write refused for lack of space."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in NO_SPACE_ERRNOS:
            return True
        if not isinstance(current, OSError) and any(text in str(current) for text in _NO_SPACE_TEXTS):
            return True
        current = current.__cause__ or current.__context__
    return False


def format_bytes(count: int) -> str:
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count:,} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count:,} bytes"  # pragma: no cover


def free_bytes(path: Path) -> int | None:
    """Free space for an unprivileged writer on the file system holding `path` (its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def disk_full_error(path: Path | str | None, needed: int | None, exc: BaseException) -> DiskFullError:
    """The one message for a full disk: which file, how much it needed, how much is free, what to do."""
    code = exc.errno if isinstance(exc, OSError) else None
    reason = NO_SPACE_ERRNOS.get(code or errno.ENOSPC, NO_SPACE_ERRNOS[errno.ENOSPC])
    target = Path(path) if path is not None else None
    parts = [f"cannot write {target}" if target is not None else "a write failed", f"({reason})"]
    if needed:
        parts.append(f"it needed {format_bytes(needed)}")
    free = free_bytes(target) if target is not None else None
    if free is not None:
        parts.append(f"{format_bytes(free)} free there")
    head = parts[0] + " " + parts[1] + (": " + ", ".join(parts[2:]) if len(parts) > 2 else "")
    return DiskFullError(
        f"{head}. Free some space (or write elsewhere) and run the same command again: finished work is kept "
        "and it resumes where it stopped"
    )


@contextmanager
def space_for(path: Path, needed: int | None = None) -> Iterator[None]:
    """Turn a write refused for lack of space inside the block into `DiskFullError` naming `path`.

    For writers labtax does not control (`save_pretrained`, `torch.save`, accelerate's checkpoints):
    `needed` is what the caller expects to write there, when it can tell.
    """
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        if is_disk_full(exc) or _torch_writer_out_of_space(exc, path, needed):
            raise disk_full_error(getattr(exc, "filename", None) or path, needed, exc) from None
        raise


def _torch_writer_out_of_space(exc: Exception, path: Path, needed: int | None) -> bool:
    """torch.save on a full disk raises a RuntimeError that does not say so ("unexpected pos 576 vs 534",
    from its zip writer); when the file system it was writing to has no room left, that is the cause."""
    if type(exc) is not RuntimeError:
        return False
    free = free_bytes(path)
    return free is not None and free < max(needed or 0, 1 << 20)


# --- atomic writes ------------------------------------------------------------------------------------


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same directory, fsync it, then os.replace: all or nothing."""
    with space_for(path, len(data)):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def append_bytes(path: Path, data: bytes) -> None:
    """Append `data` (whole lines of a log) entirely or not at all: a write cut short by a full disk is
    undone, so a reader never meets half a line. Raises `DiskFullError` then."""
    with space_for(path, len(data)):
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            end = os.lseek(descriptor, 0, os.SEEK_END)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(descriptor, view) :]
            except OSError:
                os.ftruncate(descriptor, end)
                raise
        finally:
            os.close(descriptor)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, value: Any) -> None:
    """Pretty-printed JSON (2-space indent, UTF-8 kept readable), ending in a newline."""
    write_text_atomic(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def jsonl_bytes(rows: Iterable[dict[str, Any]]) -> bytes:
    """One compact JSON object per line, as `datasets.load_dataset("json", ...)` reads it."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def write_jsonl_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    write_bytes_atomic(path, jsonl_bytes(rows))


# --- hashes and manifests ----------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_sha256(root: Path) -> dict[str, str]:
    """POSIX path relative to `root` -> SHA-256 of every regular file below it (links are not followed)."""
    hashes = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            hashes[path.relative_to(root).as_posix()] = file_sha256(path)
    return hashes


def check_hashes(root: Path, expected: Mapping[str, str | None], *, manifest: Path, remedy: str) -> None:
    """Refuse `root` unless every file the manifest lists has the SHA-256 it records.

    `expected` maps a path relative to `root` to its SHA-256, or to None for a file the writer
    deliberately did not write (it must not exist: a stale copy of an earlier run would be read).
    Raises `StaleOutputError` naming the files that differ, the manifest and what to do.
    """
    problems = []
    for name, digest in sorted(expected.items()):
        path = root / name
        present = path.is_file() and not path.is_symlink()
        if digest is None:
            if path.exists() or path.is_symlink():
                problems.append(f"{name} exists but {manifest.name} says it was not written")
        elif not present:
            problems.append(f"{name} is missing")
        elif file_sha256(path) != digest:
            problems.append(f"{name} differs from the SHA-256 {manifest.name} records")
    if problems:
        listed = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise StaleOutputError(
            f"{root} does not match {manifest} ({listed}): the stage that wrote it did not finish, or the files "
            f"were changed since; {remedy}"
        )
