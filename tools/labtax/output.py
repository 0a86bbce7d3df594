"""Rendering diagnostics for people (text), for GitHub Actions (annotations) and for programs (JSON)."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable

from labtax.errors import Diagnostic


class Format(enum.StrEnum):
    TEXT = "text"
    GITHUB = "github"
    JSON = "json"


def format_text(diagnostic: Diagnostic) -> str:
    where = f"{diagnostic.file}:{diagnostic.line}:{diagnostic.column}"
    return f"{where}: {diagnostic.severity} [{diagnostic.rule}] {diagnostic.message}"


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def format_github(diagnostic: Diagnostic) -> str:
    """A workflow command: GitHub shows it as an annotation on the pull request's diff."""
    command = "error" if diagnostic.severity == "error" else "warning"
    properties = ",".join(
        [
            f"file={_escape_property(diagnostic.file)}",
            f"line={diagnostic.line}",
            f"col={diagnostic.column}",
            f"title={_escape_property(diagnostic.rule)}",
        ]
    )
    path = f" [{diagnostic.yaml_path}]" if diagnostic.yaml_path else ""
    return f"::{command} {properties}::{_escape_data(diagnostic.message + path)}"


def render(diagnostics: Iterable[Diagnostic], output_format: Format) -> str:
    items = list(diagnostics)
    if output_format is Format.JSON:
        return json.dumps([d.as_json() for d in items], indent=2, ensure_ascii=False)
    formatter = format_github if output_format is Format.GITHUB else format_text
    return "\n".join(formatter(d) for d in items)
