"""Checks beyond the JSON Schema: contribution limits, duplicates, document pins, attribution.

Each check is a function from a loaded leaf to diagnostics, with a rule id that docs/rules.md
documents. Checks read plain values and tolerate wrong types (the schema already reported those).
Every check is linear in the size of the leaf (duplicates are found with hash maps, never by
comparing pairs), and values from the contribution are quoted through `labtax.output.untrusted`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from labtax.config import Config
from labtax.errors import Diagnostic, Severity
from labtax.output import untrusted
from labtax.taxonomy.files import NotRegular, read_regular_file
from labtax.taxonomy.leaf import (
    ATTRIBUTION_FIELDS,
    ATTRIBUTION_FILE,
    Attribution,
    LeafKind,
    is_local_repo,
    parse_attribution,
)
from labtax.taxonomy.load import YamlDocument, YamlPath, format_yaml_path
from labtax.validate.licenses import allowed_license, is_restrictive

# Every rule id validation can report; docs/rules.md documents each (a test keeps the two equal).
RULE_IDS = frozenset(
    (
        "yaml-syntax yaml-too-complex duplicate-key tab trailing-space final-newline line-endings unknown-key "
        "missing-key wrong-type too-few-items empty-value duplicate-item bad-version deprecated-version schema "
        "file-name leaf-place symlink symlink-outside unreadable file-too-large encoding empty-file not-a-mapping "
        "yaml-tag context-too-long qna-too-long seed-too-long leaf-too-long context-fit duplicate-question "
        "document-repo document-commit document-check document-pattern "
        "attribution-missing attribution-field attribution-license unknown-rule"
    ).split()
)

_FULL_SHA = re.compile(r"^[0-9a-fA-F]{40}$")
_URL = re.compile(r"^(https?|ssh|git|file)://[^\s]+$|^git@[^\s:]+:[^\s]+$")


def document_source(repo: str) -> str:
    """Where a `document.repo` points: "local", a URL scheme (https, ssh, git, file...), or "ssh" for git@host:path."""
    stripped = repo.strip()
    if stripped.startswith("git@"):
        return "ssh"
    scheme, separator, _ = stripped.partition("://")
    return scheme.lower() if separator else "local"


def words(text: object) -> int:
    return len(text.split()) if isinstance(text, str) else 0


class LeafChecker:
    """Runs the rules on one loaded qna.yaml."""

    def __init__(
        self, doc: YamlDocument, file: str, kind: LeafKind, version: int, config: Config, branch: str | None = None
    ) -> None:
        self.doc = doc
        self.file = file
        self.kind = kind
        self.version = version
        self.config = config
        self.branch = branch
        self.content: dict[str, Any] = doc.value

    def at(self, path: YamlPath, rule: str, message: str, severity: Severity = Severity.ERROR) -> Diagnostic:
        position = self.doc.position(path)
        return Diagnostic(self.file, position.line, position.column, rule, message, severity, format_yaml_path(path))

    def run(self) -> Iterator[Diagnostic]:
        yield from self.version_notice()
        yield from self.limits()
        yield from self.duplicate_questions()
        if self.kind is LeafKind.KNOWLEDGE:
            yield from self.document_reference()

    def version_notice(self) -> Iterator[Diagnostic]:
        if self.kind is not LeafKind.KNOWLEDGE and self.version < 3:
            yield self.at(
                ("version",),
                "deprecated-version",
                f"qna.yaml version {self.version} is deprecated; set 'version: 3' at the top "
                "(version 3 needs at least 5 seed examples and a non-empty task_description)",
                Severity.WARNING,
            )

    def _seeds(self) -> list[tuple[int, dict[str, Any]]]:
        seeds = self.content.get("seed_examples")
        if not isinstance(seeds, list):
            return []
        return [(i, s) for i, s in enumerate(seeds) if isinstance(s, dict)]

    def _pairs(self, index: int, seed: dict[str, Any]) -> list[tuple[YamlPath, dict[str, Any]]]:
        if self.kind is LeafKind.KNOWLEDGE:
            pairs = seed.get("questions_and_answers")
            if not isinstance(pairs, list):
                return []
            return [
                (("seed_examples", index, "questions_and_answers", j), p)
                for j, p in enumerate(pairs)
                if isinstance(p, dict)
            ]
        return [(("seed_examples", index), seed)]

    def limits(self) -> Iterator[Diagnostic]:
        limits = self.config.limits(str(self.kind), self.branch)
        where = f"for {self.branch or self.kind} leaves" if self.branch else f"for {self.kind} leaves"
        leaf_total = 0
        for index, seed in self._seeds():
            context_words = words(seed.get("context"))
            if limits.context_words and context_words > limits.context_words:
                yield self.at(
                    ("seed_examples", index, "context"),
                    "context-too-long",
                    f"this context has {context_words} words; the limit {where} is {limits.context_words}: shorten it",
                )
            total = context_words
            for path, pair in self._pairs(index, seed):
                pair_words = words(pair.get("question")) + words(pair.get("answer"))
                total += pair_words
                leaf_total += pair_words
                if limits.qna_words and pair_words > limits.qna_words:
                    yield self.at(
                        path,
                        "qna-too-long",
                        f"this question and answer have {pair_words} words together; the limit {where} is "
                        f"{limits.qna_words}: shorten them",
                    )
            if limits.seed_words and total > limits.seed_words:
                yield self.at(
                    ("seed_examples", index),
                    "seed-too-long",
                    f"seed example {index + 1} has {total} words in all (context, questions and answers); "
                    f"the limit {where} is {limits.seed_words}",
                )
        if limits.leaf_qna_words and leaf_total > limits.leaf_qna_words:
            yield self.at(
                ("seed_examples",),
                "leaf-too-long",
                f"the questions and answers of this leaf have {leaf_total} words together; InstructLab asks for "
                f"at most about {limits.leaf_qna_words} {where}: shorten the answers or split the leaf",
                Severity.WARNING,
            )

    def duplicate_questions(self) -> Iterator[Diagnostic]:
        """The same question over the same context (or over none). The same instruction over different
        passages is how a grounded skill is written ("Summarise the passage." five times), so it is fine."""
        first_seen: dict[tuple[str, str], YamlPath] = {}
        for index, seed in self._seeds():
            context = seed.get("context")
            context_key = " ".join(context.split()) if isinstance(context, str) else ""
            for path, pair in self._pairs(index, seed):
                question = pair.get("question")
                if not isinstance(question, str) or not question.strip():
                    continue
                key = (context_key, " ".join(question.lower().split()))
                if key in first_seen:
                    earlier = self.doc.position((*first_seen[key], "question"))
                    over = " over the same context" if context_key else ""
                    yield self.at(
                        (*path, "question"),
                        "duplicate-question",
                        f"this question repeats the one on line {earlier.line}{over}; ask something different",
                    )
                else:
                    first_seen[key] = path

    def document_reference(self) -> Iterator[Diagnostic]:
        document = self.content.get("document")
        if not isinstance(document, dict):
            return
        repo = document.get("repo")
        if repo is None:
            yield self.at(
                ("document",),
                "document-repo",
                "document.repo is missing; labtax needs the documents pinned: a git URL or a path relative to "
                "the repository root (InstructLab's 'folder' is not reproducible)",
            )
        elif isinstance(repo, str):
            stripped = repo.strip()
            if not stripped or not (_URL.match(stripped) or _is_relative_path(stripped)):
                yield self.at(
                    ("document", "repo"),
                    "document-repo",
                    f"document.repo '{untrusted(repo)}' is neither a git URL (https://...) nor a relative path "
                    "inside the repository",
                )
            elif (problem := source_problem(stripped, self.config)) is not None:
                yield self.at(("document", "repo"), "document-repo", problem)
        patterns = document.get("patterns")
        for index, pattern in enumerate(patterns if isinstance(patterns, list) else []):
            problem = pattern_problem(pattern)
            if problem:
                yield self.at(
                    ("document", "patterns", index), "document-pattern", f"pattern '{untrusted(pattern)}' {problem}"
                )
        commit = document.get("commit")
        if commit is None:
            yield self.at(
                ("document",), "document-commit", "document.commit is missing; pin the documents with a full 40-hex SHA"
            )
        elif isinstance(commit, str) and not _FULL_SHA.match(commit.strip()):
            what = "git tree id of the directory" if isinstance(repo, str) and is_local_repo(repo) else "commit SHA"
            yield self.at(
                ("document", "commit"),
                "document-commit",
                f"document.commit '{untrusted(commit)}' is not a full 40-character {what}; abbreviated or branch names "
                "can move, so pin the full SHA",
            )


def _is_relative_path(repo: str) -> bool:
    path = Path(repo)
    return not path.is_absolute() and ".." not in path.parts and not repo.startswith("~") and "\0" not in repo


def pattern_problem(pattern: object) -> str | None:
    """Why a document pattern cannot be used (None when it can): patterns select files inside the
    documents, so they are relative and never climb out with '..'."""
    if not isinstance(pattern, str) or not pattern.strip():
        return None  # the schema reports wrong types and empty patterns
    if "\0" in pattern:
        return "contains a NUL character"
    if pattern.startswith(("/", "~")) or Path(pattern).is_absolute():
        return "is absolute; write it relative to the documents (for example *.md)"
    if ".." in Path(pattern).parts:
        return "climbs out of the documents with '..'"
    return None


def source_problem(repo: str, config: Config) -> str | None:
    """Why `repo` is not an allowed document source under `[tool.labtax.documents] sources` (None if it is)."""
    source = document_source(repo)
    if source in config.document_sources:
        return None
    allowed = ", ".join(config.document_sources) or "none"
    if source == "file":
        why = "a file:// URL reads this machine's file system, not a published repository"
    elif source == "local":
        why = "documents kept in this repository (a relative path) are not allowed here"
    else:
        why = f"{source}:// URLs are not allowed here"
    return (
        f"document.repo '{untrusted(repo)}': {why}; allowed sources: {allowed} "
        '(set [tool.labtax.documents] sources, e.g. sources = ["local", "https", "file"])'
    )


def document_is_usable(repo: str, patterns: tuple[str, ...], config: Config | None = None) -> bool:
    """Whether the reference is safe to resolve: an allowed URL or a relative path, and usable patterns.
    Resolving anything else could read files outside the repository (or walk the whole disk)."""
    if not (_URL.match(repo) or _is_relative_path(repo)):
        return False
    if config is not None and source_problem(repo, config) is not None:
        return False
    return bool(patterns) and all(pattern.strip() and pattern_problem(pattern) is None for pattern in patterns)


MAX_ATTRIBUTION_BYTES = 64 * 1024


def read_attribution_text(path: Path) -> str | None:
    """The text of an attribution.txt, or None when it is not a regular file, not UTF-8 or implausibly large.
    Never follows a link and never opens a FIFO or device (labtax.taxonomy.files)."""
    try:
        return read_regular_file(path, MAX_ATTRIBUTION_BYTES).decode("utf-8")
    except (NotRegular, UnicodeDecodeError):
        return None


def load_attribution(leaf_dir: Path, display_dir: str, config: Config) -> tuple[Attribution | None, list[Diagnostic]]:
    """`attribution.txt` beside the qna.yaml, read once: the attribution and its problems (every field
    present, an allowed licence). The file is read as a regular file only, never through a link."""
    path = leaf_dir / ATTRIBUTION_FILE
    file = f"{display_dir}/{ATTRIBUTION_FILE}" if display_dir else ATTRIBUTION_FILE

    def problem(message: str, rule: str = "attribution-missing") -> tuple[None, list[Diagnostic]]:
        return None, [Diagnostic(file, 1, 1, rule, message)]

    try:
        data = read_regular_file(path, MAX_ATTRIBUTION_BYTES)
    except NotRegular as exc:
        if exc.kind == "missing":
            return problem(
                f"{ATTRIBUTION_FILE} is missing beside qna.yaml; add one with the fields: "
                f"{', '.join(ATTRIBUTION_FIELDS)}"
            )
        if exc.kind == "too-large":
            return problem(
                f"{ATTRIBUTION_FILE} is larger than {MAX_ATTRIBUTION_BYTES // 1024} KiB; it holds five short lines"
            )
        return problem(f"{ATTRIBUTION_FILE} was not read: {exc.reason}; make it a regular text file", "unreadable")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return problem(f"{ATTRIBUTION_FILE} is not UTF-8 text; save it as UTF-8")
    attribution, lines = parse_attribution(text)
    return attribution, list(_attribution_problems(attribution, lines, file, config))


def _attribution_problems(
    attribution: Attribution, lines: dict[str, int], file: str, config: Config
) -> Iterator[Diagnostic]:
    for name in ATTRIBUTION_FIELDS:
        value = attribution.fields.get(name)
        # InstructLab asks for the revision "where possible": without one the work is still attributed.
        severity = Severity.WARNING if name == "Revision" else Severity.ERROR
        if value is None:
            note = " (where possible: a date, version or commit of the work)" if name == "Revision" else ""
            yield Diagnostic(
                file, 1, 1, "attribution-field", f"'{name}:' line is missing; add it with a value{note}", severity
            )
        elif not value:
            yield Diagnostic(file, lines[name], 1, "attribution-field", f"'{name}' is empty; fill it in", severity)
    license_text = attribution.license
    if not license_text:
        return
    allowed, spdx = allowed_license(license_text, config.licenses)
    if allowed:
        return
    line = lines.get("License of the work", 1)
    shown = untrusted(license_text, 80)
    if spdx is not None and (why := is_restrictive(spdx)):
        message = f"licence '{shown}' ({spdx}) is not allowed: {why}, so the content cannot be used to train a model"
    elif spdx is not None:
        message = (
            f"licence '{shown}' ({spdx}) is not on this repository's allow-list ({', '.join(config.licenses)}); "
            "a maintainer can add it to [tool.labtax] licenses"
        )
    else:
        message = (
            f"licence '{shown}' is not a licence labtax recognises; write its SPDX id "
            f"(allowed here: {', '.join(config.licenses)})"
        )
    yield Diagnostic(file, line, 1, "attribution-license", message)


def unknown_rule_diagnostics(config: Config) -> Iterator[Diagnostic]:
    """A rule named in [tool.labtax.severity] that does not exist: a typo there silently does nothing."""
    unknown = sorted(set(config.severity_overrides) - RULE_IDS)
    if not unknown:
        return
    pyproject = config.project_root / "pyproject.toml"
    try:
        lines = pyproject.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    for rule in unknown:
        pattern = re.compile(rf"^\s*[\"']?{re.escape(rule)}[\"']?\s*=")
        line = next((number for number, text in enumerate(lines, start=1) if pattern.match(text)), 1)
        close = difflib.get_close_matches(rule, sorted(RULE_IDS), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else "; the rules are listed in docs/rules.md"
        yield Diagnostic(
            "pyproject.toml",
            line,
            1,
            "unknown-rule",
            f"[tool.labtax.severity] names rule '{rule}', which does not exist{hint}",
            Severity.WARNING,
        )
