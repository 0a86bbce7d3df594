"""Resolving a knowledge leaf's pinned documents: a local directory or a git repository at a commit.

Local (`repo: documents/tides`): a directory relative to the project root, pinned by its git tree id
(`commit`), which labtax recomputes from the files. Remote (`repo: https://...`): fetched once, shallow,
at exactly `commit`, into a cache keyed by repository and commit (`$LABTAX_CACHE_DIR/documents`,
default `~/.cache/labtax/documents`). Generation reads documents through `read_documents`; validation
(`--check-documents`) through `check_document`.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from labtax.errors import LabtaxError
from labtax.git import GitError, run_git, zsplit
from labtax.taxonomy.leaf import DocumentRef, git_tree_id, local_document_files, matches_document_pattern

FULL_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class DocumentFile:
    path: str  # relative to the document repository / directory, POSIX
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


class DocumentError(LabtaxError):
    """The reference cannot be resolved; the message says why and what to change."""


def cache_dir() -> Path:
    root = os.environ.get("LABTAX_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "labtax"
    )
    return Path(root) / "documents"


def check_document(project_root: Path, ref: DocumentRef) -> list[str]:
    """Problems with the reference, as messages (empty when it resolves and every pattern matches)."""
    try:
        if ref.is_local:
            return _check_local(project_root, ref)
        files = _remote_file_list(ref)
    except DocumentError as exc:
        return [str(exc)]
    return [
        f"pattern '{pattern}' matches no file in {ref.repo} at {ref.commit[:12]}"
        for pattern in ref.patterns
        if not any(matches_document_pattern(name, pattern) for name in files)
    ]


def read_documents(project_root: Path, ref: DocumentRef) -> list[DocumentFile]:
    """The documents' bytes, sorted by path. Raises DocumentError when they cannot be had."""
    if ref.is_local:
        problems = _check_local(project_root, ref)
        if problems:
            raise DocumentError("; ".join(problems))
        base = (project_root / ref.repo).resolve()
        return [
            DocumentFile(p.relative_to(base).as_posix(), p.read_bytes())
            for p in local_document_files(project_root, ref)
        ]
    names = [n for n in _remote_file_list(ref) if any(matches_document_pattern(n, p) for p in ref.patterns)]
    repo = _fetch(ref)
    return [DocumentFile(name, run_git(["cat-file", "blob", f"{ref.commit}:{name}"], repo)) for name in sorted(names)]


def _check_local(project_root: Path, ref: DocumentRef) -> list[str]:
    base = (project_root / ref.repo).resolve()
    try:
        base.relative_to(project_root.resolve())
    except ValueError:
        return [f"document repo '{ref.repo}' points outside the repository"]
    if not base.is_dir():
        return [f"document directory '{ref.repo}' does not exist (paths are relative to the repository root)"]
    problems = []
    actual = git_tree_id(base)
    if actual != ref.commit:
        problems.append(
            f"the documents in '{ref.repo}' are not the pinned ones: commit is {ref.commit or '(empty)'} but the "
            f"directory's git tree id is {actual}; if the change is intended, set document.commit to {actual}"
        )
    for pattern in ref.patterns:
        if not any(base.glob(pattern)):
            problems.append(f"pattern '{pattern}' matches no file in '{ref.repo}'")
    return problems


def _repo_cache(ref: DocumentRef) -> Path:
    key = hashlib.sha256(ref.repo.encode("utf-8")).hexdigest()[:24]
    return cache_dir() / key


def _fetch(ref: DocumentRef) -> Path:
    """A git repository in the cache holding `ref.commit` (fetched shallow on first use)."""
    if not FULL_SHA.match(ref.commit):
        raise DocumentError(f"document commit '{ref.commit}' is not a full 40-character SHA")
    repo = _repo_cache(ref)
    if (repo / ".git").is_dir() and _has_commit(repo, ref.commit):
        return repo
    repo.mkdir(parents=True, exist_ok=True)
    try:
        if not (repo / ".git").is_dir():
            run_git(["init", "-q"], repo)
        run_git(["fetch", "-q", "--depth", "1", ref.repo, ref.commit], repo)
    except GitError as exc:
        raise DocumentError(f"could not fetch {ref.repo} at {ref.commit}: {exc.stderr or exc}") from None
    if not _has_commit(repo, ref.commit):
        raise DocumentError(f"commit {ref.commit} does not exist in {ref.repo}")
    return repo


def _has_commit(repo: Path, commit: str) -> bool:
    try:
        run_git(["cat-file", "-e", f"{commit}^{{commit}}"], repo)
    except GitError:
        return False
    return True


def _remote_file_list(ref: DocumentRef) -> list[str]:
    repo = _fetch(ref)
    return zsplit(run_git(["ls-tree", "-r", "-z", "--name-only", ref.commit], repo))
