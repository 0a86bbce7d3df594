"""Our prompt templates: one YAML file per stage, each with a `version` that is part of the cache key.

A template holds a system message, a user message with `${name}` placeholders (string.Template, so
braces in the text need no escaping) and how its free-text answer is read (`answer:`, an
`labtax.sdg.answer_parsing.AnswerFormat`). Changing a template's wording or answer format means bumping
its `version`: cached results made with the old one are then regenerated (tests/test_sdg.py pins each
template's text to its version to catch a forgotten bump).
"""

from __future__ import annotations

import functools
import hashlib
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labtax.sdg.answer_parsing import FORMATS, AnswerFormat

PROMPT_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: int
    system: str
    user: str
    answer: AnswerFormat
    # Worked examples shown as earlier turns of the chat (user turn from `user` with these values, then
    # the reply): small teachers copy the shape of a reply far more reliably than they follow a description.
    # Judges show a failing example, then a passing one: a model that copies the last reply errs toward
    # keeping (the later judges and curation still filter), never toward rejecting everything.
    shots: tuple[tuple[tuple[tuple[str, str], ...], str], ...] = ()

    @property
    def label(self) -> str:
        """`name@version`, how samples and cache keys name the template."""
        return f"{self.name}@{self.version}"

    def render(self, **values: object) -> tuple[tuple[str, str], ...]:
        """The chat messages with every placeholder filled; a missing value is a bug, so it raises."""
        template = string.Template(self.user)
        messages: list[tuple[str, str]] = [("system", self.system.strip())]
        for shot_values, reply in self.shots:
            messages += [("user", template.substitute(dict(shot_values)).strip()), ("assistant", reply.strip())]
        user = template.substitute({k: str(v) for k, v in values.items()})
        return (*messages, ("user", user.strip()))

    def digest(self) -> str:
        text = f"{self.system}\0{self.user}\0{self.answer!r}" + (f"\0{self.shots!r}" if self.shots else "")
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@functools.cache
def load_prompt(name: str) -> PromptTemplate:
    import yaml

    raw = yaml.safe_load((PROMPT_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    return PromptTemplate(
        name=str(raw["name"]),
        version=int(raw["version"]),
        system=str(raw["system"]),
        user=str(raw["user"]),
        answer=_answer_format(raw.get("answer") or {}),
        shots=tuple(
            (tuple(sorted((str(k), str(v)) for k, v in shot["values"].items())), str(shot["reply"]))
            for shot in raw.get("shots") or ()
        ),
    )


def _answer_format(raw: dict[str, Any]) -> AnswerFormat:
    kind = str(raw.get("format", "text"))
    if kind not in FORMATS:
        raise ValueError(f"unknown answer format {kind!r}; one of {FORMATS}")
    words = {str(k): int(v) for k, v in (raw.get("words") or {}).items()}
    return AnswerFormat(kind, str(raw.get("tag", "")), int(raw.get("low", 0)), int(raw.get("high", 1)), words)


def all_prompts() -> list[PromptTemplate]:
    return [load_prompt(path.stem) for path in sorted(PROMPT_DIR.glob("*.yaml"))]
