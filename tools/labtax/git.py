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


class GitTimeout(GitError):
    """git did not finish within its time limit (a server that accepts the connection and never answers)."""


def run_git(
    args: Sequence[str],
    cwd: Path,
    *,
    check: bool = True,
    input_bytes: bytes | None = None,
    timeout_s: float | None = None,
) -> bytes:
    """Run `git args...` in `cwd` and return its stdout. Raises GitError with git's message on failure.

    With `timeout_s`, git and every helper it started (git-remote-https, ssh) are killed when the time is up,
    and GitTimeout is raised: network commands (fetch, ls-remote) always pass one."""
    try:
        process = subprocess.Popen(
            ["git", "-c", "core.quotepath=off", *args],
            cwd=cwd,
            stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_environment(),
            # Its own process group, so that a timeout kills the remote helpers too: they hold the pipes open.
            start_new_session=timeout_s is not None,
        )
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH; install git and try again") from None
    try:
        stdout, stderr = process.communicate(input_bytes, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        import signal

        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.communicate()
        raise GitTimeout(
            f"git {' '.join(args[:2])} did not finish within {timeout_s:g} s", returncode=-9, stderr=""
        ) from None
    if check and process.returncode != 0:
        message = stderr.decode("utf-8", "replace").strip()
        raise GitError(f"git {' '.join(args[:3])} failed: {message}", process.returncode, message)
    return stdout


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
