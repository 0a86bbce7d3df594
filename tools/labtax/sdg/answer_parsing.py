"""Reading a teacher's answer: the JSON object that follows the request's schema, strictly or rescued.

Structured output (`response_format`) guarantees the whole answer is the object; servers that ignore
it wrap the JSON in prose or fences, which the fallback finds. Every answer is checked against the
schema either way.
"""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def parse_answer(text: str, validator: Any) -> tuple[dict[str, Any] | None, bool, str]:
    """(object, rescued, problem): the JSON object in `text` that `validator` accepts.

    Strict first (the whole text is the object, as structured output guarantees); then the fallback
    for servers that ignore `response_format`: fenced blocks, then every `{` in turn. `rescued` says
    the fallback found it; `problem` says why nothing was found.
    """
    problem = "the answer is not JSON"
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        value = None
    else:
        problem = _schema_problem(value, validator)
        if isinstance(value, dict) and not problem:
            return value, False, ""
    for candidate in _embedded_objects(text):
        if isinstance(candidate, dict) and not _schema_problem(candidate, validator):
            return candidate, True, ""
    return None, False, problem


def _schema_problem(value: object, validator: Any) -> str:
    if not isinstance(value, dict):
        return "the answer is not a JSON object"
    error = next(iter(validator.iter_errors(value)), None)
    if error is None:
        return ""
    where = "/".join(str(p) for p in error.absolute_path) or "(top)"
    return f"the answer does not follow the schema at {where}: {error.message[:200]}"


def _embedded_objects(text: str) -> list[object]:
    found: list[object] = []
    decoder = json.JSONDecoder()
    sources = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for source in sources:
        for match in re.finditer(r"\{", source):
            try:
                value, _ = decoder.raw_decode(source, match.start())
            except (json.JSONDecodeError, RecursionError):
                continue
            found.append(value)
            if len(found) > 50:  # a pathological answer; enough tries
                return found
    return found


_validators: dict[str, Any] = {}


def validator_for(schema: dict[str, Any]) -> Any:
    """A compiled JSON Schema validator, cached: compiling is costly, the schemas are few."""
    key = json.dumps(schema, sort_keys=True)
    validator = _validators.get(key)
    if validator is None:
        from jsonschema import Draft202012Validator

        validator = _validators[key] = Draft202012Validator(schema)
    return validator
