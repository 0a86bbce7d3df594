"""Checks beyond the JSON Schema: contribution limits, duplicates, document pins, attribution.

Each check is a function from a loaded leaf to diagnostics, with a rule id that docs/rules.md
documents. Checks read plain values and tolerate wrong types (the schema already reported those).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from labtax.config import Config
from labtax.errors import Diagnostic, Severity
from labtax.taxonomy.leaf import (
    ATTRIBUTION_FIELDS,
    ATTRIBUTION_FILE,
    LeafKind,
    is_local_repo,
    parse_attribution,
)
from labtax.taxonomy.load import YamlDocument, YamlPath, format_yaml_path

# Every rule id validation can report; docs/rules.md documents each (a test keeps the two equal).
RULE_IDS = frozenset(
    (
        "yaml-syntax yaml-too-complex duplicate-key tab trailing-space final-newline line-endings unknown-key "
        "missing-key wrong-type too-few-items empty-value duplicate-item bad-version deprecated-version schema "
        "file-name leaf-place symlink-outside unreadable file-too-large encoding empty-file not-a-mapping "
        "context-too-long qna-too-long seed-too-long duplicate-question document-repo document-commit "
        "document-check document-pattern attribution-missing attribution-field attribution-license unknown-rule"
    ).split()
)

ALLOWED_LICENSES = ("CC0-1.0", "CDLA-Permissive-2.0", "CC-BY-4.0", "CC-BY-SA-4.0", "Apache-2.0", "MIT")
_FULL_SHA = re.compile(r"^[0-9a-fA-F]{40}$")
_URL = re.compile(r"^(https?|ssh|git|file)://[^\s]+$|^git@[^\s:]+:[^\s]+$")


def words(text: object) -> int:
    return len(text.split()) if isinstance(text, str) else 0


class LeafChecker:
    """Runs the rules on one loaded qna.yaml."""

    def __init__(self, doc: YamlDocument, file: str, kind: LeafKind, version: int, config: Config) -> None:
        self.doc = doc
        self.file = file
        self.kind = kind
        self.version = version
        self.config = config
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
        limits = self.config.limits
        for index, seed in self._seeds():
            context_words = words(seed.get("context"))
            if context_words > limits.context_words:
                yield self.at(
                    ("seed_examples", index, "context"),
                    "context-too-long",
                    f"this context has {context_words} words; the limit is {limits.context_words}: shorten it",
                )
            total = context_words
            for path, pair in self._pairs(index, seed):
                pair_words = words(pair.get("question")) + words(pair.get("answer"))
                total += pair_words
                if pair_words > limits.qna_words:
                    yield self.at(
                        path,
                        "qna-too-long",
                        f"this question and answer have {pair_words} words together; the limit is "
                        f"{limits.qna_words}: shorten them",
                    )
            if total > limits.seed_words:
                yield self.at(
                    ("seed_examples", index),
                    "seed-too-long",
                    f"seed example {index + 1} has {total} words in all (context, questions and answers); "
                    f"the limit is {limits.seed_words}",
                )

    def duplicate_questions(self) -> Iterator[Diagnostic]:
        first_seen: dict[str, YamlPath] = {}
        for index, seed in self._seeds():
            for path, pair in self._pairs(index, seed):
                question = pair.get("question")
                if not isinstance(question, str) or not question.strip():
                    continue
                key = " ".join(question.lower().split())
                if key in first_seen:
                    earlier = self.doc.position((*first_seen[key], "question"))
                    yield self.at(
                        (*path, "question"),
                        "duplicate-question",
                        f"this question repeats the one on line {earlier.line}; ask something different",
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
                    f"document.repo '{repo}' is neither a git URL (https://...) nor a relative path inside "
                    "the repository",
                )
        patterns = document.get("patterns")
        for index, pattern in enumerate(patterns if isinstance(patterns, list) else []):
            problem = pattern_problem(pattern)
            if problem:
                yield self.at(("document", "patterns", index), "document-pattern", f"pattern '{pattern}' {problem}")
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
                f"document.commit '{commit}' is not a full 40-character {what}; abbreviated or branch names "
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


def document_is_usable(repo: str, patterns: tuple[str, ...]) -> bool:
    """Whether the reference is safe to resolve: a URL or a relative path, and usable patterns.
    Resolving anything else could read files outside the repository (or walk the whole disk)."""
    if not (_URL.match(repo) or _is_relative_path(repo)):
        return False
    return bool(patterns) and all(pattern.strip() and pattern_problem(pattern) is None for pattern in patterns)


MAX_ATTRIBUTION_BYTES = 64 * 1024


def read_attribution_text(path: Path) -> str | None:
    """The text of an attribution.txt, or None when it is unreadable, not UTF-8 or implausibly large."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_ATTRIBUTION_BYTES + 1)
        if len(data) > MAX_ATTRIBUTION_BYTES:
            return None
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def check_attribution(leaf_dir: Path, display_dir: str) -> Iterator[Diagnostic]:
    """`attribution.txt` beside the qna.yaml, with every field and an allowed licence."""
    path = leaf_dir / ATTRIBUTION_FILE
    file = f"{display_dir}/{ATTRIBUTION_FILE}" if display_dir else ATTRIBUTION_FILE
    if not path.is_file():
        yield Diagnostic(
            file,
            1,
            1,
            "attribution-missing",
            f"{ATTRIBUTION_FILE} is missing beside qna.yaml; add one with the fields: {', '.join(ATTRIBUTION_FIELDS)}",
        )
        return
    text = read_attribution_text(path)
    if text is None:
        yield Diagnostic(
            file,
            1,
            1,
            "attribution-missing",
            f"{ATTRIBUTION_FILE} cannot be read as UTF-8 text of at most {MAX_ATTRIBUTION_BYTES // 1024} KiB; "
            "it holds five short lines",
        )
        return
    attribution, lines = parse_attribution(text)
    for name in ATTRIBUTION_FIELDS:
        value = attribution.fields.get(name)
        if value is None:
            yield Diagnostic(file, 1, 1, "attribution-field", f"'{name}:' line is missing; add it with a value")
        elif not value:
            yield Diagnostic(file, lines[name], 1, "attribution-field", f"'{name}' is empty; fill it in")
    license_id = attribution.license
    if license_id and license_id not in ALLOWED_LICENSES:
        close = [allowed for allowed in ALLOWED_LICENSES if allowed.lower() == license_id.lower()]
        hint = f"; write it as '{close[0]}'" if close else f"; allowed: {', '.join(ALLOWED_LICENSES)}"
        line = lines.get("License of the work", 1)
        yield Diagnostic(file, line, 1, "attribution-license", f"licence '{license_id}' is not on the allow-list{hint}")


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
