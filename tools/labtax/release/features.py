"""The `datasets` features of the curated JSONL files, for the dataset card's metadata.

The two phase files hold the same records, but not the same keys: curation marks replayed rows
(`metadata.replay`, `repeat`) and knowledge rows (`form`, ...) and leaves a mark out where it does not
apply. `load_dataset` infers each file's schema separately and refuses to put two different ones under
one configuration; given the union of both as `dataset_info.features`, it reads every file against it
and fills a missing field with null. So the card declares that union, inferred here in one pass over
the files (json, no `datasets` needed at release time), written as the YAML `datasets` reads.

Types: null, bool, int64, float64, string, a struct (JSON object) or a list. int64 and float64 make
float64, null and anything make the other; any other disagreement (a string here, a number there)
cannot be read as one column, and `union_features` returns None: the card then gives each phase its
own configuration instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

NULL, BOOL, INT, FLOAT, STRING = "null", "bool", "int64", "float64", "string"


class Conflict(ValueError):
    """Two rows disagree on a field's type in a way no single column holds."""


def value_type(value: Any) -> Any:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT
    if isinstance(value, float):
        return FLOAT
    if isinstance(value, str):
        return STRING
    if isinstance(value, dict):
        return ("struct", {str(key): value_type(item) for key, item in value.items()})
    if isinstance(value, list):
        element: Any = NULL
        for item in value:
            element = merge(element, value_type(item))
        return ("list", element)
    raise Conflict(f"unsupported JSON value {value!r}")


def merge(first: Any, second: Any) -> Any:
    if first == second:
        return first
    if first == NULL:
        return second
    if second == NULL:
        return first
    if isinstance(first, str) and isinstance(second, str) and {first, second} == {INT, FLOAT}:
        return FLOAT
    if isinstance(first, tuple) and isinstance(second, tuple) and first[0] == second[0]:
        if first[0] == "list":
            return ("list", merge(first[1], second[1]))
        fields = dict(first[1])
        for name, kind in second[1].items():
            fields[name] = merge(fields[name], kind) if name in fields else kind
        return ("struct", fields)
    raise Conflict(f"{first!r} and {second!r}")


def union_features(paths: Iterable[Path]) -> list[dict[str, Any]] | None:
    """The union schema of every row of `paths` as `dataset_info.features` YAML, or None when rows conflict."""
    schema: Any = ("struct", {})
    try:
        for path in paths:
            with path.open(encoding="utf-8") as lines:
                for line in lines:
                    if line.strip():
                        row = json.loads(line)
                        if not isinstance(row, dict):
                            return None
                        schema = merge(schema, value_type(row))
    except (Conflict, ValueError):
        return None
    return _fields_yaml(schema[1])


def _fields_yaml(fields: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": name, **_type_yaml(kind)} for name, kind in fields.items()]


def _type_yaml(kind: Any) -> dict[str, Any]:
    if isinstance(kind, str):
        return {"dtype": kind}
    if kind[0] == "struct":
        return {"struct": _fields_yaml(kind[1])}
    element = kind[1]
    if isinstance(element, str):
        return {"list": element}
    if element[0] == "struct":
        return {"list": _fields_yaml(element[1])}
    return {"list": _type_yaml(element)}
