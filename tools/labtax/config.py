"""Project configuration: where the taxonomy lives, how severe each rule is, and the contribution policy.

Read from `[tool.labtax]` in the `pyproject.toml` of the project root: the nearest directory, from
the starting point upwards, that holds a `pyproject.toml` with a `[tool.labtax]` table, else the git
work-tree top (a directory with `.git`), else the starting directory. Everything is optional; the
defaults and where they come from are documented in docs/rules.md.

    [tool.labtax]
    taxonomy = "taxonomy"          # "." for an InstructLab-style repository (branches at the top)
    max_file_bytes = 1048576
    licenses = ["CC0-1.0", "CC-BY-4.0", ...]   # SPDX ids allowed in attribution.txt

    [tool.labtax.severity]
    trailing-space = "off"         # "error" | "warning" | "off"

    [tool.labtax.limits]           # words; a table per kind or branch; 0 turns a limit off
    knowledge = { context_words = 500, qna_words = 250, seed_words = 750 }
    compositional_skills = { leaf_qna_words = 2300 }

    [tool.labtax.documents]
    sources = ["local", "https", "ssh", "git"]   # add "file" to allow repo: file:///...
    fetch_timeout_s = 120
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labtax.errors import Severity, UsageError

SEVERITY_OFF = "off"


@dataclass(frozen=True)
class Limits:
    """Contribution limits of one kind of leaf, in words (whitespace-separated tokens); 0 means no limit."""

    context_words: int = 0  # one seed's context
    qna_words: int = 0  # one question with its answer
    seed_words: int = 0  # one seed example: context, questions and answers
    leaf_qna_words: int = 0  # all questions and answers of the leaf together


# InstructLab's own guidance, per kind (docs/rules.md cites the pages):
# - knowledge: context < 500, each question and answer < 250, a seed example < 750 (docs.instructlab.ai,
#   "The knowledge files"); labtax counts words, as InstructLab's contributors do.
# - skills: "a maximum of around 2300 words" in the question/answer pairs of a qna.yaml (docs.instructlab.ai,
#   "Skills contribution details"). Grounded contexts are whole passages (a summarisation seed holds an
#   article of a thousand words), so no per-context limit.
DEFAULT_LIMITS: dict[str, Limits] = {
    "knowledge": Limits(context_words=500, qna_words=250, seed_words=750),
    "freeform_skill": Limits(leaf_qna_words=2300),
    "grounded_skill": Limits(leaf_qna_words=2300),
}
LIMIT_KINDS = ("knowledge", "freeform_skill", "grounded_skill")
LIMIT_BRANCHES = ("knowledge", "foundational_skills", "compositional_skills")

# InstructLab's CONTRIBUTING ("Legal"): third-party content comes from the public domain or under an open
# licence that does not restrict commercial use or derivative works, "including" the first six below.
# labtax adds the public-domain dedications and the 3.0 versions of the two CC licences, which older
# Wikipedia-sourced leaves carry. Non-commercial (NC) and no-derivatives (ND) licences stay out.
DEFAULT_LICENSES = (
    "CC0-1.0",
    "CDLA-Permissive-2.0",
    "CC-BY-4.0",
    "CC-BY-SA-4.0",
    "Apache-2.0",
    "MIT",
    "CC-BY-3.0",
    "CC-BY-SA-3.0",
    "CC-PDDC",
    "PDDL-1.0",
    "LicenseRef-Public-Domain",
)

# Where knowledge documents may come from: "local" (a directory of this repository) and URL schemes.
DOCUMENT_SOURCES = ("local", "https", "http", "ssh", "git", "file")
DEFAULT_DOCUMENT_SOURCES = ("local", "https", "ssh", "git")
DEFAULT_FETCH_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Config:
    project_root: Path
    taxonomy_root: Path
    severity_overrides: dict[str, str] = field(default_factory=dict)
    max_file_bytes: int = 1024 * 1024
    limits_by_kind: dict[str, Limits] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    limits_by_branch: dict[str, Limits] = field(default_factory=dict)
    licenses: tuple[str, ...] = DEFAULT_LICENSES
    document_sources: tuple[str, ...] = DEFAULT_DOCUMENT_SOURCES
    fetch_timeout_s: float = DEFAULT_FETCH_TIMEOUT_S

    def limits(self, kind: str, branch: str | None) -> Limits:
        """The limits for a leaf: its branch's table when configured, else its kind's."""
        if branch is not None and branch in self.limits_by_branch:
            return self.limits_by_branch[branch]
        return self.limits_by_kind.get(kind, Limits())

    def severity(self, rule: str, default: Severity) -> Severity | None:
        """The configured severity of `rule`, or None when the rule is turned off."""
        chosen = self.severity_overrides.get(rule)
        if chosen is None:
            return default
        if chosen == SEVERITY_OFF:
            return None
        return Severity(chosen)


def find_project_root(start: Path) -> Path:
    start = start.resolve()
    first_git: Path | None = None
    for directory in (start, *start.parents):
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file() and "[tool.labtax" in _read_text(pyproject):
            return directory
        if first_git is None and (directory / ".git").exists():
            first_git = directory
    return first_git or start


def load_config(start: Path | None = None, taxonomy: Path | str | None = None) -> Config:
    """Load the configuration for the project that contains `start` (default: the current directory).

    `taxonomy` (the `--root` option) overrides the configured taxonomy root; a relative value is
    taken relative to the current directory, as a user typing it expects.
    """
    project_root = find_project_root(start or Path.cwd())
    table = _labtax_table(project_root / "pyproject.toml")
    overrides = _severity_table(table.get("severity", {}), project_root / "pyproject.toml")
    if taxonomy is not None:
        taxonomy_root = Path(taxonomy).resolve()
    else:
        configured = table.get("taxonomy", "taxonomy")
        if not isinstance(configured, str):
            raise UsageError(f"{project_root / 'pyproject.toml'}: [tool.labtax] taxonomy must be a string path")
        taxonomy_root = (project_root / configured).resolve()
    max_bytes = table.get("max_file_bytes", 1024 * 1024)
    if not isinstance(max_bytes, int) or max_bytes <= 0:
        raise UsageError(f"{project_root / 'pyproject.toml'}: [tool.labtax] max_file_bytes must be a positive integer")
    pyproject = project_root / "pyproject.toml"
    by_kind, by_branch = _limits_tables(table.get("limits", {}), pyproject)
    documents = _table(table.get("documents", {}), pyproject, "[tool.labtax.documents]")
    return Config(
        project_root=project_root,
        taxonomy_root=taxonomy_root,
        severity_overrides=overrides,
        max_file_bytes=max_bytes,
        limits_by_kind=by_kind,
        limits_by_branch=by_branch,
        licenses=_licenses(table.get("licenses", list(DEFAULT_LICENSES)), pyproject),
        document_sources=_document_sources(documents.get("sources", list(DEFAULT_DOCUMENT_SOURCES)), pyproject),
        fetch_timeout_s=_positive_number(
            documents.get("fetch_timeout_s", DEFAULT_FETCH_TIMEOUT_S),
            pyproject,
            "[tool.labtax.documents] fetch_timeout_s",
        ),
    )


def _table(raw: object, pyproject: Path, name: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise UsageError(f"{pyproject}: {name} must be a table")
    return raw


def _limits(raw: object, pyproject: Path, name: str, base: Limits) -> Limits:
    fields = Limits.__dataclass_fields__
    values = _table(raw, pyproject, name)
    chosen = {}
    for key, value in values.items():
        if key not in fields:
            raise UsageError(f"{pyproject}: {name} has no setting '{key}'; use: {', '.join(fields)}")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise UsageError(f"{pyproject}: {name} {key} must be a whole number of words (0: no limit)")
        chosen[key] = value
    return Limits(**{**{key: getattr(base, key) for key in fields}, **chosen})


def _limits_tables(raw: object, pyproject: Path) -> tuple[dict[str, Limits], dict[str, Limits]]:
    """`[tool.labtax.limits]`: flat keys apply to every kind; a sub-table per kind or branch refines them."""
    table = _table(raw, pyproject, "[tool.labtax.limits]")
    flat = {key: value for key, value in table.items() if not isinstance(value, dict)}
    by_kind = {
        kind: _limits(flat, pyproject, "[tool.labtax.limits]", DEFAULT_LIMITS[kind]) if flat else DEFAULT_LIMITS[kind]
        for kind in LIMIT_KINDS
    }
    by_branch: dict[str, Limits] = {}
    for key, value in table.items():
        if not isinstance(value, dict):
            continue
        name = f"[tool.labtax.limits.{key}]"
        if key in LIMIT_KINDS:
            by_kind[key] = _limits(value, pyproject, name, by_kind[key])
        elif key in LIMIT_BRANCHES:
            # A branch refines the limits of the kind most of its leaves are.
            base = by_kind["knowledge"] if key == "knowledge" else by_kind["freeform_skill"]
            by_branch[key] = _limits(value, pyproject, name, base)
        else:
            raise UsageError(
                f"{pyproject}: {name}: '{key}' is neither a kind ({', '.join(LIMIT_KINDS)}) nor a branch "
                f"({', '.join(LIMIT_BRANCHES)})"
            )
    return by_kind, by_branch


def _licenses(raw: object, pyproject: Path) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(item, str) and item.strip() for item in raw):
        raise UsageError(f'{pyproject}: [tool.labtax] licenses must be a list of SPDX ids, e.g. ["CC-BY-4.0"]')
    return tuple(item.strip() for item in raw)


def _document_sources(raw: object, pyproject: Path) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(item, str) and item in DOCUMENT_SOURCES for item in raw):
        raise UsageError(
            f"{pyproject}: [tool.labtax.documents] sources must be a list of: {', '.join(DOCUMENT_SOURCES)}"
        )
    return tuple(raw)


def _positive_number(raw: object, pyproject: Path, name: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw <= 0:
        raise UsageError(f"{pyproject}: {name} must be a positive number of seconds")
    return float(raw)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _labtax_table(pyproject: Path) -> dict[str, Any]:
    if not pyproject.is_file():
        return {}
    try:
        data = tomllib.loads(_read_text(pyproject))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{pyproject}: not valid TOML ({exc}); fix the file or remove [tool.labtax]") from None
    table = data.get("tool", {}).get("labtax", {})
    if not isinstance(table, dict):
        raise UsageError(f"{pyproject}: [tool.labtax] must be a table")
    return table


def _severity_table(raw: object, pyproject: Path) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise UsageError(f"{pyproject}: [tool.labtax.severity] must be a table of rule = severity")
    allowed = {"error", "warning", SEVERITY_OFF}
    for rule, value in raw.items():
        if value not in allowed:
            raise UsageError(f"{pyproject}: [tool.labtax.severity] {rule} = {value!r}; use one of: error, warning, off")
    return dict(raw)
