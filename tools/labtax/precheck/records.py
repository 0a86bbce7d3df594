"""The precheck's one record: the questions of the changed seeds and, once asked, the model's answers.

`PrecheckResult` is written as JSON (format `labtax-precheck/1`) by `labtax precheck --json` and read
back by `labtax precheck --questions`: the untrusted pull-request job writes the question list (no
model), the trusted comment workflow reads it and asks the model. So the reader treats the file as
hostile input: a size cap, every field's type and length checked, and a clear error naming the file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from labtax.errors import LabtaxError

PRECHECK_FORMAT = "labtax-precheck/1"
MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_TEXT_CHARS = 50_000  # one context, question or answer
MAX_QUESTIONS_IN_FILE = 2_000


@dataclass(frozen=True)
class PrecheckItem:
    """One question of one added or edited seed, and what the model made of it."""

    seed: int  # 1-based place of the seed in the leaf's qna.yaml now
    pair: int  # 1-based place of the Q&A pair in the seed (knowledge seeds have several)
    question: str
    context: str | None  # sent before the question (grounded skills, knowledge)
    reference: str  # the seed's own answer
    answer: str | None = None  # None until asked
    finish_reason: str | None = None  # "length": cut off at max_tokens
    rouge_l: float | None = None  # ROUGE-L F1 of the answer against the reference
    judge_score: int | None = None  # 1-3, when a judge was asked
    judge_explanation: str | None = None
    error: str | None = None  # why there is no answer (or no judge score)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PrecheckLeaf:
    path: str  # qna.yaml path under the taxonomy root
    kind: str  # knowledge | freeform_skill | grounded_skill
    status: str  # added | modified | renamed
    items: tuple[PrecheckItem, ...]
    known: bool = False  # the model already answers these seeds well (informative, never blocking)

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "status": self.status,
            "known": self.known,
            "items": [item.as_json() for item in self.items],
        }


@dataclass(frozen=True)
class ModelInfo:
    """Which model answered (or judged), as shown to people: never a key, never a URL's credentials."""

    name: str
    served: bool  # an OpenAI-compatible server; False: a local transformers directory
    url: str | None = None  # redacted: scheme, host, port and path only

    def describe(self) -> str:
        return f"{self.name} at {self.url}" if self.served and self.url else self.name


@dataclass(frozen=True)
class PrecheckResult:
    leaves: tuple[PrecheckLeaf, ...]
    base_ref: str | None = None
    base_commit: str | None = None
    head_commit: str | None = None
    omitted: int = 0  # questions over --max-questions, not asked
    model: ModelInfo | None = None  # None: the question list, nobody asked yet
    judge: ModelInfo | None = None
    max_tokens: int | None = None
    known_rouge: float | None = None  # the ROUGE-L an answer needs to count as known (without a judge)
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def items(self) -> list[PrecheckItem]:
        return [item for leaf in self.leaves for item in leaf.items]

    @property
    def answered(self) -> bool:
        return self.model is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "format": PRECHECK_FORMAT,
            "base_ref": self.base_ref,
            "base_commit": self.base_commit,
            "head_commit": self.head_commit,
            "omitted": self.omitted,
            "model": asdict(self.model) if self.model else None,
            "judge": asdict(self.judge) if self.judge else None,
            "max_tokens": self.max_tokens,
            "known_rouge": self.known_rouge,
            "notes": list(self.notes),
            "leaves": [leaf.as_json() for leaf in self.leaves],
        }

    def questions_only(self) -> PrecheckResult:
        """The same questions with every answer, score and model dropped: what may be asked again."""
        leaves = tuple(
            replace(
                leaf,
                known=False,
                items=tuple(PrecheckItem(i.seed, i.pair, i.question, i.context, i.reference) for i in leaf.items),
            )
            for leaf in self.leaves
        )
        return PrecheckResult(leaves, self.base_ref, self.base_commit, self.head_commit, self.omitted)


# --- reading a question list (untrusted) ------------------------------------------------------------


class _Bad(Exception):
    pass


def read_questions(path: Path) -> PrecheckResult:
    """The questions of a precheck JSON file (answers in it, if any, are ignored); LabtaxError if malformed."""
    try:
        if path.is_symlink() or not path.is_file():
            raise LabtaxError(f"--questions {path}: not a regular file")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise LabtaxError(f"--questions {path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
        raw = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise LabtaxError(f"--questions {path}: not a readable JSON file ({type(exc).__name__}: {exc})") from None
    try:
        return _questions(raw)
    except _Bad as exc:
        raise LabtaxError(f"--questions {path}: {exc}") from None


def _questions(raw: object) -> PrecheckResult:
    record = _mapping(raw, "the file")
    if record.get("format") != PRECHECK_FORMAT:
        raise _Bad(f"format is {record.get('format')!r}, expected {PRECHECK_FORMAT!r}")
    leaves = []
    count = 0
    for number, raw_leaf in enumerate(_list(record.get("leaves"), "leaves"), start=1):
        where = f"leaves[{number}]"
        leaf = _mapping(raw_leaf, where)
        items = []
        for item_number, raw_item in enumerate(_list(leaf.get("items"), f"{where}.items"), start=1):
            item = _mapping(raw_item, f"{where}.items[{item_number}]")
            at = f"{where}.items[{item_number}]"
            items.append(
                PrecheckItem(
                    seed=_int(item.get("seed"), f"{at}.seed"),
                    pair=_int(item.get("pair"), f"{at}.pair"),
                    question=_text(item.get("question"), f"{at}.question"),
                    context=_text(item.get("context"), f"{at}.context") if item.get("context") is not None else None,
                    reference=_text(item.get("reference"), f"{at}.reference"),
                )
            )
            count += 1
            if count > MAX_QUESTIONS_IN_FILE:
                raise _Bad(f"more than {MAX_QUESTIONS_IN_FILE} questions")
        leaves.append(
            PrecheckLeaf(
                path=_text(leaf.get("path"), f"{where}.path", 1000),
                kind=_text(leaf.get("kind"), f"{where}.kind", 40),
                status=_text(leaf.get("status"), f"{where}.status", 40),
                items=tuple(items),
            )
        )
    optional = {key: record.get(key) for key in ("base_ref", "base_commit", "head_commit")}
    refs = {key: _text(value, key, 300) if value is not None else None for key, value in optional.items()}
    omitted = record.get("omitted", 0)
    return PrecheckResult(
        tuple(leaves), refs["base_ref"], refs["base_commit"], refs["head_commit"], _int(omitted, "omitted", 0)
    )


def _mapping(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(f"{where} is not an object")
    return value


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Bad(f"{where} is not a list")
    return value


def _int(value: object, where: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= 1_000_000:
        raise _Bad(f"{where} is not a whole number from {minimum}")
    return value


def _text(value: object, where: str, limit: int = MAX_TEXT_CHARS) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{where} is not a string")
    if len(value) > limit:
        raise _Bad(f"{where} is longer than {limit} characters")
    return value
