"""What a teacher is, for the pipelines: a request, its result, and the `Teacher` protocol.

Two backends implement the protocol: `labtax.sdg.openai_teacher` (OpenAI-compatible servers: vLLM,
llama.cpp, Ollama, `transformers serve`; one or several replicas) and `labtax.sdg.local_teacher` (a
transformers model in this process); `labtax.sdg.teacher_spec` chooses one from the command line. Both
answer a `TeacherRequest` with a `TeacherResult`, never an exception: what went wrong is in
`error_kind` and `error`, so a pipeline records the failure and carries on.

A request asks for free text read by its `answer` format (`labtax.sdg.answer_parsing`), or for a JSON
object following `schema` (sent as `response_format`), or, with neither, for plain text (`data` is then
`{"text": answer}`).

Both count what they send per *owner* (`SentCounter`): the leaf whose task made the request, named by
`REQUEST_OWNER`, a context variable that the generation run sets in each leaf's task and that every
task the leaf starts (candidates, the dispatcher's attempts and hedges) inherits. So a run's summary
says, leaf by leaf, how many HTTP requests (or local generations) it cost, retries and hedges included.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from labtax.sdg.answer_parsing import AnswerFormat, ParsedAnswer, read_answer

# Error kinds a TeacherResult may carry. "transport" failures are worth re-sending in a later run
# (nothing was paid for); the others are answers the teacher gave and are final.
TRANSPORT = "transport"
PARSE = "parse"
TRUNCATED = "truncated"
TOO_LONG = "too_long"
REFUSED = "refused"

# What a teacher did not honour, noted per answer (TeacherResult.notes) and counted per stage and run.
NOTE_STRUCTURED = "response_format"  # a schema request answered with something other than the bare JSON
NOTE_STOP = "stop"  # the answer ran on past a stop sequence
NOTE_FORMAT = "format"  # the answer was not in the format asked for (unusable, or only rescued)
NOTE_MAX_TOKENS = "max_tokens"  # more completion tokens than max_tokens allowed
NOTE_CUT = "cut"  # cut off at max_tokens (complete items before the cut were kept when there were any)
NOTE_SAMPLING = "sampling"  # a retry with another seed gave the very same text: temperature/seed ignored
NOTES = (NOTE_STRUCTURED, NOTE_STOP, NOTE_FORMAT, NOTE_MAX_TOKENS, NOTE_CUT, NOTE_SAMPLING)


@dataclass(frozen=True)
class TeacherRequest:
    """One chat completion and how its answer is read."""

    key: str  # unique per request within a leaf; the journal's key
    stage: str
    messages: tuple[tuple[str, str], ...]  # (role, content)
    schema: dict[str, Any] | None  # a JSON Schema the answer must follow (sent as response_format), or None
    max_tokens: int
    temperature: float
    seed: int = 0  # sent as the OpenAI `seed`: vLLM samples reproducibly with it
    seed_ids: tuple[str, ...] = ()  # the leaf's seed examples shown in `messages` (never sent)
    answer: AnswerFormat | None = None  # how a free-text answer is read (None: the whole text)
    stop: tuple[str, ...] = ()  # stop sequences sent to the server (and enforced on the answer)

    def chat(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]

    def read(self, text: str, finish_reason: str) -> ParsedAnswer:
        return read_answer(text, finish_reason, self.answer, self.schema, self.stop)


@dataclass
class TeacherResult:
    key: str
    stage: str
    data: dict[str, Any] | None = None  # the parsed answer; None on failure
    text: str = ""
    finish_reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0
    rescued: bool = False  # found in a shape other than the one asked for (prose around JSON, no tags)
    partial: bool = False  # cut at max_tokens; the complete items before the cut were kept
    max_tokens: int = 0  # the completion limit of the attempt that gave `text`
    notes: list[str] = field(default_factory=list)  # NOTE_* values: what the teacher did not honour
    error_kind: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.data is not None

    def as_json(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies, a third of a millisecond per answer at 600 answers/s.
        return {name: getattr(self, name) for name in _RESULT_FIELDS} | {"notes": list(self.notes)}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> TeacherResult:
        return cls(**{k: record[k] for k in cls.__dataclass_fields__ if k in record})

    def note(self, what: str) -> None:
        if what not in self.notes:
            self.notes.append(what)

    def take(self, parsed: ParsedAnswer, request: TeacherRequest) -> None:
        """Fill data and the notes from the parsed text (the last attempt's)."""
        self.data, self.rescued, self.partial = parsed.data, parsed.rescued, parsed.partial
        if parsed.past_stop:
            self.note(NOTE_STOP)
        if parsed.rescued or (parsed.data is None and self.finish_reason != "length"):
            self.note(NOTE_STRUCTURED if request.schema is not None else NOTE_FORMAT)
        elif request.schema is not None and not self.text.lstrip().startswith("{"):
            # Cut or not, an answer under a honoured json_schema starts as the object: this one ignored it.
            self.note(NOTE_STRUCTURED)
        if self.finish_reason == "length":
            self.note(NOTE_CUT)
        if parsed.data is not None:
            self.error_kind = self.error = None
        elif self.finish_reason == "length":
            self.error_kind, self.error = TRUNCATED, parsed.problem
        else:
            self.error_kind, self.error = PARSE, parsed.problem


_RESULT_FIELDS = tuple(TeacherResult.__dataclass_fields__)


# Whose requests these are (a leaf's cache key); "" for requests made outside a leaf's task.
REQUEST_OWNER: ContextVar[str] = ContextVar("labtax_request_owner", default="")


class SentCounter:
    """Requests sent to the teacher (HTTP attempts, or local generations), counted per owner."""

    def __init__(self) -> None:
        self.by_owner: Counter[str] = Counter()

    def count(self, n: int = 1, owner: str | None = None) -> None:
        self.by_owner[REQUEST_OWNER.get() if owner is None else owner] += n

    @property
    def total(self) -> int:
        return sum(self.by_owner.values())


class Teacher(Protocol):
    """What pipelines need from a teacher."""

    name: str
    context_length: int
    sent: SentCounter

    def count_tokens(self, messages: Sequence[tuple[str, str]]) -> int: ...

    async def complete(self, request: TeacherRequest) -> TeacherResult: ...


def estimate_tokens(messages: Sequence[tuple[str, str]]) -> int:
    """An upper estimate of the prompt's tokens when the teacher's tokenizer is not at hand.

    BPE tokenizers average about 4 characters of English per token; dividing UTF-8 bytes by 3 leaves
    a margin for code, numbers and other scripts, and each message adds the chat template's markers.
    """
    return sum(-(-len(content.encode("utf-8")) // 3) + 8 for _, content in messages) + 16
