"""Asking the current model the precheck's questions, scoring its answers, and the optional judge.

The model is either an OpenAI-compatible server (`url` given: vLLM, llama.cpp, Ollama, `transformers
serve`; a served model's id may look like a local path, so the URL decides, not the file system) or a
local transformers directory. Both are the project's teacher backends, reached through `_backends`,
the one function here that names their module. Answers are free text, greedy (temperature 0) and
length-limited by `max_tokens`. Each answer gets ROUGE-L against the seed's answer; with a judge (the
teacher), also a 1-3 score. A leaf is "already known" when at least `KNOWN_SHARE` of its questions are
answered well: judge score 3 when judged, else ROUGE-L >= `known_rouge`. Never blocking: it informs.

API keys come from environment variables only (`PRECHECK_API_KEY_ENV` for the model, the teacher's
`LABTAX_TEACHER_API_KEY` for the judge) and never enter a result, a message or a prompt; URLs are
recorded without credentials or query.
"""

from __future__ import annotations

import asyncio
import os
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from labtax.errors import LabtaxError, UsageError
from labtax.precheck.records import ModelInfo, PrecheckItem, PrecheckLeaf, PrecheckResult
from labtax.precheck.rouge import rouge_l

PRECHECK_API_KEY_ENV = "LABTAX_PRECHECK_API_KEY"
JUDGE_API_KEY_ENV = "LABTAX_TEACHER_API_KEY"  # the judge is the teacher: the teacher's key
DEFAULT_MAX_TOKENS = 256
DEFAULT_KNOWN_ROUGE = 0.5
KNOWN_SHARE = 0.8
JUDGE_MAX_TOKENS = 256
KNOWN_JUDGE_SCORE = 3

JUDGE_SYSTEM = "You compare a model's answer with a reference answer written by a person. Answer with JSON only."
JUDGE_USER = """{context_block}Question:
{question}

Reference answer:
{reference}

Model's answer:
{answer}

Rate how well the model's answer agrees with the reference answer: 3 = it states the same facts or does
the task as well as the reference; 2 = partly: correct but incomplete, or with small errors; 1 = wrong,
missing or off-task.
Reply as {{"score": 1, 2 or 3, "explanation": "one sentence"}}."""
JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "score": {"type": "integer", "minimum": 1, "maximum": 3},
        "explanation": {"type": "string"},
    },
    "required": ["score", "explanation"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class ModelSpec:
    """A model to ask: `url` None means `model` is a local transformers directory."""

    model: str
    url: str | None = None
    api_key_env: str = PRECHECK_API_KEY_ENV
    option: str = "--model"  # how the command line names it, for messages
    timeout_s: float = 120.0
    concurrency: int = 8
    device: str | None = None  # local models: default cuda when available, else cpu

    @property
    def served(self) -> bool:
        return self.url is not None

    def validate(self) -> None:
        if not self.model.strip():
            raise UsageError(f"{self.option} is empty")
        if self.served:
            assert self.url is not None
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise UsageError(
                    f"{self.option}-url {redact_url(self.url)} is not an http(s) URL; e.g. http://localhost:8000/v1"
                )
            if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
                raise UsageError(
                    f"{self.option}-url {redact_url(self.url)}: give the API root alone, without credentials or "
                    f"query; the key goes in ${self.api_key_env} (command lines show in `ps`, URLs in logs)"
                )
            return
        path = Path(self.model)
        if not path.is_dir() or not (path / "config.json").is_file():
            raise UsageError(
                f"{self.option} {self.model}: not a local transformers model directory (config.json and weights); "
                f"a model on an OpenAI-compatible server needs {self.option}-url as well"
            )

    def info(self) -> ModelInfo:
        if self.served:
            return ModelInfo(self.model, True, redact_url(self.url or ""))
        return ModelInfo(Path(self.model).name or self.model, False)


def redact_url(url: str) -> str:
    """`url` without user, password, query or fragment: what may be shown and recorded."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _backends() -> Any:
    """The teacher backends (the OpenAI-compatible client and the local transformers model) and the
    request type, under one namespace; imported lazily, and from one place."""
    from types import SimpleNamespace

    from labtax.sdg import local_teacher, openai_teacher, teacher

    return SimpleNamespace(
        TeacherRequest=teacher.TeacherRequest,
        TeacherSettings=openai_teacher.TeacherSettings,
        OpenAITeacher=openai_teacher.OpenAITeacher,
        TeacherUnavailable=openai_teacher.TeacherUnavailable,
        LocalTeacher=local_teacher.LocalTeacher,
        LocalSettings=local_teacher.LocalSettings,
    )


def open_model(spec: ModelSpec, max_tokens: int) -> AbstractAsyncContextManager[Any]:
    teacher = _backends()
    if spec.served:
        settings = teacher.TeacherSettings(
            url=spec.url,
            model=spec.model,
            concurrency=spec.concurrency,
            timeout_s=spec.timeout_s,
            max_retries=3,
            min_output_tokens=min(64, max_tokens),
            # An explicit key (empty: none), so the client never falls back on another variable's key.
            api_key=os.environ.get(spec.api_key_env) or "",
        )
        return teacher.OpenAITeacher(settings)  # type: ignore[no-any-return]
    return teacher.LocalTeacher(  # type: ignore[no-any-return]
        teacher.LocalSettings(Path(spec.model), batch_size=spec.concurrency, output_retries=0, device=spec.device)
    )


def _question_messages(item: PrecheckItem) -> tuple[tuple[str, str], ...]:
    """What the model is asked: the seed's context (when it has one), a blank line, the question."""
    prompt = f"{item.context.strip()}\n\n{item.question.strip()}" if item.context else item.question.strip()
    return (("user", prompt),)


def _judge_messages(item: PrecheckItem) -> tuple[tuple[str, str], ...]:
    context_block = f"Context:\n{item.context.strip()}\n\n" if item.context else ""
    user = JUDGE_USER.format(
        context_block=context_block, question=item.question, reference=item.reference, answer=item.answer or ""
    )
    return (("system", JUDGE_SYSTEM), ("user", user))


async def _ask(spec: ModelSpec, requests: list[Any], max_tokens: int) -> list[Any]:
    """Every request's result, in order, from one opened model."""
    teacher = _backends()
    try:
        async with open_model(spec, max_tokens) as model:
            return list(await asyncio.gather(*(model.complete(request) for request in requests)))
    except teacher.TeacherUnavailable as exc:
        message = str(exc).replace(spec.url or "\0", redact_url(spec.url or ""))
        raise LabtaxError(
            f"precheck: {message} (the key for {spec.option}-url comes from ${spec.api_key_env})"
        ) from None


def answer_questions(
    questions: PrecheckResult,
    model: ModelSpec,
    *,
    judge: ModelSpec | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    known_rouge: float = DEFAULT_KNOWN_ROUGE,
) -> PrecheckResult:
    """Ask `model` every question, score the answers, judge them if a judge is given, flag known leaves."""
    if max_tokens < 1:
        raise UsageError("--max-tokens must be at least 1")
    if not 0 <= known_rouge <= 1:
        raise UsageError("--known-rouge must be between 0 and 1")
    model.validate()
    if judge is not None:
        judge.validate()
    teacher = _backends()
    items = questions.items
    requests = [
        teacher.TeacherRequest(f"q{n}", "precheck", _question_messages(item), None, max_tokens, 0.0)
        for n, item in enumerate(items)
    ]
    results = asyncio.run(_ask(model, requests, max_tokens)) if requests else []
    answered = [_scored(item, result) for item, result in zip(items, results, strict=True)]
    if judge is not None:
        to_judge = [(n, item) for n, item in enumerate(answered) if item.answer]
        judge_requests = [
            teacher.TeacherRequest(
                f"j{n}", "precheck_judge", _judge_messages(item), JUDGE_SCHEMA, JUDGE_MAX_TOKENS, 0.0
            )
            for n, item in to_judge
        ]
        verdicts = asyncio.run(_ask(judge, judge_requests, JUDGE_MAX_TOKENS)) if judge_requests else []
        for (n, item), verdict in zip(to_judge, verdicts, strict=True):
            answered[n] = _judged(item, verdict)
    leaves = []
    position = 0
    for leaf in questions.leaves:
        leaf_items = tuple(answered[position : position + len(leaf.items)])
        position += len(leaf.items)
        leaves.append(replace(leaf, items=leaf_items, known=is_known(leaf_items, judge is not None, known_rouge)))
    return replace(
        questions,
        leaves=tuple(leaves),
        model=model.info(),
        judge=judge.info() if judge is not None else None,
        max_tokens=max_tokens,
        known_rouge=known_rouge,
    )


def _scored(item: PrecheckItem, result: Any) -> PrecheckItem:
    if not result.ok:
        return replace(item, error=f"{result.error_kind}: {result.error}"[:500])
    answer = str(result.data.get("text", "")).strip()
    return replace(item, answer=answer, finish_reason=result.finish_reason, rouge_l=rouge_l(answer, item.reference))


def _judged(item: PrecheckItem, verdict: Any) -> PrecheckItem:
    if not verdict.ok:
        return replace(item, error=f"judge {verdict.error_kind}: {verdict.error}"[:500])
    return replace(
        item, judge_score=int(verdict.data["score"]), judge_explanation=str(verdict.data["explanation"])[:500]
    )


def answered_well(item: PrecheckItem, judged: bool, known_rouge: float) -> bool:
    if judged:
        return item.judge_score == KNOWN_JUDGE_SCORE
    return item.rouge_l is not None and item.rouge_l >= known_rouge


def is_known(items: tuple[PrecheckItem, ...], judged: bool, known_rouge: float) -> bool:
    """The model already answers the leaf's new seeds well: `KNOWN_SHARE` of its questions or more."""
    if not items:
        return False
    well = sum(1 for item in items if answered_well(item, judged, known_rouge))
    return well / len(items) >= KNOWN_SHARE


__all__ = [
    "DEFAULT_KNOWN_ROUGE",
    "DEFAULT_MAX_TOKENS",
    "JUDGE_API_KEY_ENV",
    "PRECHECK_API_KEY_ENV",
    "ModelSpec",
    "PrecheckLeaf",
    "answer_questions",
    "redact_url",
]
