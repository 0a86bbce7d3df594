"""What every record file shares: a versioned format tag, one error type, and typed decoding.

A record file carries its format as `"<name>/<version>"` (a JSON file in its top-level `format` key, a
JSONL sample in `metadata.format`). A reader accepts its own version, and refuses

- a newer version, with a message that names the file and says to upgrade labtax (the file was
  written by a newer labtax; guessing at it would lose or misread data);
- an older or foreign one, with a message that says which command rewrites it.

Records are plain frozen dataclasses, importable with nothing but the standard library. Readers
validate a parsed JSON value against the dataclass with pydantic (imported when a file is read), so a
wrong type anywhere is reported with its field path instead of surfacing later as a KeyError.
Writers turn a record into plain JSON values with `to_json`; files are written atomically
(`labtax.fileio`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from labtax.errors import LabtaxError

T = TypeVar("T")

UPGRADE = "upgrade labtax (pip install --upgrade labtax) to read it"
_TAG = re.compile(r"^(?P<name>[a-z][a-z0-9-]*)/(?P<version>[1-9][0-9]*)$")


class RecordError(LabtaxError):
    """A record file that cannot be used as it is: the message names the file and what to do."""


class NewerFormatError(RecordError):
    """A record file written by a newer labtax: never skipped or guessed at, always an error."""


@dataclass(frozen=True)
class RecordFormat:
    """One file format: `name/version` as written in the file, and how to rewrite an old or damaged file."""

    name: str  # e.g. "labtax-generation"
    version: int  # the version this labtax writes and reads
    what: str  # what the file is, for messages: "generation index (generation.json)"
    remedy: str  # how a user gets a current file: "re-run `labtax generate`"

    @property
    def tag(self) -> str:
        return f"{self.name}/{self.version}"

    def check(self, found: object, where: str) -> None:
        """Accept this version; refuse a newer one (upgrade labtax) and an older or foreign one (re-run)."""
        match = _TAG.match(found) if isinstance(found, str) else None
        if match is None or match.group("name") != self.name:
            shown = f"format {found!r}" if found is not None else "no format tag"
            raise RecordError(f"{where}: not a labtax {self.what} ({shown}, expected {self.tag}); {self.remedy}")
        version = int(match.group("version"))
        if version > self.version:
            raise NewerFormatError(
                f"{where} was written by a newer labtax in format {found}; this labtax reads {self.tag}: {UPGRADE}"
            )
        if version < self.version:
            raise RecordError(
                f"{where} is in the older format {found}; this labtax reads {self.tag}: {self.remedy} to rewrite it"
            )


def read_json_file(path: Path, fmt: RecordFormat) -> dict[str, Any]:
    """The JSON object in `path`, its format checked (and removed); a RecordError names the file otherwise."""
    try:
        raw = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise RecordError(f"{path} not found; it is the {fmt.what}: {fmt.remedy}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: not a readable {fmt.what} ({exc}); {fmt.remedy}") from None
    if not isinstance(raw, dict):
        raise RecordError(f"{path}: not a labtax {fmt.what} (not a JSON object); {fmt.remedy}")
    fmt.check(raw.pop("format", None), str(path))
    return raw


def decode(record_type: type[T], raw: object, where: str, remedy: str) -> T:
    """`raw` (parsed JSON) as a `record_type`; a wrong or missing field is a RecordError naming its path."""
    from pydantic import ValidationError

    try:
        adapter: Any = _adapter(cast(Hashable, record_type))
        return cast(T, adapter.validate_python(raw))
    except ValidationError as exc:
        error = exc.errors()[0]
        location = ".".join(str(part) for part in error["loc"]) or "(top)"
        raise RecordError(f"{where}: {location}: {error['msg']}; {remedy}") from None


@functools.cache
def _adapter(record_type: Hashable) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(cast(Any, record_type))


def to_json(record: Any, *, drop_none: bool = False) -> dict[str, Any]:
    """A record as plain JSON values, fields in declaration order; `drop_none` leaves out None fields."""
    if drop_none:
        return dataclasses.asdict(record, dict_factory=lambda items: {k: v for k, v in items if v is not None})
    return dataclasses.asdict(record)


def dumps_json(value: Any) -> str:
    """How record files are written: 2-space indent, UTF-8 kept readable, a final newline."""
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"
