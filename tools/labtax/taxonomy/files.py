"""Reading a file on a contributor's behalf: regular files only, never through a link, never blocking.

A pull request controls what lies under `taxonomy/`: a symbolic link to `/proc/self/environ` or to
`~/.cache/huggingface/token`, a FIFO that blocks any `open()` forever, a device. Every file labtax
reads from the taxonomy (`qna.yaml`, `attribution.txt`) comes through `read_regular_file`, which
refuses all of these at once: `lstat` first, then `open` with `O_NOFOLLOW | O_NONBLOCK` (a link or a
FIFO swapped in between cannot make it follow or wait), then `fstat` to confirm a regular file before
the first read. Knowledge documents are not read from the file system at all (labtax.documents reads
them from git objects).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


class NotRegular(Exception):
    """Why a path was not read. `kind`: missing, symlink, directory, special, too-large, error."""

    def __init__(self, kind: str, reason: str, size: int = 0) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.size = size


def describe_mode(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of `path` when it is a regular file of at most `limit` bytes; otherwise NotRegular.

    Never follows a symbolic link (not even in the last component) and never blocks on a FIFO.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise NotRegular("missing", "the file does not exist") from None
    except OSError as exc:
        raise NotRegular("error", f"cannot read this file: {exc.strerror or exc}") from None
    if stat.S_ISLNK(info.st_mode):
        raise NotRegular("symlink", "this is a symbolic link; labtax never follows links in the taxonomy")
    if stat.S_ISDIR(info.st_mode):
        raise NotRegular("directory", "this is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise NotRegular("special", f"this is {describe_mode(info.st_mode)}, not a regular file")
    if info.st_size > limit:
        raise NotRegular("too-large", f"the file is larger than the limit of {limit:,} bytes", info.st_size)
    try:
        handle = os.open(path, _OPEN_FLAGS)
    except PermissionError:
        raise NotRegular("error", "permission denied reading this file; check its permissions") from None
    except OSError as exc:
        # ELOOP: the file was replaced by a link after the lstat above.
        raise NotRegular("error", f"cannot read this file: {exc.strerror or exc}") from None
    try:
        opened = os.fstat(handle)
        if not stat.S_ISREG(opened.st_mode):
            raise NotRegular("special", f"this is {describe_mode(opened.st_mode)}, not a regular file")
        chunks = []
        remaining = limit + 1
        while remaining > 0:
            chunk = os.read(handle, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as exc:
        raise NotRegular("error", f"cannot read this file: {exc.strerror or exc}") from None
    finally:
        os.close(handle)
    data = b"".join(chunks)
    if len(data) > limit:
        raise NotRegular("too-large", f"the file is larger than the limit of {limit:,} bytes", len(data))
    return data
