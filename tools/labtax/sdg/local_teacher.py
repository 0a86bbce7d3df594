"""The local teacher: a Hugging Face causal LM generating in this process (no server needed).

Concurrent requests are gathered into batches and generated together in a worker thread, so the event
loop stays free. torch and transformers are imported when the model loads, never at import time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labtax.errors import UsageError
from labtax.sdg.teacher import PARSE, REFUSED, REQUEST_OWNER, TOO_LONG, SentCounter, TeacherRequest, TeacherResult


@dataclass(frozen=True)
class LocalSettings:
    model_dir: Path
    batch_size: int = 8
    output_retries: int = 1
    device: str | None = None  # default: cuda when available, else cpu


def local_teacher_name(model_dir: Path) -> str:
    """Identity of a local model for the cache key: its directory name and a digest of its config and files."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(model_dir.iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + str(path.stat().st_size).encode() + b"\0")
            if path.suffix == ".json" and path.stat().st_size < 10_000_000:
                digest.update(path.read_bytes())
    return f"local:{model_dir.name}@{digest.hexdigest()[:12]}"


class LocalTeacher:
    """A Hugging Face causal LM in this process. Concurrent requests are gathered into batches (up to
    `batch_size`) and generated together in a worker thread, so the event loop stays free."""

    def __init__(self, settings: LocalSettings) -> None:
        if not (settings.model_dir / "config.json").is_file():
            raise UsageError(
                f"--teacher-model {settings.model_dir} is a directory without config.json; "
                "point it at a Hugging Face model directory"
            )
        if settings.batch_size < 1:
            raise UsageError("the local teacher's batch size must be at least 1")
        self.settings = settings
        self.name = local_teacher_name(settings.model_dir)
        self.context_length = 2048
        self.sent = SentCounter()  # generations, per leaf
        # (request, its answer, its owner): the batch loop counts each generation for the leaf that asked.
        self._queue: asyncio.Queue[tuple[TeacherRequest, asyncio.Future[TeacherResult], str]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._model: Any = None
        self._tokenizer: Any = None

    async def __aenter__(self) -> LocalTeacher:
        await asyncio.to_thread(self._load)
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run_batches())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self.settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
        tokenizer = AutoTokenizer.from_pretrained(self.settings.model_dir)
        tokenizer.padding_side = "left"  # generation continues at the right edge of every row
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(self.settings.model_dir)
        model = model.to(device)  # type: ignore[arg-type]
        model.eval()
        self._tokenizer, self._model = tokenizer, model
        positions = getattr(model.config, "max_position_embeddings", None)
        self.context_length = int(positions) if isinstance(positions, int) else 2048

    def _prompt_ids(self, messages: Sequence[tuple[str, str]]) -> list[int]:
        chat = [{"role": role, "content": content} for role, content in messages]
        text = self._tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    @property
    def requests_sent(self) -> int:
        """Generations, retries included."""
        return self.sent.total

    def count_tokens(self, messages: Sequence[tuple[str, str]]) -> int:
        return len(self._prompt_ids(messages))

    async def complete(self, request: TeacherRequest) -> TeacherResult:
        assert self._queue is not None, "use LocalTeacher as an async context manager"
        result = TeacherResult(request.key, request.stage)
        for _ in range(self.settings.output_retries + 1):
            future: asyncio.Future[TeacherResult] = asyncio.get_running_loop().create_future()
            await self._queue.put((request, future, REQUEST_OWNER.get()))
            answer = await future
            result.attempts += 1
            result.prompt_tokens += answer.prompt_tokens
            result.completion_tokens += answer.completion_tokens
            result.text, result.finish_reason, result.max_tokens = answer.text, answer.finish_reason, answer.max_tokens
            result.data, result.rescued, result.partial = answer.data, answer.rescued, answer.partial
            result.notes = list(answer.notes)
            result.error_kind, result.error = answer.error_kind, answer.error
            # Only an unreadable answer sampled at a temperature can come out differently when asked
            # again; a cut one would be cut again with the same settings, a greedy one would repeat.
            if result.ok or result.error_kind != PARSE or request.temperature <= 0:
                break
        return result

    async def _run_batches(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            await asyncio.sleep(0)  # let the other ready tasks enqueue theirs
            while len(batch) < self.settings.batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                answers = await asyncio.to_thread(self._generate, [request for request, _, _ in batch])
            except Exception as exc:  # a failed batch fails its requests, never the run
                answers = [
                    TeacherResult(r.key, r.stage, error_kind=REFUSED, error=f"{type(exc).__name__}: {exc}")
                    for r, _, _ in batch
                ]
            for (_, future, owner), answer in zip(batch, answers, strict=True):
                if answer.error_kind != TOO_LONG:  # a prompt that does not fit is never generated
                    self.sent.count(owner=owner)
                if not future.done():
                    future.set_result(answer)

    def _generate(self, requests: list[TeacherRequest]) -> list[TeacherResult]:
        """Generate a batch, one `generate` call per temperature (a judge at 0 is never sampled at 0.7)."""
        results: list[TeacherResult | None] = [None] * len(requests)
        for temperature in sorted({r.temperature for r in requests}):
            indices = [i for i, r in enumerate(requests) if r.temperature == temperature]
            for index, result in zip(indices, self._generate_group([requests[i] for i in indices]), strict=True):
                results[index] = result
        return [r for r in results if r is not None]

    def _generate_group(self, requests: list[TeacherRequest]) -> list[TeacherResult]:
        import torch

        results = [TeacherResult(r.key, r.stage) for r in requests]
        prompts: list[list[int]] = []
        runnable: list[int] = []
        for index, request in enumerate(requests):
            ids = self._prompt_ids(request.messages)
            if len(ids) + 1 > self.context_length:
                results[index].error_kind = TOO_LONG
                results[
                    index
                ].error = f"the prompt ({len(ids)} tokens) does not fit the context of {self.context_length}"
                continue
            prompts.append(ids)
            runnable.append(index)
        if not runnable:
            return results
        longest = max(map(len, prompts))
        max_new = min(max(requests[i].max_tokens for i in runnable), self.context_length - longest)
        pad = self._tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (longest - len(p)) + p for p in prompts], device=self._model.device)
        attention = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts], device=self._model.device)
        temperature = requests[runnable[0]].temperature
        with torch.no_grad():
            output = self._model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=max_new,
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                top_p=None,
                top_k=None,
                pad_token_id=pad,
            )
        eos = self._tokenizer.eos_token_id
        for row, index in enumerate(runnable):
            new_tokens = output[row, longest:].tolist()
            finished = eos in new_tokens
            if finished:
                new_tokens = new_tokens[: new_tokens.index(eos)]
            while new_tokens and new_tokens[-1] == pad:
                new_tokens.pop()
            result = results[index]
            result.prompt_tokens, result.completion_tokens = len(prompts[row]), len(new_tokens)
            result.text = self._tokenizer.decode(new_tokens, skip_special_tokens=True)
            result.finish_reason = "stop" if finished else "length"
            result.max_tokens = max_new
            result.take(requests[index].read(result.text, result.finish_reason), requests[index])
        return results
