"""JSON Schema validation of qna.yaml content, with messages written for first-time contributors.

The schemas live in the top-level `schema/` directory (one source); an installed wheel carries them
as `labtax/schema`. jsonschema's own messages ("[...] is too short") are translated here into
sentences that name the field and say what to do.
"""

from __future__ import annotations

import datetime
import difflib
import functools
import json
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from labtax.errors import Diagnostic
from labtax.taxonomy.load import YamlDocument, YamlPath, format_yaml_path

SUPPORTED_VERSIONS = (1, 2, 3)
LATEST_VERSION = 3


def schema_dir() -> Path:
    packaged = resources.files("labtax").joinpath("schema")
    if packaged.is_dir():
        return Path(str(packaged))
    # A source checkout or an editable install: the top-level schema/ beside tools/.
    return Path(__file__).resolve().parents[3] / "schema"


@functools.cache
def load_schema(version: int, name: str) -> dict[str, Any]:
    path = schema_dir() / f"v{version}" / f"{name}.json"
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


def canonical(value: Any) -> Any:
    """A hashable stand-in for a JSON value with JSON Schema's equality: key order does not count,
    1 equals 1.0, and true is not 1. Duplicates are then found with a set, in linear time."""
    if isinstance(value, dict):
        return frozenset((key, canonical(item)) for key, item in value.items())
    if isinstance(value, list):
        return tuple(canonical(item) for item in value)
    if isinstance(value, bool):
        return (bool, value)
    return value


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """jsonschema's `uniqueItems`, in linear time. Its own falls back to comparing every pair of items
    when they are mappings (seed examples are), which made a 1 MiB leaf with one error take minutes."""
    from jsonschema import ValidationError

    if not unique or not validator.is_type(instance, "array"):
        return
    seen: set[Any] = set()
    for item in instance:
        key = canonical(item)
        if key in seen:
            yield ValidationError(f"{len(instance)} items, not all unique")  # _translate names the copy
            return
        seen.add(key)


@functools.cache
def _validator(version: int, name: str) -> Any:
    # Imported here: jsonschema costs ~40 ms to import, and only an invalid leaf needs it.
    from jsonschema import Draft202012Validator, validators

    linear = validators.extend(Draft202012Validator, {"uniqueItems": _unique_items})
    return linear(load_schema(version, name))


@functools.cache
def _fast_check(version: int, name: str) -> Callable[[Any], Any]:
    """A yes/no validator compiled to Python code (fastjsonschema): ~6x faster than jsonschema on a
    valid leaf, and most leaves are valid. jsonschema then explains the rejected ones error by error.

    The code is generated from our own packaged schema in this process, every time (3-9 ms per schema,
    measured), and never cached on disk: a cache of code under ~/.cache is writable by whatever else runs
    as the same user (a pull request's job on a persistent runner), and a hash or HMAC kept beside it
    would be just as writable, so loading it would execute code nobody verified (issue 15)."""
    import fastjsonschema

    # Without $id the generated entry point is named `validate`; $schema would pick a draft by URI.
    schema = {key: value for key, value in load_schema(version, name).items() if key not in ("$schema", "$id")}
    code = compile(fastjsonschema.compile_to_code(schema), f"<labtax schema v{version}/{name}>", "exec")
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # generated just now from the packaged schema
    return namespace["validate"]  # type: ignore[no-any-return]


def is_valid_fast(content: Any, version: int, name: str) -> bool:
    import fastjsonschema

    try:
        _fast_check(version, name)(content)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def schema_name_for(branch: str | None, content: Mapping[str, Any]) -> str:
    """knowledge/ uses the knowledge schema; both skill branches use the skills schema (as InstructLab)."""
    if branch == "knowledge" or (branch is None and "document" in content):
        return "knowledge"
    return "compositional_skills"


def validate_schema(doc: YamlDocument, file: str, branch: str | None, version: int) -> list[Diagnostic]:
    name = schema_name_for(branch, doc.value)
    schema = load_schema(version, name)
    if schema.get("deprecated"):
        position = doc.position(("version",))
        return [
            Diagnostic(
                file, position.line, position.column, "deprecated-version", schema["description"], yaml_path=".version"
            )
        ]
    diagnostics: list[Diagnostic] = []
    if is_valid_fast(doc.value, version, name):
        return diagnostics
    for error in _validator(version, name).iter_errors(doc.value):
        diagnostics.extend(_translate(error, doc, file))
    return sorted(set(diagnostics))


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


_TYPE_NAMES = {
    "string": "text",
    "integer": "a whole number",
    "array": "a list",
    "object": "a mapping of keys to values",
}


def _describe(value: object) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, str):
        return "text"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, datetime.date):
        return "a date (put it in quotes to make it text)"
    return type(value).__name__


def describe_path(path: YamlPath) -> str:
    """A YAML path in words: `("seed_examples", 2, "answer")` -> "'answer' of seed example 3"."""
    if not path:
        return "the file"
    last = path[-1]
    if isinstance(last, int):
        return f"{_item_word(path[:-1])} {last + 1}"
    owner = [p for p in path[:-1] if isinstance(p, int)]
    if not owner:
        return f"'{last}'" if len(path) == 1 else f"'{last}' of '{path[0]}'"
    return f"'{last}' of {describe_path(path[:-1])}"


def _item_word(path: YamlPath) -> str:
    last = path[-1] if path else ""
    return {
        "seed_examples": "seed example",
        "questions_and_answers": "question/answer pair",
        "patterns": "pattern",
    }.get(str(last), "item")


def _first_duplicate(items: object) -> tuple[int, int | None]:
    """Indexes of the first entry that repeats an earlier one (jsonschema only says that one does)."""
    if not isinstance(items, list):
        return 0, None
    first: dict[Any, int] = {}
    for later, item in enumerate(items):
        key = canonical(item)
        if key in first:
            return first[key], later
        first[key] = later
    return 0, None


def _translate(error: Any, doc: YamlDocument, file: str) -> Iterator[Diagnostic]:
    path: YamlPath = tuple(error.absolute_path)
    name = describe_path(path)
    validator = error.validator
    value = error.validator_value
    instance = error.instance

    def at(rule: str, message: str, where: YamlPath = path, key: bool = False) -> Diagnostic:
        position = doc.key_position(where) if key else doc.position(where)
        return Diagnostic(file, position.line, position.column, rule, message, yaml_path=format_yaml_path(where))

    if validator == "required":
        for missing in value:
            if isinstance(instance, dict) and missing not in instance:
                yield at("missing-key", f"'{missing}' is missing from {name}; add it")
    elif validator == "additionalProperties":
        known = list(error.schema.get("properties", {}))
        for key in instance:
            if key in known:
                continue
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else f"; allowed keys here: {', '.join(known)}"
            yield at("unknown-key", f"unknown key '{key}'{hint}", (*path, str(key)), key=True)
    elif validator == "minItems":
        count = len(instance) if isinstance(instance, list) else 0
        word = _item_word(path)
        yield at("too-few-items", f"{name} has {_plural(count, word)}; at least {value} are needed")
    elif validator == "minLength":
        yield at("empty-value", f"{name} is empty; write something here")
    elif validator == "uniqueItems":
        first, copy = _first_duplicate(instance)
        if copy is None:
            yield at("duplicate-item", f"{name} contains the same entry twice; remove the copy")
        else:
            word = _item_word(path)
            yield at(
                "duplicate-item",
                f"{word} {copy + 1} is the same as {word} {first + 1}; remove the copy or change it",
                (*path, copy),
            )
    elif validator == "type":
        wanted = _TYPE_NAMES.get(value, value) if isinstance(value, str) else " or ".join(map(str, value))
        hint = ""
        if value == "string" and isinstance(instance, int | float | bool):
            hint = " (put it in quotes to make it text)"
        elif value == "string" and not isinstance(instance, datetime.date):
            hint = " (put text on the same line, or use '|' for several lines)"
        yield at("wrong-type", f"{name} must be {wanted}, but it is {_describe(instance)}{hint}")
    elif validator == "const" and path == ("version",):
        yield at("bad-version", f"version is {instance!r}, but this schema is for version {value}")
    else:
        yield at("schema", f"{name}: {error.message[:200]}")
