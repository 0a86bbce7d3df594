"""Our prompt templates: one YAML file per stage, each with a `version` that is part of the cache key.

A template holds a system message, a user message with `${name}` placeholders (string.Template, so
JSON braces in the text need no escaping) and the JSON Schema its answer must follow. Changing a
template's wording means bumping its `version`: cached results made with the old wording are then
regenerated (tests/test_sdg_prompts.py pins each template's text to its version to catch a forgotten bump).
"""

from __future__ import annotations

import functools
import hashlib
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROMPT_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: int
    system: str
    user: str
    schema: dict[str, Any]

    @property
    def label(self) -> str:
        """`name@version`, how samples and cache keys name the template."""
        return f"{self.name}@{self.version}"

    def render(self, **values: object) -> tuple[tuple[str, str], ...]:
        """The chat messages with every placeholder filled; a missing value is a bug, so it raises."""
        user = string.Template(self.user).substitute({k: str(v) for k, v in values.items()})
        return (("system", self.system.strip()), ("user", user.strip()))

    def digest(self) -> str:
        text = f"{self.system}\0{self.user}\0{sorted(self.schema.items())!r}"
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
        schema=dict(raw["schema"]),
    )


def all_prompts() -> list[PromptTemplate]:
    return [load_prompt(path.stem) for path in sorted(PROMPT_DIR.glob("*.yaml"))]
