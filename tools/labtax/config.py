"""Project configuration: where the taxonomy lives and how severe each rule is.

Read from `[tool.labtax]` in the `pyproject.toml` of the project root: the nearest directory, from
the starting point upwards, that holds a `pyproject.toml` with a `[tool.labtax]` table, else the git
work-tree top (a directory with `.git`), else the starting directory. Everything is optional.

    [tool.labtax]
    taxonomy = "taxonomy"          # "." for an InstructLab-style repository (branches at the top)
    max_file_bytes = 1048576

    [tool.labtax.severity]
    trailing-space = "off"         # "error" | "warning" | "off"
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
    """InstructLab's contribution limits, in words (whitespace-separated tokens)."""

    context_words: int = 500
    qna_words: int = 250
    seed_words: int = 750


@dataclass(frozen=True)
class Config:
    project_root: Path
    taxonomy_root: Path
    severity_overrides: dict[str, str] = field(default_factory=dict)
    max_file_bytes: int = 1024 * 1024
    limits: Limits = Limits()

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
    limits_table = table.get("limits", {})
    limits = Limits(**{k: int(v) for k, v in limits_table.items() if k in Limits.__dataclass_fields__})
    return Config(
        project_root=project_root,
        taxonomy_root=taxonomy_root,
        severity_overrides=overrides,
        max_file_bytes=max_bytes,
        limits=limits,
    )


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
