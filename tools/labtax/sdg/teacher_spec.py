"""Which teacher a run uses, from the command line: a served model (OpenAI-compatible URL) or a local
model directory; its identity for the cache key; opening it."""

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
    """Which teacher, and how to talk to it. `model` naming a directory means a local transformers model."""

    model: str
    url: str | None = None
    concurrency: int = 32
    timeout_s: float = 120.0
    context_length: int | None = None
    batch_size: int = 8
    backoff_base_s: float = 0.5
    max_retries: int = 6

    @property
    def is_local(self) -> bool:
        return Path(self.model).is_dir()

    def identity(self) -> str:
        """The teacher as the cache key sees it: the served model name, or a local model's digest."""
        return local_teacher_name(Path(self.model).resolve()) if self.is_local else self.model

    def validate(self) -> None:
        if self.is_local:
            if self.url:
                raise UsageError(
                    f"--teacher-model '{self.model}' is a local directory, so it would run here and ignore "
                    f"--teacher-url {self.url}; drop one of them (a served model's name must not be a local path)"
                )
            LocalTeacher(LocalSettings(Path(self.model), batch_size=self.batch_size))
            return
        if not self.url:
            raise UsageError(
                f"--teacher-model '{self.model}' is not a local model directory, so --teacher-url is needed "
                "(an OpenAI-compatible server such as vLLM: http://localhost:8000/v1)"
            )
        self.http_settings().validate()

    def http_settings(self) -> TeacherSettings:
        return TeacherSettings(
            url=self.url or "",
            model=self.model,
            concurrency=self.concurrency,
            timeout_s=self.timeout_s,
            context_length=self.context_length,
            backoff_base_s=self.backoff_base_s,
            max_retries=self.max_retries,
        )

    def open(self) -> AbstractAsyncContextManager[Any]:
        if self.is_local:
            return LocalTeacher(LocalSettings(Path(self.model), batch_size=self.batch_size))
        return OpenAITeacher(self.http_settings())
