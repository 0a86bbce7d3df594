"""The OpenAI-compatible HTTP teacher: an async client for `/v1/chat/completions` (vLLM, llama.cpp,
Ollama, `transformers serve`).

The client bounds concurrency with a semaphore, retries transient failures (connection errors,
timeouts, 429, 5xx) with exponential backoff and full jitter, honours `Retry-After`, and retries
malformed or truncated answers a few times. Prompt plus `max_tokens` never exceed the teacher's
context: it is read from `/v1/models` (`max_model_len`, as vLLM reports it) where the server says,
else from the configured value. The server's `finish_reason` and the raw answer text are kept in
the `TeacherResult`, for the samples' provenance.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from labtax.errors import LabtaxError, UsageError
from labtax.sdg.answer_parsing import parse_answer, validator_for
from labtax.sdg.teacher import PARSE, REFUSED, TOO_LONG, TRANSPORT, TRUNCATED, TeacherRequest, TeacherResult

API_KEY_ENV = "LABTAX_TEACHER_API_KEY"


def estimate_tokens(messages: Sequence[tuple[str, str]]) -> int:
    """An upper estimate of the prompt's tokens when the teacher's tokenizer is not at hand.

    BPE tokenizers average about 4 characters of English per token; dividing UTF-8 bytes by 3 leaves
    a margin for code, numbers and other scripts, and each message adds the chat template's markers.
    """
    return sum(math.ceil(len(content.encode("utf-8")) / 3) + 8 for _, content in messages) + 16


@dataclass(frozen=True)
class TeacherSettings:
    url: str
    model: str
    concurrency: int = 32
    timeout_s: float = 120.0
    max_retries: int = 6  # transient failures (connection, timeout, 429, 5xx) per request
    output_retries: int = 2  # malformed or truncated answers per request
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 300.0
    context_length: int | None = None  # used when the server does not report max_model_len
    default_context_length: int = 4096
    min_output_tokens: int = 64
    api_key: str | None = field(default=None, repr=False)

    def validate(self) -> None:
        if not re.match(r"^https?://[^/\s]+", self.url):
            raise UsageError(f"--teacher-url '{self.url}' is not an http(s) URL; e.g. http://localhost:8000/v1")
        if not self.model.strip():
            raise UsageError("--teacher-model is empty; name the model the server serves")
        if self.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if self.timeout_s <= 0:
            raise UsageError("the request timeout must be positive")
        if self.context_length is not None and self.context_length <= self.min_output_tokens:
            raise UsageError(f"--teacher-context must be larger than {self.min_output_tokens} tokens")


@dataclass(frozen=True)
class HttpResponse:
    status_code: int
    content: bytes
    retry_after: str | None = None

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class TeacherUnavailable(LabtaxError):
    """The teacher cannot be reached or refuses us before any generation request was sent."""


def transient_errors() -> tuple[type[BaseException], ...]:
    """Transport failures worth retrying: refused or dropped connections, protocol errors, timeouts."""
    import aiohttp

    return (aiohttp.ClientError, asyncio.TimeoutError)


def base_url(url: str) -> str:
    """The API root ending in /v1, whether the user gave `http://host:8000` or `http://host:8000/v1/`."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


class OpenAITeacher:
    """An async client for /v1/chat/completions. Use as `async with OpenAITeacher(settings) as teacher`."""

    def __init__(self, settings: TeacherSettings) -> None:
        settings.validate()
        self.settings = settings
        self.name = settings.model
        self.context_length = settings.context_length or settings.default_context_length
        self.context_source = "configured" if settings.context_length else "default"
        self.requests_sent = 0  # HTTP attempts, retries included
        self._api_key = settings.api_key if settings.api_key is not None else os.environ.get(API_KEY_ENV)
        self.structured_output = True  # False once the server refuses `response_format`
        self._session: Any = None
        self._base = base_url(settings.url)
        # One free-slot token per request allowed in flight: bounds concurrency like a semaphore.
        self._slots: asyncio.Queue[int] = asyncio.Queue()

    async def __aenter__(self) -> OpenAITeacher:
        import aiohttp

        # aiohttp: its per-request CPU cost (~0.3 ms here) is a third of httpx's, which mattered at
        # 640 requests/s on a small machine (benchmarks/teacher_throughput.py). One keep-alive pool
        # of --concurrency connections; the slot queue below bounds requests in flight.
        timeout = self.settings.timeout_s
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.settings.concurrency, limit_per_host=self.settings.concurrency),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=min(30.0, timeout), sock_read=timeout),
            auto_decompress=True,
        )
        for _ in range(self.settings.concurrency):
            self._slots.put_nowait(0)
        try:
            await self.probe()
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    async def _close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _send(self, method: str, path: str, body: bytes = b"") -> HttpResponse:
        """One HTTP exchange. Raises one of `transient_errors()` when the transport fails."""
        assert self._session is not None, "use `async with OpenAITeacher(...)`"
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        if body:
            headers["Content-Type"] = "application/json"
        async with self._session.request(method, self._base + path, data=body or None, headers=headers) as response:
            content = await response.read()
            return HttpResponse(response.status, content, response.headers.get("Retry-After"))

    def count_tokens(self, messages: Sequence[tuple[str, str]]) -> int:
        return estimate_tokens(messages)

    async def probe(self) -> None:
        """Check the server is up, the key works and the model is served; learn its context length."""
        response = None
        for attempt in range(3):
            try:
                response = await self._send("GET", "/models")
                break
            except transient_errors() as exc:
                if attempt == 2:
                    raise TeacherUnavailable(
                        f"cannot reach the teacher at {self.settings.url} ({type(exc).__name__}: {exc}); "
                        "check --teacher-url and that the server is running"
                    ) from None
                await asyncio.sleep(self._backoff(attempt))
        assert response is not None
        if response.status_code in (401, 403):
            raise TeacherUnavailable(
                f"the teacher at {self.settings.url} refused the API key (HTTP {response.status_code}); "
                f"set {API_KEY_ENV}"
            )
        if response.status_code != 200:
            return  # some servers have no /models; fall back on the configured context length
        try:
            models = response.json().get("data", [])
        except (ValueError, AttributeError):
            return
        served = {m.get("id"): m for m in models if isinstance(m, dict)}
        if served and self.settings.model not in served:
            raise TeacherUnavailable(
                f"the teacher at {self.settings.url} does not serve '{self.settings.model}'; "
                f"it serves: {', '.join(sorted(map(str, served)))}"
            )
        entry = served.get(self.settings.model, {})
        # vLLM and SGLang say max_model_len; some other servers context_length or max_context_length.
        reported = next(
            (entry[k] for k in ("max_model_len", "context_length", "max_context_length") if k in entry), None
        )
        if isinstance(reported, int) and reported > 0:
            self.context_length = reported
            self.context_source = "server"

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: uniform over [cap/2, cap], cap = base * 2^attempt (bounded).

        Half the cap is kept so that a retry never comes back at once; the random half spreads the
        clients that failed together (a 429 storm) over time."""
        cap = min(self.settings.backoff_max_s, self.settings.backoff_base_s * (2**attempt))
        return random.uniform(cap / 2, cap)

    def _retry_after(self, value: str | None) -> float | None:
        if not value:
            return None
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None  # neither seconds nor an HTTP date: back off as usual
            seconds = when.timestamp() - time.time()
        return max(0.0, min(seconds, self.settings.retry_after_max_s))

    def fit_max_tokens(self, request: TeacherRequest) -> int:
        """The largest completion that fits with the prompt, up to what the request asks for."""
        room = self.context_length - self.count_tokens(request.messages)
        return min(request.max_tokens, room)

    async def complete(self, request: TeacherRequest) -> TeacherResult:
        result = TeacherResult(request.key, request.stage)
        max_tokens = self.fit_max_tokens(request)
        if max_tokens < self.settings.min_output_tokens:
            result.error_kind, result.error = (
                TOO_LONG,
                (
                    f"the prompt (about {self.count_tokens(request.messages)} tokens) leaves no room for an answer "
                    f"in the teacher's context of {self.context_length} tokens"
                ),
            )
            return result
        validator = validator_for(request.schema) if request.schema is not None else None
        payload: dict[str, Any] = {
            "model": self.settings.model,
            "messages": request.chat(),
            "max_tokens": max_tokens,
            "temperature": request.temperature,
            "seed": request.seed,
        }
        structured = {
            "type": "json_schema",
            "json_schema": {"name": request.stage, "schema": request.schema, "strict": True},
        }
        transient = output_failures = 0
        while True:
            result.attempts += 1
            delay: float | None = None
            try:
                slot = await self._slots.get()
                try:
                    # Built once the slot is ours, so that a server's refusal of structured output,
                    # learnt meanwhile from another request, already applies.
                    sent_structured = self.structured_output and request.schema is not None
                    body = json.dumps({**payload, "response_format": structured} if sent_structured else payload)
                    self.requests_sent += 1
                    response = await self._send("POST", "/chat/completions", body.encode("utf-8"))
                finally:
                    self._slots.put_nowait(slot)
                status = response.status_code
                if status == 200:
                    outcome = self._read_answer(response, validator, result)
                    if outcome is None:
                        return result
                    output_failures += 1
                    if output_failures > self.settings.output_retries:
                        return result
                    continue
                if status == 429 or status >= 500:
                    error = f"HTTP {status}: {response.text[:200]}"
                    delay = self._retry_after(response.retry_after)
                elif status == 400 and _context_overflow(response.text) and "max_tokens" in payload:
                    smaller = _room_from_error(response.text, self.context_length)
                    if smaller is not None and 1 <= smaller < max_tokens:
                        max_tokens = smaller
                        payload["max_tokens"] = smaller
                        continue
                    result.error_kind, result.error = TOO_LONG, f"HTTP 400: {response.text[:300]}"
                    return result
                elif status == 400 and sent_structured and _rejects_structured_output(response.text):
                    # A server without structured output: ask without it from now on; the fallback
                    # parser and the schema check still apply to every answer.
                    self.structured_output = False
                    continue
                else:
                    result.error_kind, result.error = REFUSED, f"HTTP {status}: {response.text[:300]}"
                    return result
            except transient_errors() as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
            transient += 1
            if transient > self.settings.max_retries:
                result.error_kind, result.error = TRANSPORT, f"gave up after {result.attempts} attempts: {error}"
                return result
            await asyncio.sleep(delay if delay is not None else self._backoff(transient - 1))

    def _read_answer(self, response: Any, validator: Any, result: TeacherResult) -> str | None:
        """Fill `result` from a 200 response; None when it holds a valid answer, else the error kind."""
        try:
            body = response.json()
            choice = body["choices"][0]
            text = choice["message"]["content"] or ""
            finish = choice.get("finish_reason") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            result.error_kind, result.error = (
                PARSE,
                f"the response body is not a chat completion: {response.text[:200]}",
            )
            return PARSE
        usage = body.get("usage") or {}
        result.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        result.completion_tokens += int(usage.get("completion_tokens") or 0)
        result.text, result.finish_reason = text, finish
        if validator is None:  # free text: the answer as it came, cut off at max_tokens or not
            result.data, result.error_kind, result.error = {"text": text}, None, None
            return None
        if finish == "length":
            result.error_kind, result.error = TRUNCATED, "the answer was cut off at max_tokens (finish_reason=length)"
            return TRUNCATED
        data, rescued, problem = parse_answer(text, validator)
        if data is None:
            result.error_kind, result.error = PARSE, problem
            return PARSE
        result.data, result.rescued, result.error_kind, result.error = data, rescued, None, None
        return None


_OVERFLOW = re.compile(r"maximum context length|context length|context_length_exceeded|too many tokens", re.I)


def _rejects_structured_output(text: str) -> bool:
    return bool(re.search(r"response_format|json_schema|guided|structured output", text, re.I))


def _context_overflow(text: str) -> bool:
    return bool(_OVERFLOW.search(text))


def _room_from_error(text: str, context_length: int) -> int | None:
    """vLLM says '... maximum context length is 4096 tokens ... (3900 in the messages, 512 in the completion)'."""
    limit = re.search(r"maximum context length is (\d+)", text)
    prompt = re.search(r"(\d+) in the messages", text) or re.search(r"(\d+) (?:input|prompt) tokens", text)
    if not prompt:
        return None
    total = int(limit.group(1)) if limit else context_length
    return total - int(prompt.group(1))
