"""Generated samples as curation sees them: each `Sample` (labtax.records.sample) of a leaf listed in
generation.json, wrapped in a `Candidate` that carries its id, its place in the input and, later, its
influence score.

Files are read through the records' one reader. A line that is not a usable sample does not stop
curation: it becomes a `malformed` drop with its reason; a line of a newer sample format stops it
(this labtax is too old to read it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from labtax.records.generation import COMPLETE, INCOMPLETE, GeneratedLeaf
from labtax.records.sample import (
    ANSWER,
    CONTEXT,
    Sample,
    TeacherExchange,
    UnusableLine,
    read_samples,
    sample_id,
)
from labtax.taxonomy.leaf import LeafKind

USABLE_STATUSES = (COMPLETE, INCOMPLETE)


@dataclass
class Candidate:
    """One generated sample on its way through curation."""

    sample_id: str
    leaf: str
    kind: str
    line: int
    sample: Sample
    influence: float | None = field(default=None, compare=False)

    @property
    def question(self) -> str:
        return self.sample.question

    @property
    def answer(self) -> str:
        return self.sample.answer

    @property
    def user_text(self) -> str:
        """Every user turn (a grounded sample carries its context there): what decontamination scans."""
        return self.sample.user_text

    @property
    def grounded(self) -> bool:
        return self.kind == LeafKind.GROUNDED_SKILL

    @cached_property
    def _split(self) -> tuple[str, str]:
        return split_grounded(self.sample) if self.grounded else ("", self.question)

    @property
    def context(self) -> str:
        """A grounded-skill sample's context (the passage its user turn starts with); "" for other kinds."""
        return self._split[0]

    @property
    def instruction(self) -> str:
        """What the user asks: the question without a grounded sample's context."""
        return self._split[1]

    @property
    def answered_by(self) -> TeacherExchange | None:
        """The teacher request whose answer is this sample's answer (its exchange that wrote ANSWER)."""
        return self.sample.metadata.exchange_that_wrote(ANSWER)


def _one_item(item_output: str) -> str | None:
    """The single text of a one-item answer (`{"contexts": ["..."]}` or `{"context": "..."}`), if it is one."""
    try:
        value = json.loads(item_output)
    except (json.JSONDecodeError, TypeError):
        return None
    if not isinstance(value, dict) or len(value) != 1:
        return None
    (item,) = value.values()
    if isinstance(item, list) and len(item) == 1:
        item = item[0]
    return item if isinstance(item, str) else None


def split_grounded(sample: Sample) -> tuple[str, str]:
    """(context, instruction) of a grounded-skill sample: its user turn is the context, a blank line, the instruction.

    The context is the one the teacher wrote (the exchange that wrote CONTEXT, as generation records it)
    when the user turn starts with it; otherwise the text before the last blank line (the pipeline's
    layout); with no blank line there is no separate context.
    """
    question = sample.question
    made = sample.metadata.exchange_that_wrote(CONTEXT)
    context = _one_item(made.item_output) if made else None
    if context and question.startswith(context.strip()):
        stripped = context.strip()
        return stripped, question[len(stripped) :].strip()
    before, blank, after = question.rpartition("\n\n")
    if blank and before.strip() and after.strip():
        return before.strip(), after.strip()
    return "", question


@dataclass(frozen=True)
class MalformedLine:
    leaf: str
    line: int
    reason: str
    text: str


def candidate(sample: Sample, leaf: str, kind: str, line: int) -> Candidate:
    return Candidate(sample_id(sample), leaf, kind, line, sample)


def read_candidates(gen_dir: Path, entry: GeneratedLeaf) -> tuple[list[Candidate], list[MalformedLine]]:
    """The leaf's samples in file order, and the lines that could not be used."""
    if entry.status not in USABLE_STATUSES:
        return [], []
    path = gen_dir / entry.samples
    if not path.is_file():
        return [], []
    candidates: list[Candidate] = []
    malformed: list[MalformedLine] = []
    for number, found in read_samples(path):
        if isinstance(found, UnusableLine):
            malformed.append(MalformedLine(entry.leaf, number, found.reason, found.text))
        else:
            candidates.append(candidate(found, entry.leaf, entry.kind, number))
    return candidates, malformed
