"""How labtax talks to git: errors always as GitError (a LabtaxError whose message says what failed).

Two layers, for two kinds of caller:

- `Repository` (GitPython, imported on first use) is the git layer of `labtax diff`, `report` and
  `release`: repository discovery, refs and tags, merge-base and commit metadata through GitPython's
  objects; blob reads through its persistent `git cat-file --batch` process (one process for the whole
  command, however many blobs are read); plumbing with `-z` (diff, ls-files, ls-tree, grep) through its
  command runner, with paths NUL-separated so that spaces, newlines and non-ASCII names survive.
- `run_git` (with `git_toplevel`) is one plain subprocess, with a time limit for network commands.
  `labtax validate` (and so the pre-commit hook) uses it to read and fetch pinned documents and to
  find what a change touches: the hook must start fast, so validation never loads GitPython
  (tests/test_cli_imports.py).

Variables a calling git sets (a pre-commit hook runs inside one) would redirect our calls to its
repository or index: both layers neutralise them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from labtax.errors import LabtaxError

if TYPE_CHECKING:
    import git as gitpython

_CALLER_VARIABLES = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_PREFIX", "GIT_COMMON_DIR")
_NOT_INSTALLED = "git is not installed or not on PATH; install git and try again"


class GitError(LabtaxError):
    def __init__(self, message: str, returncode: int = 1, stderr: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


# --- the plain subprocess (validation) ------------------------------------------------------------------


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    for name in _CALLER_VARIABLES:
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
        raise GitError(_NOT_INSTALLED) from None
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


def zsplit(output: bytes) -> list[str]:
    """Split `-z` output into paths (decoded as UTF-8, undecodable bytes kept via surrogateescape)."""
    return [part.decode("utf-8", "surrogateescape") for part in output.split(b"\0") if part]


def git_toplevel(path: Path) -> Path | None:
    """The work-tree top of the repository holding `path` (plain git; for validation), or None outside one."""
    try:
        out = run_git(["rev-parse", "--show-toplevel"], path if path.is_dir() else path.parent)
    except GitError:
        return None
    return Path(out.decode().strip())


# --- GitPython (diff, report, release) -------------------------------------------------------------------


def _gitpython() -> Any:
    """The `git` package, imported on first use (it costs ~50 ms; validation never pays it)."""
    # Without git on PATH GitPython refuses to import; say so in our words when a command runs instead.
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    import git

    return git


@dataclass(frozen=True)
class CommitInfo:
    """What a reader needs to recognise a commit: its id, first line, author and date."""

    sha: str
    summary: str
    author: str
    date: datetime

    def as_json(self) -> dict[str, str]:
        return {"sha": self.sha, "summary": self.summary, "author": self.author, "date": self.date.isoformat()}


class Repository:
    """A git work tree, opened with `open_repository`; use it as a context manager (it owns git processes)."""

    def __init__(self, repo: gitpython.Repo) -> None:
        self._repo = repo
        self._git = _gitpython()
        assert repo.working_tree_dir is not None
        self.toplevel = Path(repo.working_tree_dir)
        # Pin every call to this repository and its index, whatever a calling git exported.
        repo.git.update_environment(
            GIT_DIR=str(repo.git_dir),
            GIT_WORK_TREE=str(self.toplevel),
            GIT_INDEX_FILE=os.path.join(repo.git_dir, "index"),
            GIT_TERMINAL_PROMPT="0",
        )

    def __enter__(self) -> Repository:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """End the persistent `cat-file` processes."""
        self._repo.close()

    # -- commands ----------------------------------------------------------------------------------

    def run(self, *args: str, check: bool = True) -> bytes:
        """`git args...` in the work tree through GitPython's runner; stdout as bytes, untouched."""
        status, stdout, stderr = self._execute(args)
        if check and status != 0:
            raise GitError(f"git {' '.join(args[:3])} failed: {stderr.strip()}", status, stderr)
        return stdout

    def _execute(self, args: Sequence[str]) -> tuple[int, bytes, str]:
        try:
            status, stdout, stderr = self._repo.git.execute(
                ["git", "-c", "core.quotepath=off", *args],
                with_extended_output=True,
                with_exceptions=False,
                stdout_as_string=False,
                strip_newline_in_stdout=False,
            )
        except self._git.GitCommandNotFound:
            raise GitError(_NOT_INSTALLED) from None
        return int(status or 0), bytes(stdout), str(stderr)

    def run_concurrently(self, commands: Sequence[Sequence[str]]) -> list[bytes]:
        """Independent commands at the same time (each its own process); their stdouts, in order.

        Two walks of a large working tree (changed files, untracked files) overlap instead of adding up.
        """
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(1, len(commands))) as pool:
            return list(pool.map(lambda args: self.run(*args), commands))

    # -- refs, tags and commits ----------------------------------------------------------------------

    def resolve_commit(self, ref: str) -> str | None:
        """The full id of the commit `ref` names (a branch, tag, remote branch, id or expression), or None."""
        out = self.run("rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", check=False)
        sha = out.decode("ascii", "replace").strip()
        return sha or None

    def merge_base(self, first: str, second: str) -> str | None:
        """The best common ancestor of two commits, or None when they share no history."""
        try:
            bases = self._repo.merge_base(first, second)
        except self._git.GitCommandError as exc:
            if exc.status == 1:  # no common ancestor
                return None
            raise GitError(f"git merge-base failed: {_stderr(exc)}", int(exc.status or 1), _stderr(exc)) from None
        return bases[0].hexsha if bases else None

    def is_shallow(self) -> bool:
        return self.run("rev-parse", "--is-shallow-repository").strip() == b"true"

    def count_commits(self, rev: str) -> int:
        return int(self.run("rev-list", "--count", rev).strip() or b"0")

    def commit_info(self, rev: str) -> CommitInfo:
        """Id, summary, author and committer date of a commit (from GitPython's Commit object)."""
        try:
            commit = self._repo.commit(rev)
        except (self._git.BadName, self._git.BadObject, ValueError) as exc:
            raise GitError(f"{rev}: not a commit here ({exc})") from None
        summary = commit.summary if isinstance(commit.summary, str) else commit.summary.decode("utf-8", "replace")
        return CommitInfo(commit.hexsha, summary, str(commit.author.name or ""), commit.committed_datetime)

    def tags_merged_into(self, rev: str, pattern: str = "*") -> list[str]:
        """Names of the tags matching `pattern` whose commit is an ancestor of `rev` (or is it)."""
        out = self.run("tag", "--list", pattern, "--merged", rev)
        return out.decode("utf-8", "surrogateescape").split()

    def remote_url(self, name: str = "origin") -> str | None:
        try:
            return str(self._repo.remote(name).url)
        except (ValueError, self._git.GitCommandError):
            return None

    def has_changes(self, path: Path) -> bool:
        """Whether anything under `path` differs from HEAD: staged, unstaged or untracked (not ignored)."""
        return bool(self.run("status", "--porcelain", "-z", "--", str(path)).strip(b"\0"))

    # -- objects ----------------------------------------------------------------------------------

    def read_blobs(self, oids: Iterable[str]) -> dict[str, bytes]:
        """The contents of many blobs, read through GitPython's persistent `git cat-file --batch` process.

        A missing object is left out (as `cat-file` reports it), not an error.
        """
        blobs: dict[str, bytes] = {}
        for oid in dict.fromkeys(oids):
            try:
                _, _, _, data = self._repo.git.get_object_data(oid)
            except ValueError:  # "<oid> missing"
                continue
            blobs[oid] = data
        return blobs


def _stderr(exc: Any) -> str:
    stderr = getattr(exc, "stderr", "") or ""
    return str(stderr).strip().removeprefix("stderr:").strip().strip("'").strip()


def open_repository(path: Path) -> Repository | None:
    """The git work tree that contains `path` (a file or a directory), or None outside one (or in a bare one)."""
    git = _gitpython()
    start = path if path.is_dir() else path.parent
    try:
        repo = git.Repo(start, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None
    if repo.bare or repo.working_tree_dir is None:
        repo.close()
        return None
    return Repository(repo)
