"""Generated samples as curation sees them: each `Sample` (labtax.records.sample) of a leaf listed in
generation.json, wrapped in a `Candidate` that carries its id, its place in the input and, later, its
influence score.

Files are read through the records' one reader. A line that is not a usable sample does not stop
curation: it becomes a `malformed` drop with its reason; a line of a newer sample format stops it
(this labtax is too old to read it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from labtax.records.generation import COMPLETE, INCOMPLETE, GeneratedLeaf
from labtax.records.sample import QUESTION, Sample, UnusableLine, read_samples, sample_id

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
    def group(self) -> str:
        """The teacher prompt that proposed this sample's question: the unit of a preference pair (samples
        sharing it are the teacher's alternative answers to the same prompt; docs/influence.md)."""
        exchange = self.sample.metadata.exchange_that_wrote(QUESTION)
        return f"{self.leaf}#{exchange.request_id}" if exchange else self.leaf


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
