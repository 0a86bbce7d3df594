"""The `Leaf` record: one qna.yaml with its seeds, document reference and attribution, and its hash.

Every later stage (diff, report, generation, curation, evaluation) works on `Leaf` values, never on
raw YAML. Building a Leaf assumes the document passed validation; `leaf_from_document` is tolerant
of wrong types anyway (it skips what it cannot use), so a report on a broken leaf still renders.
"""

from __future__ import annotations

import enum
import fnmatch
import hashlib
import json
import os
import re
import stat
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

BRANCHES = ("knowledge", "foundational_skills", "compositional_skills")
LEAF_FILE = "qna.yaml"
ATTRIBUTION_FILE = "attribution.txt"
HASH_FORMAT = "labtax-leaf-hash/1"
# The largest document file read (a PDF book is tens of MB; this bounds a hostile one).
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024


class LeafKind(enum.StrEnum):
    KNOWLEDGE = "knowledge"
    FREEFORM_SKILL = "freeform_skill"
    GROUNDED_SKILL = "grounded_skill"


@dataclass(frozen=True)
class QnaPair:
    question: str
    answer: str


@dataclass(frozen=True)
class SeedExample:
    """A skill seed is one Q&A pair with an optional context; a knowledge seed is a context with 3+ pairs."""

    context: str | None
    qna: tuple[QnaPair, ...]


@dataclass(frozen=True)
class DocumentRef:
    repo: str
    commit: str
    patterns: tuple[str, ...]

    @property
    def is_local(self) -> bool:
        return is_local_repo(self.repo)


@dataclass(frozen=True)
class Attribution:
    fields: dict[str, str]

    @property
    def license(self) -> str:
        return self.fields.get("License of the work", "")


@dataclass(frozen=True)
class Leaf:
    """A taxonomy leaf. `path` is the qna.yaml path relative to the taxonomy root, POSIX style."""

    path: str
    branch: str
    kind: LeafKind
    version: int
    created_by: str
    task_description: str
    domain: str
    document_outline: str
    seed_examples: tuple[SeedExample, ...]
    document: DocumentRef | None
    attribution: Attribution | None
    leaf_hash: str
    content: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def name(self) -> str:
        """The leaf's directory path under the taxonomy root, e.g. `knowledge/science/tides`."""
        return str(PurePosixPath(self.path).parent)

    @property
    def qna_pairs(self) -> tuple[QnaPair, ...]:
        return tuple(pair for seed in self.seed_examples for pair in seed.qna)


# --- held-out split --------------------------------------------------------------------------------
# One documented rule, used by generation (never shows held-out seeds to the teacher), curation
# (decontamination) and evaluation: see docs/heldout.md.


def heldout_pairs(leaf: Leaf) -> tuple[tuple[str | None, QnaPair], ...]:
    """The (context, pair) seeds kept out of training for evaluation.

    Knowledge: the last Q&A pair of every seed example (its context stays in training).
    Skills: the last seed example, when the leaf has at least two.
    """
    if leaf.kind is LeafKind.KNOWLEDGE:
        return tuple((seed.context, seed.qna[-1]) for seed in leaf.seed_examples if len(seed.qna) >= 2)
    if len(leaf.seed_examples) >= 2:
        last = leaf.seed_examples[-1]
        return tuple((last.context, pair) for pair in last.qna)
    return ()


def training_seeds(leaf: Leaf) -> tuple[SeedExample, ...]:
    """The seed examples with the held-out pairs removed: what the teacher and the student may see."""
    if leaf.kind is LeafKind.KNOWLEDGE:
        return tuple(
            SeedExample(seed.context, seed.qna[:-1] if len(seed.qna) >= 2 else seed.qna) for seed in leaf.seed_examples
        )
    if len(leaf.seed_examples) >= 2:
        return leaf.seed_examples[:-1]
    return leaf.seed_examples


# --- building --------------------------------------------------------------------------------------


def branch_of(relative_path: PurePosixPath) -> str | None:
    """The branch named by the first path component under the taxonomy root, as InstructLab reads it."""
    return relative_path.parts[0] if relative_path.parts and relative_path.parts[0] in BRANCHES else None


def is_local_repo(repo: str) -> bool:
    return "://" not in repo and not repo.startswith("git@")


def leaf_kind(branch: str | None, content: dict[str, Any]) -> LeafKind:
    if branch == "knowledge" or (branch is None and "document" in content):
        return LeafKind.KNOWLEDGE
    seeds = content.get("seed_examples")
    if isinstance(seeds, list) and any(isinstance(s, dict) and s.get("context") for s in seeds):
        return LeafKind.GROUNDED_SKILL
    return LeafKind.FREEFORM_SKILL


def leaf_from_content(
    path: str,
    branch: str | None,
    content: dict[str, Any],
    attribution: Attribution | None,
    document_digest: str | None,
) -> Leaf:
    kind = leaf_kind(branch, content)
    version = content.get("version", 1)
    document = document_ref(content.get("document"))
    leaf_hash = compute_leaf_hash(kind, content, attribution, document, document_digest)
    return Leaf(
        path=path,
        branch=branch or "",
        kind=kind,
        version=version if isinstance(version, int) else 1,
        created_by=_text(content.get("created_by")),
        task_description=_text(content.get("task_description")),
        domain=_text(content.get("domain")),
        document_outline=_text(content.get("document_outline")),
        seed_examples=_seeds(kind, content.get("seed_examples")),
        document=document,
        attribution=attribution,
        leaf_hash=leaf_hash,
        content=content,
    )


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _pair(raw: object) -> QnaPair | None:
    if isinstance(raw, dict) and isinstance(raw.get("question"), str) and isinstance(raw.get("answer"), str):
        return QnaPair(raw["question"].strip(), raw["answer"].strip())
    return None


def _seeds(kind: LeafKind, raw: object) -> tuple[SeedExample, ...]:
    if not isinstance(raw, list):
        return ()
    seeds = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        context = item.get("context")
        context = context.strip() if isinstance(context, str) and context.strip() else None
        if kind is LeafKind.KNOWLEDGE and isinstance(item.get("questions_and_answers"), list):
            pairs = tuple(p for p in map(_pair, item["questions_and_answers"]) if p)
        else:
            single = _pair(item)
            pairs = (single,) if single else ()
        if pairs:
            seeds.append(SeedExample(context, pairs))
    return tuple(seeds)


def document_ref(raw: object) -> DocumentRef | None:
    """The document reference of a knowledge leaf's content, or None when it is absent or malformed."""
    if not isinstance(raw, dict):
        return None
    repo, commit, patterns = raw.get("repo"), raw.get("commit"), raw.get("patterns")
    if not isinstance(repo, str) or not isinstance(commit, str):
        return None
    pattern_list = tuple(p for p in patterns if isinstance(p, str)) if isinstance(patterns, list) else ()
    return DocumentRef(repo.strip(), commit.strip().lower(), pattern_list)


# --- attribution ---------------------------------------------------------------------------------

ATTRIBUTION_FIELDS = ("Title of work", "Link to work", "Revision", "License of the work", "Creator names")
_FIELD_LINE = re.compile(r"^\s*([A-Za-z][A-Za-z ]*?)\s*:\s*(.*?)\s*$")


def parse_attribution(text: str) -> tuple[Attribution, dict[str, int]]:
    """Parse `Field: value` lines. Returns the attribution and the 1-based line of each field."""
    fields: dict[str, str] = {}
    lines: dict[str, int] = {}
    canonical = {name.lower(): name for name in ATTRIBUTION_FIELDS}
    for number, line in enumerate(text.splitlines(), start=1):
        match = _FIELD_LINE.match(line)
        if not match:
            continue
        name = canonical.get(match.group(1).lower(), match.group(1))
        if name not in fields:
            fields[name] = match.group(2)
            lines[name] = number
    return Attribution(fields), lines


# --- hashing ---------------------------------------------------------------------------------------


def _normalise(value: Any) -> Any:
    """Content-equal YAML gives equal values: key order, comments, quoting, line endings don't count."""
    if isinstance(value, str):
        text = unicodedata.normalize("NFC", value.replace("\r\n", "\n"))
        return "\n".join(line.rstrip() for line in text.strip().split("\n"))
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return str(value)


def compute_leaf_hash(
    kind: LeafKind,
    content: dict[str, Any],
    attribution: Attribution | None,
    document: DocumentRef | None,
    document_digest: str | None,
) -> str:
    """SHA-256 over everything that feeds generation for the leaf, and nothing else (not its path).

    See docs/leaf-hash.md. `document_digest` is the digest of the referenced in-repository document
    files (None for remote documents, whose identity is their pinned commit).
    """
    payload = {
        "format": HASH_FORMAT,
        "kind": str(kind),
        "content": _normalise(content),
        "attribution": _normalise(attribution.fields) if attribution else None,
        "document": (
            {"repo": document.repo, "commit": document.commit, "patterns": list(document.patterns)}
            if document
            else None
        ),
        "document_digest": document_digest,
    }
    encoded = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()


def local_document_files(project_root: Path, document: DocumentRef) -> list[Path]:
    """The regular files a local document reference selects, sorted; empty when the directory is missing.

    As git lists them: symbolic links, special files, nested repositories (submodules) and `.git` are left
    out, and no link is followed, so the selection (and the leaf hash) never reaches outside the directory.
    """
    base = project_root / document.repo
    if base.is_symlink() or not base.is_dir():
        return []
    found: list[Path] = []
    for current, dirnames, filenames in os.walk(base, followlinks=False):
        directory = Path(current)
        dirnames[:] = sorted(
            name
            for name in dirnames
            if name != ".git" and not (directory / name).is_symlink() and not (directory / name / ".git").exists()
        )
        for name in filenames:
            path = directory / name
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if not stat.S_ISREG(mode):
                continue
            relative = path.relative_to(base).as_posix()
            if any(matches_document_pattern(relative, pattern) for pattern in document.patterns):
                found.append(path)
    return sorted(found)


def local_document_digest(project_root: Path, document: DocumentRef) -> str:
    """Digest of the selected files' relative paths and bytes (unreadable files are left out)."""
    from labtax.taxonomy.files import NotRegular, read_regular_file

    base = project_root / document.repo
    contents = []
    for file in local_document_files(project_root, document):
        try:
            contents.append((file.relative_to(base).as_posix(), read_regular_file(file, MAX_DOCUMENT_BYTES)))
        except NotRegular:
            continue
    return document_digest(contents)


def document_digest(files: Iterable[tuple[str, bytes]]) -> str:
    """Digest of documents given as (relative POSIX path, bytes) pairs: from a directory, or from git
    blobs at an old commit (`labtax diff`), the same files give the same digest.

    Files are ordered as pathlib sorts paths (component by component), as `local_document_files` does.
    """
    digest = hashlib.sha256()
    for name, data in sorted(files, key=lambda item: tuple(item[0].split("/"))):
        digest.update(name.encode("utf-8", "surrogateescape") + b"\0")
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def matches_document_pattern(name: str, pattern: str) -> bool:
    """`Path.glob` semantics on a listed relative name: `*` stays in one directory, `**` spans any number."""
    return _match_parts(name.split("/"), [part for part in pattern.split("/") if part not in ("", ".")])


def _match_parts(names: list[str], patterns: list[str]) -> bool:
    if not patterns:
        return not names
    if patterns[0] == "**":
        return any(_match_parts(names[i:], patterns[1:]) for i in range(len(names) + 1))
    return bool(names) and fnmatch.fnmatchcase(names[0], patterns[0]) and _match_parts(names[1:], patterns[1:])


def git_tree_id(directory: Path) -> str:
    """The id git gives `directory` as a tree object (what `git rev-parse HEAD:<dir>` prints).

    Computed from the files alone, so a document directory's pin can be checked against the working tree.
    Symlinks are stored as links (never followed); special files and empty directories vanish, as in git.
    """
    entries: list[tuple[bytes, bytes, bytes]] = []
    for child in directory.iterdir():
        name = child.name.encode("utf-8", "surrogateescape")
        if child.name == ".git":
            continue
        info = child.lstat()
        if stat.S_ISLNK(info.st_mode):
            target = str(Path(child.readlink())).encode("utf-8", "surrogateescape")
            entries.append((b"120000", name, _git_object_id(b"blob", target)))
        elif stat.S_ISDIR(info.st_mode):
            if not any(child.iterdir()):
                continue
            entries.append((b"40000", name, bytes.fromhex(git_tree_id(child))))
        elif stat.S_ISREG(info.st_mode):
            from labtax.taxonomy.files import read_regular_file

            mode = b"100755" if info.st_mode & 0o111 else b"100644"
            entries.append((mode, name, _git_object_id(b"blob", read_regular_file(child, MAX_DOCUMENT_BYTES))))
    # git sorts tree entries by name, with directories compared as if they ended in '/'.
    entries.sort(key=lambda e: e[1] + (b"/" if e[0] == b"40000" else b""))
    body = b"".join(mode + b" " + name + b"\0" + oid for mode, name, oid in entries)
    return _git_object_id(b"tree", body).hex()


def _git_object_id(kind: bytes, body: bytes) -> bytes:
    return hashlib.sha1(kind + b" " + str(len(body)).encode() + b"\0" + body, usedforsecurity=False).digest()
