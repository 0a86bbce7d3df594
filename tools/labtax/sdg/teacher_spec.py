"""Which teacher a run uses, from the command line: a served model (one or several OpenAI-compatible
URLs, replicas of the same model) or a local model directory; its identity for the cache key; opening it.

`--teacher-url` decides: with a URL the model is whatever the server serves under `--teacher-model`,
even when that name is also a directory here (`transformers serve` names a model by the path it was
given, so its id often is one); without a URL `--teacher-model` must be a local model directory.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labtax.errors import UsageError
from labtax.sdg.local_teacher import LocalSettings, LocalTeacher, local_teacher_name
from labtax.sdg.openai_teacher import OpenAITeacher, TeacherSettings


@dataclass(frozen=True)
class TeacherSpec:
    """Which teacher, and how to talk to it."""

    model: str
    url: str | tuple[str, ...] | None = None  # one API root or several replicas; None: a local model
    concurrency: int = 32  # requests in flight per replica
    timeout_s: float = 120.0
    context_length: int | None = None
    batch_size: int = 8
    backoff_base_s: float = 0.5
    max_retries: int = 6
    request_deadline_s: float = 300.0

    @property
    def urls(self) -> tuple[str, ...]:
        if self.url is None:
            return ()
        return (self.url,) if isinstance(self.url, str) else tuple(self.url)

    @property
    def is_local(self) -> bool:
        return not self.urls and Path(self.model).is_dir()

    def identity(self) -> str:
        """The teacher as the cache key sees it: the served model name, or a local model's digest."""
        return local_teacher_name(Path(self.model).resolve()) if self.is_local else self.model

    def notes(self) -> list[str]:
        """What the user should know about how the command line was read."""
        if self.urls and Path(self.model).is_dir():
            return [
                f"--teacher-model '{self.model}' is also a local directory; with --teacher-url it is the name the "
                "server serves the model by (transformers serve names models by their path), so generation asks the "
                "server and loads nothing here"
            ]
        return []

    def validate(self) -> None:
        if self.is_local:
            LocalTeacher(LocalSettings(Path(self.model), batch_size=self.batch_size))
            return
        if not self.urls:
            raise UsageError(
                f"--teacher-model '{self.model}' is not a local model directory, so --teacher-url is needed "
                "(an OpenAI-compatible server such as vLLM: http://localhost:8000/v1)"
            )
        self.http_settings().validate()

    def http_settings(self) -> TeacherSettings:
        return TeacherSettings(
            url=self.urls,
            model=self.model,
            concurrency=self.concurrency,
            timeout_s=self.timeout_s,
            request_deadline_s=self.request_deadline_s,
            context_length=self.context_length,
            backoff_base_s=self.backoff_base_s,
            max_retries=self.max_retries,
        )

    def open(self) -> AbstractAsyncContextManager[Any]:
        if self.is_local:
            return LocalTeacher(LocalSettings(Path(self.model), batch_size=self.batch_size))
        return OpenAITeacher(self.http_settings())
