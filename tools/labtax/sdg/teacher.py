"""What a teacher is, for the pipelines: a request, its result, and the `Teacher` protocol.

Two backends implement the protocol: `labtax.sdg.openai_teacher` (an OpenAI-compatible server: vLLM,
llama.cpp, Ollama, `transformers serve`) and `labtax.sdg.local_teacher` (a transformers model in this
process); `labtax.sdg.teacher_spec` chooses one from the command line. Both answer a `TeacherRequest`
(chat messages plus the JSON Schema the answer must follow) with a `TeacherResult`, never an
exception: what went wrong is in `error_kind` and `error`, so a pipeline records the failure and
carries on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

# Error kinds a TeacherResult may carry. "transport" failures are worth re-sending in a later run
# (nothing was paid for); the others are answers the teacher gave and are final.
TRANSPORT = "transport"
PARSE = "parse"
TRUNCATED = "truncated"
TOO_LONG = "too_long"
REFUSED = "refused"


@dataclass(frozen=True)
class TeacherRequest:
    """One chat completion whose answer must be a JSON object following `schema`.

    `schema` None asks for free text (the precheck's answers): no `response_format` is sent, any
    answer is accepted, cut off at `max_tokens` or not, and `TeacherResult.data` is `{"text": answer}`.
    """

    key: str  # unique per request within a leaf; the journal's key
    stage: str
    messages: tuple[tuple[str, str], ...]  # (role, content)
    schema: dict[str, Any] | None
    max_tokens: int
    temperature: float
    seed: int = 0  # sent as the OpenAI `seed`: vLLM samples reproducibly with it
    seed_ids: tuple[str, ...] = ()  # the leaf's seed examples shown in `messages` (never sent)

    def chat(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]


@dataclass
class TeacherResult:
    key: str
    stage: str
    data: dict[str, Any] | None = None  # the parsed, schema-valid answer; None on failure
    text: str = ""
    finish_reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0
    rescued: bool = False  # the fallback parser found the JSON inside a non-JSON answer
    error_kind: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.data is not None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> TeacherResult:
        return cls(**{k: record[k] for k in cls.__dataclass_fields__ if k in record})


class Teacher(Protocol):
    """What pipelines need from a teacher."""

    name: str
    context_length: int

    def count_tokens(self, messages: Sequence[tuple[str, str]]) -> int: ...

    async def complete(self, request: TeacherRequest) -> TeacherResult: ...
