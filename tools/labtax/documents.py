"""Resolving a knowledge leaf's pinned documents: read from git objects only, never from the file system.

A document selection is a git tree and the patterns that pick files from it:

- local (`repo: documents/tides`): a directory of this repository, pinned by its git tree id (`commit`).
  The pin must equal the directory as it is now (an edited document without a new pin is an error, with
  the new id to paste), and the files are then read from the tree object with that id: committed, or
  written from the index (`git write-tree --prefix`, what `git commit` does) when the directory is staged.
- remote (`repo: https://...`): fetched once, shallow, at exactly `commit`, into a cache keyed by
  repository (`$LABTAX_CACHE_DIR/documents`, default `~/.cache/labtax/documents`), and read from there.
  Every fetch has a time limit (`[tool.labtax.documents] fetch_timeout_s`): a server that accepts the
  connection and never answers gives a clear error, not a hang.

Either way a selected entry must be a regular file (a blob, mode 100644 or 100755): a symbolic link, a
submodule (gitlink) or anything else is an error naming its path. Reading through the file system would
follow a link to `/proc/self/environ` or `~/.cache/huggingface/token` into the teacher's prompts; git
objects hold a link as the text of its target and nothing more. A copy of a taxonomy outside git (no
objects to read) has its local documents read as git would store them: regular files only, opened
without following links (labtax.taxonomy.files), after the same check of the pin against those files.

Text comes out of `document_text`: UTF-8 for text files, pypdfium2 for PDF (docling when installed and
asked for), so `labtax validate --check-documents` and `labtax generate` give the same verdict.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from labtax.errors import LabtaxError
from labtax.git import GitError, GitTimeout, git_toplevel, run_git, zsplit
from labtax.output import redact_credentials
from labtax.taxonomy.leaf import DocumentRef, git_tree_id, matches_document_pattern

FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
DEFAULT_FETCH_TIMEOUT_S = 120.0
_REGULAR_MODES = ("100644", "100755")


@dataclass(frozen=True)
class DocumentFile:
    path: str  # relative to the document repository / directory, POSIX
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


class DocumentError(LabtaxError):
    """The reference cannot be resolved; the message says why and what to change."""


@dataclass(frozen=True)
class _Entry:
    mode: str
    kind: str  # blob, tree, commit (a submodule)
    oid: str
    path: str


def cache_dir() -> Path:
    root = os.environ.get("LABTAX_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "labtax"
    )
    return Path(root) / "documents"


def shown_repo(ref: DocumentRef) -> str:
    """The repository as messages show it: credentials in a URL never reach the output."""
    return redact_credentials(ref.repo)


# --- the two entry points --------------------------------------------------------------------------


def check_document(project_root: Path, ref: DocumentRef, *, timeout_s: float = DEFAULT_FETCH_TIMEOUT_S) -> list[str]:
    """Problems with the reference, as messages (empty when it resolves, every pattern matches regular
    files and every selected file gives text as generation will read it)."""
    return inspect_documents(project_root, ref, timeout_s=timeout_s)[1]


def inspect_documents(
    project_root: Path, ref: DocumentRef, *, timeout_s: float = DEFAULT_FETCH_TIMEOUT_S
) -> tuple[list[tuple[str, str]], list[str]]:
    """The selected documents' texts, as generation reads them, and the problems found on the way."""
    try:
        files = read_documents(project_root, ref, timeout_s=timeout_s, unmatched_ok=True)
    except DocumentError as exc:
        return [], [str(exc)]
    problems = [
        f"pattern '{pattern}' matches no file in {_where(ref)}"
        for pattern in ref.patterns
        if not any(matches_document_pattern(file.path, pattern) for file in files)
    ]
    texts = []
    for file in files:
        try:
            texts.append((file.path, document_text(file)))
        except DocumentError as exc:
            problems.append(str(exc))
    return texts, problems


def read_documents(
    project_root: Path,
    ref: DocumentRef,
    *,
    timeout_s: float = DEFAULT_FETCH_TIMEOUT_S,
    unmatched_ok: bool = False,
) -> list[DocumentFile]:
    """The selected documents' bytes from git objects, sorted by path. Raises DocumentError when they
    cannot be had, when a selected entry is not a regular file, or (unless `unmatched_ok`) when a
    pattern selects nothing."""
    if ref.is_local:
        repository, tree = _local_tree(project_root, ref)
    else:
        repository, tree = _fetch(ref, timeout_s), ref.commit
    if repository is None:  # not a git repository: the directory, read as git would store it
        listed, contents = _directory_entries(project_root / ref.repo)
        entries = _select(listed, ref)
    else:
        entries = _select(_list_tree(repository, tree), ref)
    if not unmatched_ok:
        for pattern in ref.patterns:
            if not any(matches_document_pattern(entry.path, pattern) for entry in entries):
                raise DocumentError(f"pattern '{pattern}' matches no file in {_where(ref)}")
    if repository is None:
        return [DocumentFile(entry.path, contents[entry.path]) for entry in entries]
    blobs = _read_blobs(repository, [entry.oid for entry in entries])
    return [DocumentFile(entry.path, blobs[entry.oid]) for entry in entries]


def _directory_entries(base: Path) -> tuple[list[_Entry], dict[str, bytes]]:
    """Outside git: the directory's entries as git would list them, and the bytes of its regular files,
    read once each without following a link or opening anything else (labtax.taxonomy.files)."""
    import stat

    from labtax.taxonomy.files import NotRegular, read_regular_file
    from labtax.taxonomy.leaf import MAX_DOCUMENT_BYTES

    entries: list[_Entry] = []
    contents: dict[str, bytes] = {}
    for current, dirnames, filenames in os.walk(base, followlinks=False):
        directory = Path(current)
        dirnames[:] = [name for name in dirnames if name != ".git"]
        for name in [*filenames, *(d for d in dirnames if (directory / d).is_symlink())]:
            path = directory / name
            relative = path.relative_to(base).as_posix()
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                entries.append(_Entry("120000", "blob", "", relative))
            elif not stat.S_ISREG(mode):
                entries.append(_Entry("000000", "special", "", relative))
            else:
                try:
                    contents[relative] = read_regular_file(path, MAX_DOCUMENT_BYTES)
                except NotRegular as exc:
                    raise DocumentError(f"document {relative} cannot be read: {exc}") from None
                entries.append(_Entry("100644", "blob", "", relative))
    return entries, contents


def _where(ref: DocumentRef) -> str:
    return f"'{ref.repo}'" if ref.is_local else f"{shown_repo(ref)} at {ref.commit[:12]}"


# --- selecting entries ------------------------------------------------------------------------------


def _list_tree(repository: Path, tree: str) -> list[_Entry]:
    out = run_git(["ls-tree", "-r", "-z", "--full-tree", tree], repository)
    entries = []
    for record in zsplit(out):
        meta, _, path = record.partition("\t")
        mode, kind, oid = meta.split(" ")
        entries.append(_Entry(mode, kind, oid, path))
    return entries


def _select(entries: list[_Entry], ref: DocumentRef) -> list[_Entry]:
    """The entries the patterns select; a selected link, submodule or special entry is an error."""
    selected = [e for e in entries if any(matches_document_pattern(e.path, p) for p in ref.patterns)]
    refused = [e for e in selected if e.kind != "blob" or e.mode not in _REGULAR_MODES]
    if refused:
        described = ", ".join(f"'{e.path}' ({_describe_entry(e)})" for e in refused[:5])
        more = f" and {len(refused) - 5} more" if len(refused) > 5 else ""
        raise DocumentError(
            f"the documents selected in {_where(ref)} must be regular files: {described}{more}; labtax never "
            "follows links or reads submodules (replace them by the files, or narrow document.patterns)"
        )
    return sorted(selected, key=lambda e: tuple(e.path.split("/")))


def _describe_entry(entry: _Entry) -> str:
    if entry.mode == "120000":
        return "a symbolic link"
    if entry.kind == "commit" or entry.mode == "160000":
        return "a submodule"
    if entry.kind == "special":
        return "not a regular file"
    return f"git mode {entry.mode}"


def _read_blobs(repository: Path, oids: list[str]) -> dict[str, bytes]:
    """Many blobs in one `git cat-file --batch` call."""
    wanted = list(dict.fromkeys(oids))
    if not wanted:
        return {}
    out = run_git(["cat-file", "--batch"], repository, input_bytes=("\n".join(wanted) + "\n").encode("ascii"))
    blobs: dict[str, bytes] = {}
    position = 0
    while position < len(out):
        header_end = out.index(b"\n", position)
        header = out[position:header_end].decode("ascii", "replace").split(" ")
        position = header_end + 1
        if len(header) < 3 or header[1] != "blob":
            raise DocumentError(f"git object {header[0]} is missing from {repository}")
        size = int(header[2])
        blobs[header[0]] = out[position : position + size]
        position += size + 1
    return blobs


# --- documents kept in this repository ---------------------------------------------------------------


def _local_tree(project_root: Path, ref: DocumentRef) -> tuple[Path | None, str]:
    """The git repository and the tree id to read a local reference from, after checking the pin
    (no repository when the project is not in git)."""
    relative = PurePosixPath(os.path.normpath(ref.repo).replace(os.sep, "/"))
    if relative.is_absolute() or ".." in relative.parts:
        raise DocumentError(f"document repo '{ref.repo}' points outside the repository")
    base = project_root / relative
    current = project_root
    for part in relative.parts:  # no link anywhere on the way: it would lead out of the repository
        current = current / part
        if current.is_symlink():
            raise DocumentError(f"document directory '{ref.repo}' goes through a symbolic link ('{part}')")
    if not base.is_dir():
        raise DocumentError(
            f"document directory '{ref.repo}' does not exist (paths are relative to the repository root)"
        )
    actual = git_tree_id(base)
    toplevel = git_toplevel(project_root)
    if actual != ref.commit:
        strays = _untracked(toplevel, base) if toplevel is not None else []
        listed = ", ".join(strays[:5]) + (f" and {len(strays) - 5} more" if len(strays) > 5 else "")
        stray = (
            f"; it holds files git does not track ({listed}), which count in the id: remove them, or `git add` "
            "them if they belong to the documents"
            if strays
            else ""
        )
        raise DocumentError(
            f"the documents in '{ref.repo}' are not the pinned ones: commit is {ref.commit or '(empty)'} but the "
            f"directory's git tree id is {actual}{stray}; if the change is intended, set document.commit to {actual}"
        )
    if toplevel is None:
        # A copy of a taxonomy outside git (an unpacked archive): the pin was just checked against the files
        # themselves, read as git would store them, and they are read the same way (`_directory_entries`).
        return None, ref.commit
    if _object_kind(toplevel, ref.commit) == "tree":
        return toplevel, ref.commit
    # Staged but never committed: write the directory's tree from the index, as `git commit` would.
    try:
        prefix = (project_root.resolve() / relative).relative_to(toplevel.resolve()).as_posix()
        staged = run_git(["write-tree", f"--prefix={prefix}/"], toplevel).decode("ascii").strip()
    except (GitError, ValueError):
        staged = ""
    if staged == ref.commit:
        return toplevel, staged
    raise DocumentError(
        f"the documents in '{ref.repo}' match the pin but are not in git; labtax reads documents from git "
        f"objects only: run `git add {ref.repo}`"
    )


def _untracked(toplevel: Path, directory: Path) -> list[str]:
    """Files in `directory` that git does not track, ignored ones too (they are on disk, so in the id),
    relative to `directory`."""
    try:
        prefix = directory.resolve().relative_to(toplevel.resolve()).as_posix()
        out = run_git(["ls-files", "--others", "-z", "--", f"{prefix}/"], toplevel)
    except (GitError, ValueError):
        return []
    names = [name.decode("utf-8", "replace") for name in out.split(b"\0") if name]
    return sorted(name.removeprefix(f"{prefix}/") for name in names)


def _object_kind(repository: Path, oid: str) -> str | None:
    if not FULL_SHA.match(oid):
        return None
    try:
        return run_git(["cat-file", "-t", oid], repository).decode("ascii").strip()
    except GitError:
        return None


# --- remote documents --------------------------------------------------------------------------------


def _repo_cache(ref: DocumentRef) -> Path:
    key = hashlib.sha256(ref.repo.encode("utf-8")).hexdigest()[:24]
    return cache_dir() / key


def _fetch(ref: DocumentRef, timeout_s: float) -> Path:
    """A git repository in the cache holding `ref.commit` (fetched shallow on first use, within `timeout_s`)."""
    if not FULL_SHA.match(ref.commit):
        raise DocumentError(f"document commit '{ref.commit}' is not a full 40-character SHA")
    repo = _repo_cache(ref)
    if (repo / ".git").is_dir() and _object_kind(repo, ref.commit) == "commit":
        return repo
    repo.mkdir(parents=True, exist_ok=True)
    # A fetch of untrusted content: no credential helper prompts, no hooks, no protocol beyond the URL's own.
    safe = ["-c", "credential.interactive=false", "-c", "core.hooksPath=/dev/null", "-c", "protocol.ext.allow=never"]
    try:
        if not (repo / ".git").is_dir():
            run_git(["init", "-q"], repo)
        run_git([*safe, "fetch", "-q", "--depth", "1", "--", ref.repo, ref.commit], repo, timeout_s=timeout_s)
    except GitTimeout:
        raise DocumentError(
            f"could not fetch {shown_repo(ref)} at {ref.commit}: no answer within {timeout_s:g} s (the server "
            "accepted the connection but sent nothing); check the URL, or raise [tool.labtax.documents] "
            "fetch_timeout_s"
        ) from None
    except GitError as exc:
        raise DocumentError(
            f"could not fetch {shown_repo(ref)} at {ref.commit}: {redact_credentials(exc.stderr or str(exc))}"
        ) from None
    if _object_kind(repo, ref.commit) != "commit":
        raise DocumentError(f"commit {ref.commit} does not exist in {shown_repo(ref)}")
    return repo


# --- text --------------------------------------------------------------------------------------------


def is_pdf(file: DocumentFile) -> bool:
    return file.path.lower().endswith(".pdf") or file.data.startswith(b"%PDF-")


def document_text(file: DocumentFile) -> str:
    """The text generation reads from a document: UTF-8 text as is, a PDF's extracted text.

    Raises DocumentError, naming the file, when there is no text to be had."""
    if is_pdf(file):
        from labtax.pdf import PdfError, pdf_text

        try:
            text = pdf_text(file.data)
        except PdfError as exc:
            raise DocumentError(f"document {file.path}: {exc}") from None
        if not text.strip():
            raise DocumentError(
                f"document {file.path} is a PDF without a text layer (a scan?); convert it to Markdown, or narrow "
                "document.patterns"
            )
        return text
    try:
        return file.data.decode("utf-8")
    except UnicodeDecodeError:
        raise DocumentError(
            f"document {file.path} is not UTF-8 text; knowledge documents must be Markdown, plain text or PDF "
            "(convert it, or narrow document.patterns)"
        ) from None
