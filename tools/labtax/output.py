"""Rendering diagnostics for people (text), for GitHub Actions (annotations) and for programs (JSON).

Everything in a diagnostic can come from a contribution: a file name may hold a newline or an escape
sequence, a value quoted in a message may hold ANSI codes that recolour, hide or rewrite a terminal's
screen (or a CI log, which renders them). `neutralise` makes such text inert: control characters
(C0, DEL, C1) and the Unicode line and bidi-control characters become visible `\\xNN`/`\\uNNNN`
escapes, so one diagnostic is always one line that shows what the file really holds. Messages quote
untrusted values through `untrusted`, which also shortens them; URLs pass through
`redact_credentials`, so a `https://user:token@host/...` never reaches the output.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable

from labtax.errors import Diagnostic

# C0 controls (newline and tab included: one diagnostic is one line), DEL, C1 controls, line/paragraph
# separators, and the bidi controls that can make text display in another order than it reads.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CREDENTIALS = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s?#]+)@")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def neutralise(text: str) -> str:
    """`text` with every control character written as a visible escape (and unpaired surrogates replaced)."""
    if _UNSAFE.search(text):
        text = _UNSAFE.sub(_escape, text)
    return text.encode("utf-8", "replace").decode("utf-8") if _has_surrogates(text) else text


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def redact_credentials(text: str) -> str:
    """`text` with the user:password part of every URL in it replaced by `***`."""
    return _CREDENTIALS.sub(lambda m: f"{m.group('scheme')}***@", text) if "@" in text else text


def untrusted(value: object, limit: int = 120) -> str:
    """A value from a contribution as a message quotes it: credentials redacted, controls escaped, shortened."""
    text = neutralise(redact_credentials(str(value)))
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Format(enum.StrEnum):
    TEXT = "text"
    GITHUB = "github"
    JSON = "json"


def format_text(diagnostic: Diagnostic) -> str:
    where = f"{neutralise(diagnostic.file)}:{diagnostic.line}:{diagnostic.column}"
    message = neutralise(redact_credentials(diagnostic.message))
    return f"{where}: {diagnostic.severity} [{neutralise(diagnostic.rule)}] {message}"


def _escape_data(value: str) -> str:
    # %, CR and LF are the workflow-command escapes GitHub decodes; other controls are made inert first.
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return neutralise(redact_credentials(value))


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def format_github(diagnostic: Diagnostic) -> str:
    """A workflow command: GitHub shows it as an annotation on the pull request's diff."""
    command = {"error": "error", "warning": "warning"}.get(str(diagnostic.severity), "notice")
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
        # JSON escapes control characters itself; credentials are still taken out.
        records = [{**d.as_json(), "message": redact_credentials(d.message)} for d in items]
        return json.dumps(records, indent=2, ensure_ascii=False)
    formatter = format_github if output_format is Format.GITHUB else format_text
    return "\n".join(formatter(d) for d in items)
