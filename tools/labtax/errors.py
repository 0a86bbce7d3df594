"""The two ways labtax reports a problem: a `Diagnostic` about a file, or a `LabtaxError` that stops a command.

A `Diagnostic` is a finding about user content (a qna.yaml, an attribution.txt): validation collects
them and keeps going. A `LabtaxError` is a problem that stops the command (bad option, missing
git base, unreachable teacher); its message tells the user what to do. The CLI catches it once.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"
    # A problem reported for information only: with `labtax validate --base`, one that was already there in
    # files the change does not touch (docs/adopting.md). Never fails a command.
    NOTICE = "notice"


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem in one file, at a 1-based line and column."""

    file: str
    line: int
    column: int
    rule: str
    message: str
    severity: Severity = Severity.ERROR
    yaml_path: str = ""

    def as_json(self) -> dict[str, object]:
        record = asdict(self)
        record["severity"] = str(self.severity)
        return {key: record[key] for key in ("file", "line", "column", "yaml_path", "severity", "rule", "message")}


class LabtaxError(Exception):
    """A problem that stops a command. The message is shown to the user as is: say what to do."""

    exit_code = 2


class UsageError(LabtaxError):
    """Bad command-line input or configuration (exit code 2)."""


def count_errors(diagnostics: list[Diagnostic]) -> int:
    return sum(1 for d in diagnostics if d.severity is Severity.ERROR)
