"""Which leaves a change touches: base resolution by merge-base, leaf changes and their hashes.

The working tree (committed, staged, unstaged and untracked-but-not-ignored files) is compared with
the merge-base of HEAD and the base ref. Git tells us which files changed in a constant number of
calls (`merge-base`, `diff --name-status -M`, `ls-files --others`, `ls-tree`, `cat-file --batch`);
we never walk the commit graph. A leaf is a `qna.yaml`; its `attribution.txt` and the in-repository
documents its knowledge leaf references belong to it, so changing them changes the leaf.

Whether a candidate leaf really changed is decided by its leaf hash (docs/leaf-hash.md), computed the
same way for the old version (read from the merge-base with `git cat-file --batch`) and the new one
(read from the working tree). A pure rename keeps its hash; an edited rename is paired by git's rename
detection. Without git, or with `--base empty`, every leaf is added.
"""

from __future__ import annotations

import enum
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from labtax.config import Config
from labtax.errors import LabtaxError, UsageError
from labtax.git import GitError, git_toplevel, run_git, run_git_concurrently, zsplit
from labtax.taxonomy.discover import discover
from labtax.taxonomy.leaf import (
    ATTRIBUTION_FILE,
    LEAF_FILE,
    DocumentRef,
    Leaf,
    LeafKind,
    branch_of,
    document_digest,
    document_ref,
    leaf_from_content,
    leaf_kind,
    local_document_digest,
    matches_document_pattern,
    parse_attribution,
)
from labtax.taxonomy.load import load_yaml_text

EMPTY_BASE = "empty"
DEFAULT_BASES = ("origin/main", "main")
# discover.py does not walk into these directories (nor into hidden ones); the diff agrees with it.
SKIPPED_DIRECTORIES = frozenset({"node_modules", "__pycache__", "venv"})
_REPO_LINE = re.compile(r"^\s*repo\s*:\s*(?P<quote>['\"]?)(?P<value>.*?)(?P=quote)\s*(#.*)?$")


class ChangeStatus(enum.StrEnum):
    ADDED = "added"
    MODIFIED = "modified"
    RENAMED = "renamed"
    DELETED = "deleted"


@dataclass(frozen=True)
class LeafChange:
    """One changed leaf. Paths are qna.yaml paths relative to the taxonomy root (`Leaf.path`).

    `old_path` is where the leaf was at the base: None for an added leaf, equal to `path` for a
    modified or deleted one. `hash`/`leaf` are None for a deleted leaf, or when the new qna.yaml cannot
    be read as YAML (validation says why); likewise `old_hash`/`old_leaf` for the old version.
    """

    status: ChangeStatus
    path: str
    old_path: str | None
    branch: str
    kind: str | None
    hash: str | None
    old_hash: str | None
    leaf: Leaf | None = field(default=None, compare=False, repr=False)
    old_leaf: Leaf | None = field(default=None, compare=False, repr=False)

    @property
    def is_pure_rename(self) -> bool:
        return self.status is ChangeStatus.RENAMED and self.hash is not None and self.hash == self.old_hash

    @property
    def drives_generation(self) -> bool:
        """Whether generation must run for this leaf: new or changed content (not a pure rename or deletion)."""
        return self.status is not ChangeStatus.DELETED and not self.is_pure_rename

    def as_json(self) -> dict[str, str | None]:
        return {
            "status": str(self.status),
            "path": self.path,
            "old_path": self.old_path,
            "branch": self.branch,
            "kind": self.kind,
            "hash": self.hash,
            "old_hash": self.old_hash,
        }


@dataclass(frozen=True)
class DiffResult:
    """The leaf changes and what they were compared with."""

    changes: list[LeafChange]
    base_ref: str  # as given (or the default that was found); "empty" when everything is new
    base_commit: str | None  # the merge-base; None when everything is new
    head_commit: str | None  # HEAD; None outside git or on an unborn branch
    repository: Path | None  # the git work-tree top; None outside git

    @property
    def everything_new(self) -> bool:
        return self.base_commit is None


# --- building leaves from text ----------------------------------------------------------------------


def parse_leaf_content(text: str, file: str) -> dict[str, Any] | None:
    """The qna.yaml mapping, or None when the text is not a YAML mapping (validation reports why)."""
    document, _ = load_yaml_text(text.removeprefix("\ufeff"), file)
    if document is None or not isinstance(document.value, dict):
        return None
    return document.value


def leaf_needs_local_documents(path: str, content: dict[str, Any]) -> DocumentRef | None:
    """The local document reference whose files feed the leaf hash (knowledge leaves only, as validation does)."""
    if leaf_kind(branch_of(PurePosixPath(path)), content) is not LeafKind.KNOWLEDGE:
        return None
    reference = document_ref(content.get("document"))
    return reference if reference is not None and reference.is_local else None


def leaf_from_text(
    path: str, content: dict[str, Any], attribution_text: str | None, document_digest: str | None
) -> Leaf:
    """A Leaf from already-read content, without touching the filesystem.

    Gives the same `leaf_hash` as `labtax.validate.validate_leaf_file` on the same files (a test
    holds the two together), so the hash in `labtax diff` is the hash generation caches by.
    """
    attribution = parse_attribution(attribution_text)[0] if attribution_text is not None else None
    return leaf_from_content(path, branch_of(PurePosixPath(path)), content, attribution, document_digest)


# --- the entry point ----------------------------------------------------------------------------------


def changed_leaves(config: Config, base: str | None = None) -> DiffResult:
    """The leaves that differ between the merge-base of HEAD and `base`, and the working tree.

    `base` None means `origin/main` if it exists, else `main`; `"empty"` means every leaf is added.
    Outside a git repository every leaf is added too.
    """
    start = config.taxonomy_root if config.taxonomy_root.is_dir() else config.project_root
    toplevel = git_toplevel(start) if start.is_dir() else None
    if base is not None and base.startswith("-"):
        raise UsageError(f"--base {base!r}: a git ref cannot start with '-'")
    if toplevel is None:
        return DiffResult(_all_added(config, None, ""), base or EMPTY_BASE, None, None, None)
    prefix = _relative_prefix(config.taxonomy_root, toplevel, "taxonomy root")
    head = _resolve_commit(toplevel, "HEAD")
    if base == EMPTY_BASE or head is None:
        # An unborn branch has no history to compare with: everything in the working tree is new.
        return DiffResult(_all_added(config, toplevel, prefix), base or EMPTY_BASE, None, head, toplevel)
    base_name, base_commit = _resolve_base(toplevel, base)
    merge_base = _merge_base(toplevel, head, base_commit, base_name)
    changes = _leaf_changes(config, toplevel, prefix, merge_base)
    return DiffResult(changes, base_name, merge_base, head, toplevel)


# --- git plumbing ---------------------------------------------------------------------------------------


def _relative_prefix(path: Path, toplevel: Path, what: str) -> str:
    """`path` relative to the work-tree top as a POSIX prefix ('' for the top itself)."""
    try:
        relative = path.resolve().relative_to(toplevel.resolve())
    except ValueError:
        raise UsageError(f"the {what} {path} is outside the git repository at {toplevel}") from None
    text = relative.as_posix()
    return "" if text == "." else text


def _resolve_commit(toplevel: Path, ref: str) -> str | None:
    out = run_git(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"], toplevel, check=False)
    sha = out.decode("ascii", "replace").strip()
    return sha or None


def _resolve_base(toplevel: Path, base: str | None) -> tuple[str, str]:
    candidates = (base,) if base is not None else DEFAULT_BASES
    for name in candidates:
        commit = _resolve_commit(toplevel, name)
        if commit is not None:
            return name, commit
    if base is None:
        raise UsageError(
            "no base to compare with: neither origin/main nor main exists here; pass --base REF (a branch, tag "
            "or commit), fetch the base branch (`git fetch origin main`), or pass --base empty to treat every "
            "leaf as added"
        )
    raise UsageError(
        f"--base {base}: no such branch, tag or commit here; if it is a remote branch, fetch it first "
        f"(`git fetch origin {base.removeprefix('origin/')}`; on GitHub Actions use `fetch-depth: 0` on "
        "actions/checkout), or pass --base empty to treat every leaf as added"
    )


def _merge_base(toplevel: Path, head: str, base_commit: str, base_name: str) -> str:
    try:
        out = run_git(["merge-base", head, base_commit], toplevel)
    except GitError as exc:
        if exc.returncode != 1:
            raise
        out = b""
    merge_base = out.decode("ascii", "replace").strip()
    if merge_base:
        return merge_base
    shallow = run_git(["rev-parse", "--is-shallow-repository"], toplevel).strip() == b"true"
    if shallow:
        fetched = int(run_git(["rev-list", "--count", head], toplevel).strip() or b"0")
        raise LabtaxError(
            f"HEAD and {base_name} share no commit in this shallow clone: the merge-base lies deeper than the "
            f"{fetched} commit(s) of HEAD fetched so far. Fetch more history with "
            f"`git fetch --deepen={max(fetched, 50)}` "
            f"(repeat until `git merge-base HEAD {base_name}` succeeds) or all of it with `git fetch --unshallow`; "
            "on GitHub Actions set `fetch-depth: 0` on actions/checkout"
        )
    raise LabtaxError(
        f"HEAD and {base_name} have no common history; pass a --base that shares history with HEAD, or "
        "--base empty to treat every leaf as added"
    )


@dataclass(frozen=True)
class _TreeEntry:
    mode: str
    oid: str


_ABSENT = "0" * 40


@dataclass(frozen=True)
class _FileChange:
    status: str  # git's letter: A, M, D, R, T, U..., or ? for an untracked file
    path: str  # toplevel-relative; the new path for a rename
    old_path: str | None  # the old path of a rename
    old: _TreeEntry | None  # the blob at the merge-base (of old_path for a rename); None when absent there


def _working_tree_changes(toplevel: Path, merge_base: str) -> list[_FileChange]:
    """Tracked changes (committed, staged and unstaged) since the merge-base, and untracked files.

    `git diff --raw <merge-base>` compares the merge-base with the working tree and names the old
    blob of every changed file, so the old side needs no tree listing. Untracked files come from
    `ls-files --others`; the two walks run at the same time.
    """
    diff_args = ["diff", "--raw", "-z", "--no-abbrev", "-M", "--no-ext-diff", "--no-textconv", "--ignore-submodules"]
    diff_out, untracked_out = run_git_concurrently(
        [[*diff_args, merge_base, "--"], ["ls-files", "-z", "--others", "--exclude-standard"]], toplevel
    )
    fields = zsplit(diff_out)
    changes: list[_FileChange] = []
    index = 0
    while index < len(fields):
        old_mode, _new_mode, old_oid, _new_oid, status = fields[index].lstrip(":").split(" ")
        old = _TreeEntry(old_mode, old_oid) if old_oid != _ABSENT and old_mode != "000000" else None
        letter = status[:1]
        if letter in ("R", "C"):
            changes.append(_FileChange(letter, fields[index + 2], fields[index + 1], old))
            index += 3
        else:
            changes.append(_FileChange(letter, fields[index + 1], None, old))
            index += 2
    changes.extend(_FileChange("?", path, None, None) for path in zsplit(untracked_out))
    return changes


def _list_tree(toplevel: Path, commit: str, pathspecs: list[str]) -> dict[str, _TreeEntry]:
    """Blobs under `pathspecs` (literal paths; all if empty) at `commit`, by toplevel-relative path."""
    entries: dict[str, _TreeEntry] = {}
    # Chunks keep the command line far below the system's argument limit.
    chunks = [pathspecs[i : i + 1000] for i in range(0, len(pathspecs), 1000)] or [[]]
    for chunk in chunks:
        args = ["--literal-pathspecs", "ls-tree", "-r", "-z", "--full-tree", commit, "--", *chunk]
        for record in zsplit(run_git(args, toplevel)):
            meta, _, path = record.partition("\t")
            mode, kind, oid = meta.split(" ")
            if kind == "blob":
                entries[path] = _TreeEntry(mode, oid)
    return entries


def read_blobs(toplevel: Path, oids: Iterable[str]) -> dict[str, bytes]:
    """The contents of many blobs in one `git cat-file --batch` call."""
    wanted = list(dict.fromkeys(oids))
    if not wanted:
        return {}
    out = run_git(["cat-file", "--batch"], toplevel, input_bytes=("\n".join(wanted) + "\n").encode("ascii"))
    blobs: dict[str, bytes] = {}
    position = 0
    while position < len(out):
        header_end = out.index(b"\n", position)
        header = out[position:header_end].decode("ascii", "replace").split(" ")
        position = header_end + 1
        if len(header) < 3 or header[1] == "missing":
            continue
        size = int(header[2])
        blobs[header[0]] = out[position : position + size]
        position += size + 1  # the content is followed by a newline
    return blobs


# --- which leaves ------------------------------------------------------------------------------------


def _is_leaf_file(path: str, prefix: str) -> bool:
    """A toplevel-relative path that discover() would read as a leaf under the taxonomy root."""
    relative = _under(path, prefix)
    if relative is None:
        return False
    parts = relative.split("/")
    return parts[-1] == LEAF_FILE and not any(p.startswith(".") or p in SKIPPED_DIRECTORIES for p in parts[:-1])


def _under(path: str, prefix: str) -> str | None:
    if not prefix:
        return path
    return path[len(prefix) + 1 :] if path.startswith(prefix + "/") else None


def _leaf_file_of(path: str, prefix: str) -> str | None:
    """The leaf file a changed path belongs to: itself, or the qna.yaml next to an attribution.txt."""
    if _is_leaf_file(path, prefix):
        return path
    if posixpath.basename(path) == ATTRIBUTION_FILE:
        sibling = posixpath.join(posixpath.dirname(path), LEAF_FILE)
        if _is_leaf_file(sibling, prefix):
            return sibling
    return None


def _ancestors(path: str) -> Iterable[str]:
    parent = posixpath.dirname(path)
    while parent:
        yield parent
        parent = posixpath.dirname(parent)


def _normalise_repo(repo: str) -> str | None:
    """A local document reference as a normalised project-relative directory, or None for a remote one."""
    repo = repo.strip()
    if not repo or "://" in repo or repo.startswith("git@"):
        return None
    normal = posixpath.normpath(repo)
    return None if normal.startswith("..") or normal.startswith("/") else ("" if normal == "." else normal)


def _leaves_using_documents(toplevel: Path, prefix: str, project_prefix: str, changed: list[str]) -> set[str]:
    """Leaf files (toplevel-relative) whose local document directory contains one of `changed` (one git grep)."""
    changed_dirs: set[str] = set()
    for path in changed:
        relative = _under(path, project_prefix)
        if relative is not None:
            changed_dirs.update(_ancestors(relative))
    if not changed_dirs:
        return set()
    out = run_git(
        [
            "grep",
            "-z",
            "-I",
            "--untracked",
            "--no-color",
            "-E",
            "-e",
            r"^[[:space:]]*repo[[:space:]]*:",
            "--",
            prefix or ".",
        ],
        toplevel,
        check=False,
    )
    leaves: set[str] = set()
    position = 0
    # Records are `path NUL line LF`; a path may contain LF, a matched line cannot.
    while position < len(out):
        path_end = out.find(b"\0", position)
        if path_end < 0:
            break
        line_end = out.find(b"\n", path_end)
        line_end = len(out) if line_end < 0 else line_end
        path = out[position:path_end].decode("utf-8", "surrogateescape")
        line = out[path_end + 1 : line_end].decode("utf-8", "replace")
        position = line_end + 1
        match = _REPO_LINE.match(line)
        repo = _normalise_repo(match.group("value")) if match else None
        if repo is not None and repo in changed_dirs and _is_leaf_file(path, prefix):
            leaves.add(path)
    return leaves


# --- building both sides ---------------------------------------------------------------------------


def _read_text_file(path: Path) -> str | None:
    """A regular file's text; a link, FIFO or device is never opened (labtax.taxonomy.files)."""
    from labtax.taxonomy.files import NotRegular, read_regular_file

    try:
        return read_regular_file(path, MAX_LEAF_FILE_BYTES).decode("utf-8")
    except (NotRegular, UnicodeDecodeError):
        return None


# Far above any real qna.yaml or attribution.txt; validation reports files over its own, smaller limit.
MAX_LEAF_FILE_BYTES = 64 * 1024 * 1024


def _new_leaf(config: Config, toplevel: Path | None, top_path: str, leaf_path: str) -> Leaf | None:
    """The working-tree version of a leaf, or None when its qna.yaml is not a readable YAML mapping."""
    file = (toplevel / top_path) if toplevel is not None else (config.taxonomy_root / leaf_path)
    text = _read_text_file(file)
    if text is None:
        return None
    content = parse_leaf_content(text, leaf_path)
    if content is None:
        return None
    attribution = _read_text_file(file.parent / ATTRIBUTION_FILE)
    reference = leaf_needs_local_documents(leaf_path, content)
    digest = local_document_digest(config.project_root, reference) if reference is not None else None
    return leaf_from_text(leaf_path, content, attribution, digest)


def _old_leaves(
    toplevel: Path,
    merge_base: str,
    prefix: str,
    project_prefix: str | None,
    old_tree: dict[str, _TreeEntry],
    wanted: list[str],
) -> dict[str, Leaf | None]:
    """The merge-base versions of `wanted` leaf files (toplevel-relative), read in a few batched git calls."""
    attribution_of = {p: posixpath.join(posixpath.dirname(p), ATTRIBUTION_FILE) for p in wanted}
    oids = [old_tree[p].oid for p in wanted] + [old_tree[a].oid for a in attribution_of.values() if a in old_tree]
    blobs = read_blobs(toplevel, oids)
    contents: dict[str, dict[str, Any] | None] = {}
    for path in wanted:
        text = _decode(blobs.get(old_tree[path].oid))
        contents[path] = parse_leaf_content(text, path) if text is not None else None
    references: dict[str, DocumentRef] = {}
    for path, content in contents.items():
        reference = leaf_needs_local_documents(_leaf_path(path, prefix), content) if content is not None else None
        if reference is not None:
            references[path] = reference
    digests = (
        _old_document_digests(toplevel, merge_base, project_prefix, list(references.values()))
        if project_prefix is not None
        else {}
    )
    leaves: dict[str, Leaf | None] = {}
    for path, content in contents.items():
        if content is None:
            leaves[path] = None
            continue
        attribution_entry = old_tree.get(attribution_of[path])
        attribution = _decode(blobs.get(attribution_entry.oid)) if attribution_entry else None
        digest = digests.get(references[path]) if path in references else None
        leaves[path] = leaf_from_text(_leaf_path(path, prefix), content, attribution, digest)
    return leaves


def _decode(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _old_document_digests(
    toplevel: Path, merge_base: str, project_prefix: str, references: list[DocumentRef]
) -> dict[DocumentRef, str]:
    """The document digests the referenced local directories had at the merge-base (two git calls)."""
    if not references:
        return {}
    directories: dict[DocumentRef, str] = {}
    for reference in references:
        directory = _normalise_repo(reference.repo)
        if directory is not None:
            directories[reference] = posixpath.join(project_prefix, directory) if project_prefix else directory
    pathspecs = sorted(set(directories.values()))
    tree = _list_tree(toplevel, merge_base, [] if "" in pathspecs else pathspecs) if pathspecs else {}
    selected: dict[DocumentRef, list[tuple[str, str]]] = {reference: [] for reference in references}
    for reference, directory in directories.items():
        for path, entry in tree.items():
            relative = _under(path, directory)
            # A symlink is a blob of its target's name in git but a followed link on disk: leave it out.
            if relative is None or entry.mode == "120000":
                continue
            if any(matches_document_pattern(relative, pattern) for pattern in reference.patterns):
                selected[reference].append((relative, entry.oid))
    blobs = read_blobs(toplevel, [oid for files in selected.values() for _, oid in files])
    return {
        reference: document_digest((name, blobs.get(oid, b"")) for name, oid in files)
        for reference, files in selected.items()
    }


def _leaf_path(top_path: str, prefix: str) -> str:
    return _under(top_path, prefix) or top_path


def _project_prefix(config: Config, toplevel: Path) -> str | None:
    """The project root relative to the work-tree top; None when it lies outside (documents are then not followed)."""
    try:
        return _relative_prefix(config.project_root, toplevel, "project root")
    except UsageError:
        return None


def _leaf_changes(config: Config, toplevel: Path, prefix: str, merge_base: str) -> list[LeafChange]:
    file_changes = _working_tree_changes(toplevel, merge_base)
    candidates: set[str] = set()
    other_paths: list[str] = []
    for change in file_changes:
        for path in (change.path, change.old_path):
            if path is None:
                continue
            leaf_file = _leaf_file_of(path, prefix)
            if leaf_file is not None:
                candidates.add(leaf_file)
            else:
                other_paths.append(path)
    project_prefix = _project_prefix(config, toplevel)
    if other_paths and project_prefix is not None:
        candidates |= _leaves_using_documents(toplevel, prefix, project_prefix, other_paths)
    if not candidates:
        return []
    old_tree, removed, present = _merge_base_side(toplevel, merge_base, file_changes, candidates)
    old_files = sorted(p for p in candidates if p in old_tree)
    new_files = sorted(p for p in candidates if p in present or (p in old_tree and p not in removed))
    old_leaves = _old_leaves(toplevel, merge_base, prefix, project_prefix, old_tree, old_files)
    new_leaves = {p: _new_leaf(config, toplevel, p, _leaf_path(p, prefix)) for p in new_files}
    git_renames = {c.old_path: c.path for c in file_changes if c.status == "R" and c.old_path is not None}
    changed_files = {c.path for c in file_changes} | {c.old_path for c in file_changes if c.old_path is not None}
    return _pair(prefix, old_leaves, new_leaves, git_renames, changed_files)


def _merge_base_side(
    toplevel: Path, merge_base: str, file_changes: list[_FileChange], candidates: set[str]
) -> tuple[dict[str, _TreeEntry], set[str], set[str]]:
    """The merge-base blobs of the candidates' files, and which paths were removed or are present now.

    Changed files name their old blob in the diff; only unchanged files of a changed leaf (the
    qna.yaml beside an edited attribution.txt, say) are looked up, with one `ls-tree` on exactly them.
    """
    old_tree: dict[str, _TreeEntry] = {}
    absent: set[str] = set()
    removed: set[str] = set()
    present: set[str] = set()
    for change in file_changes:
        old_path = change.old_path or change.path
        if change.old is not None:
            old_tree[old_path] = change.old
        elif change.status != "?" or change.path not in old_tree:
            absent.add(old_path)
        if change.status == "D":
            removed.add(change.path)
        else:
            present.add(change.path)
        if change.status == "R" and change.old_path is not None:
            removed.add(change.old_path)
    wanted = {p for leaf in candidates for p in (leaf, posixpath.join(posixpath.dirname(leaf), ATTRIBUTION_FILE))}
    unknown = sorted(p for p in wanted if p not in old_tree and p not in absent)
    if unknown:
        old_tree.update(_list_tree(toplevel, merge_base, unknown))
    return old_tree, removed, present


def _pair(
    prefix: str,
    old_leaves: dict[str, Leaf | None],
    new_leaves: dict[str, Leaf | None],
    git_renames: dict[str, str],
    changed_files: set[str],
) -> list[LeafChange]:
    """Leaf changes from the two sides: same path -> modified when the hash differs; else pair renames."""
    changes: list[LeafChange] = []
    for path in sorted(old_leaves.keys() & new_leaves.keys()):
        old, new = old_leaves[path], new_leaves[path]
        if old is not None and new is not None:
            if old.leaf_hash == new.leaf_hash:
                continue
        elif path not in changed_files and old is None and new is None:
            continue
        changes.append(_change(ChangeStatus.MODIFIED, prefix, path, path, old, new))
    deleted = sorted(old_leaves.keys() - new_leaves.keys())
    added = sorted(new_leaves.keys() - old_leaves.keys())
    renames: list[tuple[str, str]] = []
    # An identical hash is the surest pairing (a pure rename), then git's similarity for edited renames.
    added_by_hash: dict[str, list[str]] = {}
    for path in added:
        leaf = new_leaves[path]
        if leaf is not None:
            added_by_hash.setdefault(leaf.leaf_hash, []).append(path)
    for path in list(deleted):
        leaf = old_leaves[path]
        matches = added_by_hash.get(leaf.leaf_hash) if leaf is not None else None
        if matches:
            renames.append((path, matches.pop(0)))
    paired_old = {old for old, _ in renames}
    paired_new = {new for _, new in renames}
    for old_path, new_path in sorted(git_renames.items()):
        if old_path in deleted and new_path in added and old_path not in paired_old and new_path not in paired_new:
            renames.append((old_path, new_path))
            paired_old.add(old_path)
            paired_new.add(new_path)
    for old_path, new_path in renames:
        changes.append(
            _change(ChangeStatus.RENAMED, prefix, new_path, old_path, old_leaves[old_path], new_leaves[new_path])
        )
    for path in added:
        if path not in paired_new:
            changes.append(_change(ChangeStatus.ADDED, prefix, path, None, None, new_leaves[path]))
    for path in deleted:
        if path not in paired_old:
            changes.append(_change(ChangeStatus.DELETED, prefix, path, path, old_leaves[path], None))
    changes.sort(key=lambda c: (c.path, c.old_path or ""))
    return changes


def _change(
    status: ChangeStatus, prefix: str, top_path: str, old_top_path: str | None, old: Leaf | None, new: Leaf | None
) -> LeafChange:
    path = _leaf_path(top_path, prefix)
    kind_source = new if new is not None else old
    return LeafChange(
        status=status,
        path=path,
        old_path=_leaf_path(old_top_path, prefix) if old_top_path is not None else None,
        branch=branch_of(PurePosixPath(path)) or "",
        kind=str(kind_source.kind) if kind_source is not None else None,
        hash=new.leaf_hash if new is not None else None,
        old_hash=old.leaf_hash if old is not None else None,
        leaf=new,
        old_leaf=old,
    )


def _all_added(config: Config, toplevel: Path | None, prefix: str) -> list[LeafChange]:
    """Every leaf of the working tree as added: git's view (ignored files excluded) or, outside git, discover's."""
    if toplevel is not None:
        listed = zsplit(
            run_git(["ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", prefix or "."], toplevel)
        )
        files = sorted({p for p in listed if _is_leaf_file(p, prefix) and (toplevel / p).is_file()})
        leaves = {p: _new_leaf(config, toplevel, p, _leaf_path(p, prefix)) for p in files}
    else:
        found = discover(config)
        leaves = {}
        for file in found.leaf_files:
            relative = file.absolute().relative_to(config.taxonomy_root).as_posix()
            leaves[relative] = _new_leaf(config, None, relative, relative)
    return [_change(ChangeStatus.ADDED, prefix, p, None, None, leaf) for p, leaf in sorted(leaves.items())]
