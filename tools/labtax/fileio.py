"""Writing result files so that nothing is ever half-written, and hashing them.

Every stage writes its outputs through here: a temporary file in the same directory, flushed to
disk, then renamed over the target. A reader (or a re-run after kill -9) sees the old file or the
new one, never a torn one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same directory, fsync it, then os.replace: all or nothing."""
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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
