"""The one way labtax runs git: a subprocess with a clean environment, bytes out, errors as LabtaxError.

Paths come back NUL-separated (`-z`) so that spaces, newlines and non-ASCII names survive.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from labtax.errors import LabtaxError


class GitError(LabtaxError):
    def __init__(self, message: str, returncode: int = 1, stderr: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    # Variables set by a calling git (pre-commit hooks run inside one) would redirect our calls.
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_PREFIX"):
        env.pop(name, None)
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.setdefault("LC_ALL", "C")
    return env


def run_git(args: Sequence[str], cwd: Path, *, check: bool = True, input_bytes: bytes | None = None) -> bytes:
    """Run `git args...` in `cwd` and return its stdout. Raises GitError with git's message on failure."""
    try:
        result = subprocess.run(
            ["git", "-c", "core.quotepath=off", *args],
            cwd=cwd,
            input=input_bytes,
            capture_output=True,
            env=_environment(),
            check=False,
        )
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH; install git and try again") from None
    if check and result.returncode != 0:
        stderr = result.stderr.decode("utf-8", "replace").strip()
        raise GitError(f"git {' '.join(args[:3])} failed: {stderr}", result.returncode, stderr)
    return result.stdout


def run_git_concurrently(commands: Sequence[Sequence[str]], cwd: Path) -> list[bytes]:
    """Run independent git commands at the same time (each its own process); their stdouts, in order.

    Two walks of a large working tree (changed files, untracked files) overlap instead of adding up.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, len(commands))) as pool:
        return list(pool.map(lambda args: run_git(args, cwd), commands))


def zsplit(output: bytes) -> list[str]:
    """Split `-z` output into paths (decoded as UTF-8, undecodable bytes kept via surrogateescape)."""
    return [part.decode("utf-8", "surrogateescape") for part in output.split(b"\0") if part]


def git_toplevel(path: Path) -> Path | None:
    try:
        out = run_git(["rev-parse", "--show-toplevel"], path if path.is_dir() else path.parent)
    except GitError:
        return None
    return Path(out.decode().strip())
