"""`Sample`: one chat-format training example and where it came from, one JSON object per line.

Generation writes them (`GEN/leaves/<cache_key>/samples.jsonl`), curation reads them and writes the
kept ones into the phase files (`DATA/phase1_knowledge.jsonl`, `DATA/phase2_skills.jsonl`), which
training reads with `datasets` (the `messages` column). A line:

    {"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}],
     "metadata": {"format": "labtax-sample/1", "leaf": ..., "leaf_hash": ..., "pipeline": ...,
                  "prompt_version": ..., "teacher": ..., "scores": {...}, "exchanges": [...]}}

`exchanges` are the teacher requests whose answers became the sample, in pipeline order (judges
excluded: their verdicts are `scores`): the exact messages sent, the raw output, `finish_reason`, the
seed examples shown (`seed_ids`), which part of the sample each one wrote, that part alone as a
one-item answer in the stage's format (`item_output`), and the judge's score of a response
(`judge_score`); the other responses to the same prompt, when several were asked for, with `wrote` = ().
Curation reads `finish_reason` from them
(truncation), influence scoring groups and pairs samples by the exchange that proposed their question
(Montessori-Instruct preference pairs carry its real prompt).

Every pipeline writes every field with the same type (scores are integers, -1 where a pipeline has no
such judge), so all leaves' files load together as one Arrow table. Curation adds `sample_id` (and
`replay`, `repeat` for replayed rows) to the metadata of the rows it writes; they are absent until then.
A knowledge row also says which `form` curation wrote it in ("grounded", "raft" or "plain", with the
messages changed accordingly), and a document-grounded row carries `train_all_tokens: true`: training
takes the loss on every token of it, not only the assistant's (InstructLab's "pretraining" samples).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from labtax.fileio import write_bytes_atomic
from labtax.records.base import NewerFormatError, RecordError, RecordFormat, decode, to_json

SAMPLE_FORMAT = RecordFormat("labtax-sample", 1, "sample", "re-run `labtax generate` (then `labtax curate`)")

# Seed ids: a seed example's 1-based position in the leaf's qna.yaml `seed_examples` ("3"), and for a
# knowledge leaf's question-answer pair, the pair's position within it ("3.2"): reviewers count so.
# Parts of a sample an exchange can write (`TeacherExchange.wrote`):
CONTEXT, QUESTION, ANSWER = "context", "question", "answer"


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class TeacherExchange:
    """One teacher request whose answer became (part of) a sample."""

    stage: str  # the prompt template's name, e.g. "freeform_instructions"
    request_id: str  # the request's key (unique within its leaf; the resume journal's key)
    messages: tuple[Message, ...]  # exactly what was sent
    output: str  # the teacher's raw answer text
    finish_reason: str  # as the server (or the local model) reported it: "stop", "length", ...
    seed_ids: tuple[str, ...]  # the seed examples shown in `messages`
    wrote: tuple[str, ...]  # which parts of the sample came from this answer: context, question, answer
    item_output: str  # this sample's part of `output` alone, as a one-item answer in the stage's format
    # The judge's score of this answer (-1: not judged). Added without a format bump (old files read as -1).
    # A skill sample generated with several responses to one prompt (`candidates_per_prompt`) carries
    # them all: the kept one (`wrote` = ("answer",)) and the others (`wrote` = ()), each with its score;
    # two answers with the same `messages` are answers to the very same sent prompt (preference pairs).
    judge_score: int = -1


@dataclass(frozen=True)
class SampleMetadata:
    leaf: str  # Leaf.path
    leaf_hash: str
    pipeline: str  # "knowledge" | "freeform_skill" | "grounded_skill"
    prompt_version: str  # the templates and their versions: "knowledge_qa@2,knowledge_faithfulness@1,..."
    teacher: str  # the teacher's identity, as in the cache key
    scores: dict[str, int]  # every key of labtax.sdg.params.SCORE_KEYS; -1: no such judge in this pipeline
    exchanges: tuple[TeacherExchange, ...]
    # Added by curation to the rows it writes:
    sample_id: str | None = None
    replay: str | None = None  # "phase1": a phase-1 row replayed in phase 2
    repeat: int | None = None  # the pass of a row replayed more than once (allow_repeats)
    form: str | None = None  # a knowledge row's form: "grounded" | "raft" | "plain" (docs/curation.md)
    train_all_tokens: bool | None = None  # True: the loss covers every token, the prompt included

    def exchange_that_wrote(self, part: str) -> TeacherExchange | None:
        """The last exchange that wrote `part` (CONTEXT, QUESTION or ANSWER) of the sample."""
        return next((e for e in reversed(self.exchanges) if part in e.wrote), None)

    @property
    def finish_reason(self) -> str:
        """How the answer's generation ended ("length": cut off at max_tokens)."""
        answer = self.exchange_that_wrote(ANSWER)
        return answer.finish_reason if answer else ""

    @property
    def seed_ids(self) -> tuple[str, ...]:
        """Every seed example the teacher was shown while making this sample, in first-seen order."""
        return tuple(dict.fromkeys(seed for e in self.exchanges for seed in e.seed_ids))


# Curation's marks, unset: a sample's id does not depend on them.
CURATION_MARKS: dict[str, Any] = {
    "sample_id": None,
    "replay": None,
    "repeat": None,
    "form": None,
    "train_all_tokens": None,
}


@dataclass(frozen=True)
class Sample:
    messages: tuple[Message, ...]
    metadata: SampleMetadata

    @property
    def question(self) -> str:
        """The last user message before the final assistant message."""
        answer_at = max(i for i, m in enumerate(self.messages) if m.role == "assistant")
        users = [m.content for m in self.messages[:answer_at] if m.role == "user"]
        return users[-1] if users else ""

    @property
    def answer(self) -> str:
        return next(m.content for m in reversed(self.messages) if m.role == "assistant")

    @property
    def user_text(self) -> str:
        """Every user turn (a grounded sample carries its context there)."""
        return "\n".join(m.content for m in self.messages if m.role == "user")

    def with_curation(self, **marks: Any) -> Sample:
        """The sample with curation's marks (`sample_id`, `replay`, `repeat`, `form`, `train_all_tokens`)."""
        return replace(self, metadata=replace(self.metadata, **marks))


def sample_to_json(sample: Sample) -> dict[str, Any]:
    """The sample as its JSON line holds it (format tag first in the metadata; curation marks only when set)."""
    row = to_json(sample, drop_none=True)
    row["metadata"] = {"format": SAMPLE_FORMAT.tag, **row["metadata"]}
    return row


def sample_id(sample: Sample) -> str:
    """A stable id: the hash of the sample's canonical JSON without curation's marks (equal samples, equal id)."""
    plain = sample_to_json(sample.with_curation(**CURATION_MARKS))
    canonical = json.dumps(plain, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def samples_bytes(samples: Iterable[Sample]) -> bytes:
    return "".join(json.dumps(sample_to_json(s), ensure_ascii=False) + "\n" for s in samples).encode("utf-8")


def write_samples(path: Path, samples: Iterable[Sample]) -> None:
    """The one writer of sample files (generation's samples.jsonl), atomically."""
    write_bytes_atomic(path, samples_bytes(samples))


@dataclass(frozen=True)
class UnusableLine:
    """A line of a sample file that is not a sample of this format: curation counts it as malformed."""

    line: int
    reason: str
    text: str


def parse_sample(line: str, where: str) -> Sample:
    """One JSONL line as a Sample. A RecordError says why not; a newer format's message says to upgrade."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{where}: not JSON ({exc.msg})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("metadata"), dict):
        raise RecordError(f"{where}: not a sample (a JSON object with 'messages' and 'metadata')")
    metadata = dict(raw["metadata"])
    SAMPLE_FORMAT.check(metadata.pop("format", None), where)
    sample = decode(Sample, {**raw, "metadata": metadata}, where, SAMPLE_FORMAT.remedy)
    roles = [m.role for m in sample.messages]
    if "user" not in roles or "assistant" not in roles:
        raise RecordError(f"{where}: a sample needs a user and an assistant message")
    return sample


def read_samples(path: Path) -> Iterator[tuple[int, Sample | UnusableLine]]:
    """The one reader of sample files: (line number, Sample or UnusableLine) for every non-blank line.

    A line of a newer sample format is not "unusable": it raises, so that nothing is silently dropped
    because this labtax is too old to read it.
    """
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, parse_sample(line, f"{path}:{number}")
            except NewerFormatError:
                raise
            except RecordError as exc:
                reason = str(exc).removeprefix(f"{path}:{number}: ")
                yield number, UnusableLine(number, reason, line.strip())
