"""Reading generation output (`GEN/generation.json` and each leaf's `samples.jsonl`) into `Candidate`s.

The layout is the generation stage's contract (docs/architecture.md, "Generation output"). A line
that is not a usable sample does not stop curation: it becomes a `malformed` drop with its reason.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from labtax.errors import UsageError
from labtax.fileio import file_sha256

GENERATION_FORMAT = "labtax-generation/1"
GENERATION_FILE = "generation.json"
USABLE_STATUSES = ("generated", "cached", "incomplete")


@dataclass(frozen=True)
class GeneratedLeaf:
    """One entry of generation.json's `leaves` list."""

    leaf: str
    leaf_hash: str
    branch: str
    kind: str
    pipeline: str
    cache_key: str
    samples: str | None
    status: str
    kept: int
    target: int


@dataclass(frozen=True)
class GenerationIndex:
    teacher: str
    leaves: tuple[GeneratedLeaf, ...]
    index_sha256: str


@dataclass
class Candidate:
    """One generated sample on its way through curation. `row` is written out unchanged (plus metadata)."""

    sample_id: str
    leaf: str
    kind: str
    line: int
    question: str
    answer: str
    row: dict[str, Any]
    group: str = ""
    influence: float | None = field(default=None, compare=False)

    @property
    def user_text(self) -> str:
        """Every user turn (a grounded sample carries its context there): what decontamination scans."""
        return "\n".join(m["content"] for m in self.row["messages"] if m.get("role") == "user")


@dataclass(frozen=True)
class MalformedLine:
    leaf: str
    line: int
    reason: str
    text: str


def sample_id(row: dict[str, Any]) -> str:
    """A stable id: the hash of the row's canonical JSON (so identical rows share an id)."""
    canonical = json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def read_generation(gen_dir: Path) -> GenerationIndex:
    """Parse generation.json; a missing or foreign file is a usage error that says what to run."""
    index_path = gen_dir / GENERATION_FILE
    if not index_path.is_file():
        raise UsageError(f"{index_path} not found; --samples must be the --output directory of `labtax generate`")
    try:
        data = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{index_path} is not readable JSON ({exc}); re-run `labtax generate`") from None
    if not isinstance(data, dict) or data.get("format") != GENERATION_FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise UsageError(f"{index_path}: format is {found!r}, expected {GENERATION_FORMAT!r}; re-run `labtax generate`")
    raw_leaves = data.get("leaves")
    if not isinstance(raw_leaves, list):
        raise UsageError(f"{index_path}: 'leaves' must be a list; re-run `labtax generate`")
    leaves = [_generated_leaf(index_path, entry) for entry in raw_leaves]
    leaves.sort(key=lambda entry: entry.leaf)
    return GenerationIndex(str(data.get("teacher", "")), tuple(leaves), file_sha256(index_path))


def _generated_leaf(index_path: Path, entry: object) -> GeneratedLeaf:
    if not isinstance(entry, dict) or not isinstance(entry.get("leaf"), str):
        raise UsageError(f"{index_path}: every entry of 'leaves' needs a 'leaf' path; re-run `labtax generate`")
    samples = entry.get("samples")
    if samples is not None and (
        not isinstance(samples, str) or PurePosixPath(samples).is_absolute() or ".." in PurePosixPath(samples).parts
    ):
        raise UsageError(
            f"{index_path}: leaf {entry['leaf']}: 'samples' must be a path inside the generation directory"
        )

    def whole(key: str) -> int:
        value = entry.get(key, 0)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    return GeneratedLeaf(
        leaf=entry["leaf"],
        leaf_hash=str(entry.get("leaf_hash", "")),
        branch=str(entry.get("branch", "")),
        kind=str(entry.get("kind", "")),
        pipeline=str(entry.get("pipeline", "")),
        cache_key=str(entry.get("cache_key", "")),
        samples=samples,
        status=str(entry.get("status", "")),
        kept=whole("kept"),
        target=whole("target"),
    )


def read_samples(gen_dir: Path, entry: GeneratedLeaf) -> tuple[list[Candidate], list[MalformedLine]]:
    """The leaf's samples in file order, and the lines that could not be used."""
    if entry.samples is None or entry.status not in USABLE_STATUSES:
        return [], []
    path = gen_dir / entry.samples
    if not path.is_file():
        return [], []
    candidates: list[Candidate] = []
    malformed: list[MalformedLine] = []
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            row, reason = _parse_row(line)
            if row is None:
                malformed.append(MalformedLine(entry.leaf, number, reason, line.strip()))
                continue
            question, answer = _last_exchange(row)
            metadata: dict[str, Any] = row["metadata"] if isinstance(row.get("metadata"), dict) else {}
            candidates.append(
                Candidate(
                    sample_id=sample_id(row),
                    leaf=entry.leaf,
                    kind=entry.kind,
                    line=number,
                    question=question,
                    answer=answer,
                    row=row,
                    group=_prompt_group(entry.leaf, metadata),
                )
            )
    return candidates, malformed


def _parse_row(line: str) -> tuple[dict[str, Any] | None, str]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg})"
    if not isinstance(row, dict):
        return None, "not a JSON object"
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return None, "no 'messages' list"
    for message in messages:
        if (
            not isinstance(message, dict)
            or not isinstance(message.get("role"), str)
            or not isinstance(message.get("content"), str)
        ):
            return None, "a message without a string 'role' and 'content'"
    roles = [m["role"] for m in messages]
    if "user" not in roles or "assistant" not in roles:
        return None, "needs a user and an assistant message"
    if "metadata" in row and not isinstance(row["metadata"], dict):
        return None, "'metadata' is not an object"
    return row, ""


def _last_exchange(row: dict[str, Any]) -> tuple[str, str]:
    """The last user message and the assistant message answering it."""
    messages = row["messages"]
    answer_index = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    users = [m["content"] for m in messages[:answer_index] if m["role"] == "user"]
    return (users[-1] if users else ""), messages[answer_index]["content"]


def _prompt_group(leaf: str, metadata: dict[str, Any]) -> str:
    """Which teacher prompt produced the sample: the unit of a preference pair (see docs/influence.md).

    Generation may record the seed it started from; without it, the leaf is the group.
    """
    for key in ("seed_id", "seed_index", "seed", "prompt_id"):
        value = metadata.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool):
            return f"{leaf}#{value}"
    return leaf
