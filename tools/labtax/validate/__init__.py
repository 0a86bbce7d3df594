"""Validation of taxonomy leaves: the one function that `labtax validate`, `labtax check`, the
pre-commit hook and CI all call.

`validate_paths` finds leaves, checks every file (a broken file never stops the others) and returns
the diagnostics, already filtered and re-levelled by the configured severities, plus the leaves that
could be built.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from labtax.config import Config
from labtax.errors import Diagnostic, Severity
from labtax.taxonomy.discover import (
    discover,
    display_path,
    find_branch,
    is_outside_project,
    leaf_path,
    taxonomy_relative,
)
from labtax.taxonomy.files import NotRegular, read_regular_file
from labtax.taxonomy.leaf import (
    Leaf,
    document_ref,
    leaf_from_content,
    leaf_kind,
    local_document_digest,
)
from labtax.taxonomy.load import YamlPath, format_yaml_path, load_yaml_text, whitespace_diagnostics
from labtax.validate.rules import (
    LeafChecker,
    document_is_usable,
    load_attribution,
    unknown_rule_diagnostics,
)
from labtax.validate.schema import LATEST_VERSION, SUPPORTED_VERSIONS, validate_schema


@dataclass
class ValidationResult:
    diagnostics: list[Diagnostic] = field(default_factory=list)
    leaves: list[Leaf] = field(default_factory=list)
    files_checked: int = 0
    # Leaves (Leaf.path) whose knowledge documents were not resolved by this run: remote documents without
    # --check-documents. A report says "not checked" for them, never a silent pass.
    documents_not_checked: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(1 for d in self.diagnostics if d.severity is Severity.ERROR)

    @property
    def warnings(self) -> int:
        return sum(1 for d in self.diagnostics if d.severity is Severity.WARNING)


def validate_paths(
    config: Config,
    paths: Iterable[Path] | None = None,
    *,
    check_documents: bool = False,
    local_documents: bool = True,
    teacher_context: int | None = None,
) -> ValidationResult:
    """Validate the leaves under `paths` (default: the whole taxonomy).

    Documents kept in this repository are checked against their pin by default (offline and cheap, from
    git objects); `check_documents` also fetches remote ones. `teacher_context` (tokens) adds the check
    that every seed and document chunk fits the teacher's context with its prompt (rule `context-fit`).
    """
    found = discover(config, paths)
    result = ValidationResult(diagnostics=[*unknown_rule_diagnostics(config), *found.diagnostics])
    result.files_checked = found.refused_leaves  # counted as checked, and as files that could not be read
    for leaf_file in found.leaf_files:
        leaf, diagnostics, checked = _validate_leaf(
            config,
            leaf_file,
            remote_documents=check_documents,
            local_documents=local_documents,
            teacher_context=teacher_context,
        )
        result.files_checked += 1
        result.diagnostics.extend(diagnostics)
        if leaf is not None:
            result.leaves.append(leaf)
            if leaf.document is not None and not checked:
                result.documents_not_checked.append(leaf.path)
    result.diagnostics = apply_severities(config, result.diagnostics)
    result.diagnostics.sort(key=lambda d: (d.file, d.line, d.column, d.rule))
    return result


def apply_severities(config: Config, diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    out = []
    for diagnostic in diagnostics:
        severity = config.severity(diagnostic.rule, diagnostic.severity)
        if severity is None:
            continue
        if severity is not diagnostic.severity:
            diagnostic = Diagnostic(
                diagnostic.file,
                diagnostic.line,
                diagnostic.column,
                diagnostic.rule,
                diagnostic.message,
                severity,
                diagnostic.yaml_path,
            )
        out.append(diagnostic)
    return out


def read_leaf_text(config: Config, path: Path, file: str) -> tuple[str | None, list[Diagnostic]]:
    """The file's text, or a diagnostic saying why it cannot be read (never an exception).

    The file is read as a regular file only: a symbolic link is reported, never followed, and a FIFO or a
    device is refused without being opened (labtax.taxonomy.files)."""

    def problem(rule: str, message: str, line: int = 1, column: int = 1) -> tuple[None, list[Diagnostic]]:
        return None, [Diagnostic(file, line, column, rule, message)]

    try:
        data = read_regular_file(path, config.max_file_bytes)
    except NotRegular as exc:
        if exc.kind == "symlink":
            return problem(*_symlink_problem(config, path))
        if exc.kind == "directory":
            return problem("file-name", "'qna.yaml' is a directory; a leaf's qna.yaml must be a file")
        if exc.kind == "too-large":
            return problem(
                "file-too-large",
                f"the file is {exc.size / 1_000_000:.1f} MB; the limit is {config.max_file_bytes / 1_000_000:.1f} MB "
                "(a leaf holds a handful of examples)",
            )
        return problem(
            "unreadable", f"{exc.reason}; replace it by a regular file" if exc.kind == "special" else exc.reason
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return problem("encoding", "the file is UTF-16; save it as UTF-8")
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = len(before) - (before.rfind(b"\n") + 1) + 1
        return problem(
            "encoding",
            f"byte 0x{data[exc.start]:02x} is not valid UTF-8; save the file as UTF-8",
            line,
            column,
        )
    return text.removeprefix("\ufeff"), []


def _symlink_problem(config: Config, path: Path) -> tuple[str, str]:
    """The rule and message for a qna.yaml that is a symbolic link (which is never followed)."""
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return "unreadable", "this symlink points to nothing (or to itself); fix or remove it"
    try:
        target.relative_to(config.project_root)
    except ValueError:
        return "symlink-outside", "this symlink points outside the repository; copy the file in instead"
    return "symlink", "this qna.yaml is a symbolic link; labtax never follows links in the taxonomy: put the file here"


def validate_leaf_file(
    config: Config, path: Path, *, check_documents: bool = False
) -> tuple[Leaf | None, list[Diagnostic]]:
    """Validate one qna.yaml (and its attribution.txt). Returns the Leaf when its content is usable."""
    leaf, diagnostics, _ = _validate_leaf(config, path, remote_documents=check_documents)
    return leaf, diagnostics


def _validate_leaf(
    config: Config,
    path: Path,
    *,
    remote_documents: bool = False,
    local_documents: bool = True,
    teacher_context: int | None = None,
) -> tuple[Leaf | None, list[Diagnostic], bool]:
    """The leaf, its diagnostics, and whether its documents were resolved."""
    file = display_path(path, config)
    text, diagnostics = read_leaf_text(config, path, file)
    if text is None:
        return None, diagnostics, False
    branch = find_branch(path, config)
    if taxonomy_relative(path, config) is None and not is_outside_project(path, config):
        diagnostics.append(
            Diagnostic(
                file,
                1,
                1,
                "leaf-place",
                "this qna.yaml is outside the taxonomy root "
                f"({display_path(config.taxonomy_root, config) or '.'}/), so labtax check and generation never "
                "read it; "
                "move it under the taxonomy root (or set [tool.labtax] taxonomy)",
            )
        )
    elif branch is None:
        diagnostics.append(
            Diagnostic(
                file,
                1,
                1,
                "leaf-place",
                "this qna.yaml is not under a known branch; move it under knowledge/, foundational_skills/ "
                f"or compositional_skills/ of the taxonomy root ({display_path(config.taxonomy_root, config) or '.'})",
            )
        )
    diagnostics.extend(whitespace_diagnostics(text, file))
    doc, load_diagnostics = load_yaml_text(text, file)
    diagnostics.extend(load_diagnostics)
    if doc is None:
        return None, diagnostics, False
    if doc.value is None:
        diagnostics.append(
            Diagnostic(
                file, 1, 1, "empty-file", "the file is empty; a leaf needs a version, a description and seed examples"
            )
        )
        return None, diagnostics, False
    if not isinstance(doc.value, dict):
        diagnostics.append(
            Diagnostic(
                file,
                1,
                1,
                "not-a-mapping",
                f"the top level must be a mapping of keys (version:, seed_examples: ...), but it is "
                f"{'a list' if isinstance(doc.value, list) else 'a single value'}",
            )
        )
        return None, diagnostics, False
    content = doc.value
    version = content.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
        position = doc.position(("version",))
        diagnostics.append(
            Diagnostic(
                file, position.line, position.column, "bad-version", _bad_version_message(version), yaml_path=".version"
            )
        )
        return None, diagnostics, False
    diagnostics.extend(validate_schema(doc, file, branch, version))
    kind = leaf_kind(branch, content)
    diagnostics.extend(LeafChecker(doc, file, kind, version, config, branch).run())
    leaf_dir = path.parent
    display_dir = file.rsplit("/", 1)[0] if "/" in file else ""
    attribution, attribution_diagnostics = load_attribution(leaf_dir, display_dir, config)
    diagnostics.extend(attribution_diagnostics)
    document = document_ref(content.get("document")) if kind == "knowledge" else None
    # An unsafe reference (absolute path, '..', absolute pattern, a source the configuration does not
    # allow) is reported by the rules and never resolved.
    resolvable = document is not None and document_is_usable(document.repo, document.patterns, config)
    texts: list[tuple[str, str]] | None = None
    checked = False
    if document is not None and resolvable and (local_documents if document.is_local else remote_documents):
        from labtax.documents import inspect_documents

        texts, problems = inspect_documents(config.project_root, document, timeout_s=config.fetch_timeout_s)
        checked = True
        for message in problems:
            where = _document_problem_path(content, message)
            position = doc.position(where)
            diagnostics.append(
                Diagnostic(
                    file, position.line, position.column, "document-check", message, yaml_path=format_yaml_path(where)
                )
            )
    digest = (
        local_document_digest(config.project_root, document)
        if document is not None and document.is_local and resolvable
        else None
    )
    leaf = leaf_from_content(leaf_path(path, config), branch, content, attribution, digest)
    if teacher_context is not None:
        from labtax.validate.context_fit import context_fit_problems

        for where, message in context_fit_problems(leaf, teacher_context, texts):
            position = doc.position(where)
            diagnostics.append(
                Diagnostic(
                    file, position.line, position.column, "context-fit", message, yaml_path=format_yaml_path(where)
                )
            )
    return leaf, diagnostics, checked


def _document_problem_path(content: dict[str, object], message: str) -> YamlPath:
    """Point a document problem at what it is about: the pattern it names, the directory (repo), else the
    pin (commit)."""
    if message.startswith(("document directory '", "document repo '")):
        return ("document", "repo")
    document = content.get("document")
    patterns = document.get("patterns") if isinstance(document, dict) else None
    if isinstance(patterns, list):
        for index, pattern in enumerate(patterns):
            if isinstance(pattern, str) and message.startswith(f"pattern '{pattern}' "):
                return ("document", "patterns", index)
    return ("document", "commit")


def _bad_version_message(version: object) -> str:
    supported = ", ".join(map(str, SUPPORTED_VERSIONS))
    if isinstance(version, str) and version.strip().isdigit():
        return f"version must be a number, not text: write 'version: {version.strip()}' without quotes"
    shown = "empty" if version is None else repr(version) if isinstance(version, str) else str(version).lower()
    return f"version {shown} is not a known qna.yaml version; use {LATEST_VERSION} (supported: {supported})"


def load_leaves(config: Config, paths: Iterable[Path] | None = None) -> ValidationResult:
    """All leaves under `paths` with their diagnostics; later stages call this, then decide what to do."""
    return validate_paths(config, paths)


@dataclass(frozen=True)
class UsableLeaves:
    """The leaves a stage may use (no error in any of their files) and the others, with their errors."""

    leaves: list[Leaf]
    invalid: dict[str, list[Diagnostic]]  # Leaf.path -> its error diagnostics


def usable_leaves(config: Config, result: ValidationResult) -> UsableLeaves:
    """Split validated leaves into usable and invalid ones. Generation and release plan only the usable
    ones: an error in one leaf never stops the others (issue 12), and an invalid leaf is listed, not lost."""
    errors_by_dir: dict[str, list[Diagnostic]] = {}
    for diagnostic in result.diagnostics:
        if diagnostic.severity is Severity.ERROR:
            errors_by_dir.setdefault(posixpath.dirname(diagnostic.file), []).append(diagnostic)
    usable, invalid = [], {}
    for leaf in result.leaves:
        directory = posixpath.dirname(display_path(config.taxonomy_root / leaf.path, config))
        if directory in errors_by_dir:
            invalid[leaf.path] = errors_by_dir[directory]
        else:
            usable.append(leaf)
    return UsableLeaves(usable, invalid)


__all__ = [
    "UsableLeaves",
    "ValidationResult",
    "apply_severities",
    "load_leaves",
    "usable_leaves",
    "validate_leaf_file",
    "validate_paths",
]
