"""The OpenAI-compatible HTTP teacher: an async client for `/v1/chat/completions` on one server or
several replicas of the same model (vLLM, llama.cpp, Ollama, `transformers serve`).

- **Replicas.** Each request goes to the replica with the fewest requests outstanding (at most
  `concurrency` each). A replica that fails (connection error, timeout, 429, 5xx) is backed off
  (exponentially, `Retry-After` honoured) while the others carry on; the request is retried elsewhere.
- **Deadlines.** Every attempt has a total timeout (a server that trickles bytes cannot hold it open),
  every request a deadline over all its attempts, and when no replica has answered anything for one
  request deadline the run stops with `TeacherGone`: one message, the work so far kept in the journals.
- **Answers.** A 200 whose body is not a chat completion (no choices, non-string content, non-numeric
  usage) is a failed request like any other. An answer cut at `max_tokens` keeps its complete items;
  when it has none it is asked once more with twice the room (never again with the same settings). An
  unreadable answer is asked again with another seed; a server that answers a new seed with the same
  text ignores sampling, and is not asked again for it.
- **Context.** Prompt plus `max_tokens` never exceed the teacher's context: `max_model_len` from
  `/v1/models` (vLLM) where a replica says, else the configured value.
- **Secrets.** Error bodies are scrubbed (the API key, `Authorization` headers, bearer tokens, key-like
  fields) before they are stored or printed.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from labtax.errors import LabtaxError, UsageError
from labtax.sdg.teacher import (
    NOTE_MAX_TOKENS,
    NOTE_SAMPLING,
    NOTE_STRUCTURED,
    PARSE,
    REFUSED,
    TOO_LONG,
    TRANSPORT,
    TRUNCATED,
    SentCounter,
    TeacherRequest,
    TeacherResult,
    estimate_tokens,
)

API_KEY_ENV = "LABTAX_TEACHER_API_KEY"
__all__ = ["API_KEY_ENV", "OpenAITeacher", "TeacherGone", "TeacherSettings", "TeacherUnavailable", "estimate_tokens"]


@dataclass(frozen=True)
class TeacherSettings:
    url: str | tuple[str, ...]  # one API root, or several replicas of the same model
    model: str
    concurrency: int = 32  # requests in flight per replica
    timeout_s: float = 120.0  # one attempt, connection to the last byte of the answer
    request_deadline_s: float = 300.0  # one request, all its attempts; also how long a silent teacher is waited for
    max_retries: int = 6  # transient failures (connection, timeout, 429, 5xx) per request
    output_retries: int = 1  # unreadable answers per request, each with another seed
    length_retries: int = 1  # answers cut at max_tokens with nothing usable, each with twice the room
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 300.0
    context_length: int | None = None  # used when no replica reports max_model_len
    default_context_length: int = 4096
    min_output_tokens: int = 64  # a request with less room than this (or than it asked for) is not sent
    api_key: str | None = field(default=None, repr=False)

    @property
    def urls(self) -> tuple[str, ...]:
        return (self.url,) if isinstance(self.url, str) else tuple(self.url)

    def validate(self) -> None:
        if not self.urls:
            raise UsageError("--teacher-url is needed (an OpenAI-compatible server, e.g. http://localhost:8000/v1)")
        for url in self.urls:
            if not re.match(r"^https?://[^/\s]+", url):
                raise UsageError(f"--teacher-url '{url}' is not an http(s) URL; e.g. http://localhost:8000/v1")
        if len(set(map(base_url, self.urls))) != len(self.urls):
            raise UsageError("--teacher-url names the same server twice; give each replica once")
        if not self.model.strip():
            raise UsageError("--teacher-model is empty; name the model the server serves")
        if self.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if self.timeout_s <= 0 or self.request_deadline_s <= 0:
            raise UsageError("the request timeout and deadline must be positive")
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


class TeacherGone(LabtaxError):
    """No replica answered anything for a whole request deadline: the run stops (and resumes later)."""

    exit_code = 1


def transient_errors() -> tuple[type[BaseException], ...]:
    """Transport failures worth retrying: refused or dropped connections, protocol errors, timeouts."""
    import aiohttp

    return (aiohttp.ClientError, asyncio.TimeoutError)


def base_url(url: str) -> str:
    """The API root ending in /v1, whether the user gave `http://host:8000` or `http://host:8000/v1/`."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


# --- scrubbing ------------------------------------------------------------------------------------

_SECRET_PATTERNS = (
    re.compile(
        r"(?i)(authorization|proxy-authorization|x-api-key|api[-_ ]?key|access[-_ ]?token|token|secret)"
        r"(\"?\s*[:=]\s*\"?)(?:bearer\s+|basic\s+)?[^\s\"',;}]+"
    ),
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\b(?:sk|hf|ghp|gho|github_pat|xox[abp])[-_][A-Za-z0-9_-]{8,}"),
    re.compile(r"(?i)(https?://)[^/\s:@]+:[^/\s@]+@"),
)


def scrub(text: str, secrets: Sequence[str] = ()) -> str:
    """`text` with the given secrets and anything that looks like a credential replaced by `***`."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = _SECRET_PATTERNS[0].sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    text = _SECRET_PATTERNS[1].sub(lambda m: f"{m.group(1)} ***", text)
    text = _SECRET_PATTERNS[2].sub("***", text)
    return _SECRET_PATTERNS[3].sub(lambda m: f"{m.group(1)}***@", text)


# --- replicas -------------------------------------------------------------------------------------


@dataclass
class Replica:
    url: str  # as the user gave it (for messages)
    base: str  # the API root ending in /v1
    order: int
    outstanding: int = 0
    down_until: float = 0.0  # monotonic time before which no request goes here
    failures: int = 0  # consecutive transport failures
    requests: int = 0  # HTTP attempts sent here
    last_error: str = ""

    def up(self, now: float) -> bool:
        return self.down_until <= now


@dataclass(frozen=True)
class _Attempt:
    response: HttpResponse | None
    error: str = ""  # transport failure
    retry_after: float | None = None


class OpenAITeacher:
    """An async client for /v1/chat/completions. Use as `async with OpenAITeacher(settings) as teacher`."""

    def __init__(self, settings: TeacherSettings) -> None:
        settings.validate()
        self.settings = settings
        self.name = settings.model
        self.context_length = settings.context_length or settings.default_context_length
        self.context_source = "configured" if settings.context_length else "default"
        self.replicas = [Replica(url, base_url(url), n) for n, url in enumerate(settings.urls)]
        self.sent = SentCounter()  # HTTP attempts, retries and hedges included, per leaf
        self.structured_output = True  # False once the server refuses `response_format`
        self.samples_freely = True  # False once a new seed gave the same text: retrying a bad answer is futile
        self.notes: list[str] = []  # things said once about the teacher (a replica down at the start, ...)
        self._api_key = settings.api_key if settings.api_key is not None else os.environ.get(API_KEY_ENV)
        self._session: Any = None
        self._changed: asyncio.Condition | None = None
        self._last_answer = time.monotonic()

    @property
    def url(self) -> str:
        return ", ".join(r.url for r in self.replicas)

    async def __aenter__(self) -> OpenAITeacher:
        import aiohttp

        # aiohttp: its per-request CPU cost (~0.3 ms here) is a third of httpx's (benchmarks/README.md).
        # One keep-alive pool of `concurrency` connections per replica; _acquire bounds requests in flight.
        per_host = self.settings.concurrency
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=per_host * len(self.replicas), limit_per_host=per_host),
            timeout=aiohttp.ClientTimeout(
                total=self.settings.timeout_s, sock_connect=min(30.0, self.settings.timeout_s)
            ),
            auto_decompress=True,
            trace_configs=[self._counting()],
        )
        self._changed = asyncio.Condition()
        try:
            await self.probe()
        except BaseException:
            await self._close()
            raise
        self._last_answer = time.monotonic()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    def _counting(self) -> Any:
        """Count a completion request when its bytes go to the connection, for the leaf that asked.

        Not when it is attempted: an attempt cancelled before it was written (its leaf settled, a hedge
        lost) never reaches the server, and the counts must be what the server saw. aiohttp writes the
        headers with a small body in one write, right after this callback, which does not suspend.
        """
        import aiohttp

        async def written(_session: Any, context: Any, params: Any) -> None:
            if params.method == "POST" and not getattr(context, "counted", False):
                context.counted = True  # once per request, however many chunks its body takes
                self.sent.count()

        trace = aiohttp.TraceConfig()
        trace.on_request_chunk_sent.append(written)
        return trace

    async def _close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _scrub(self, text: str) -> str:
        return scrub(text, [self._api_key] if self._api_key else [])

    async def _send(
        self, replica: Replica, method: str, path: str, body: bytes = b"", timeout: float | None = None
    ) -> HttpResponse:
        """One HTTP exchange. Raises one of `transient_errors()` when the transport fails."""
        import aiohttp

        assert self._session is not None, "use `async with OpenAITeacher(...)`"
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        if body:
            headers["Content-Type"] = "application/json"
        options: dict[str, Any] = {}
        if timeout is not None:
            options["timeout"] = aiohttp.ClientTimeout(total=timeout, sock_connect=min(30.0, timeout))
        async with self._session.request(
            method, replica.base + path, data=body or None, headers=headers, **options
        ) as response:
            content = await response.read()
            return HttpResponse(response.status, content, response.headers.get("Retry-After"))

    @property
    def requests_sent(self) -> int:
        """HTTP attempts, retries and hedges included."""
        return self.sent.total

    def count_tokens(self, messages: Sequence[tuple[str, str]]) -> int:
        return estimate_tokens(messages)

    # --- start-up -----------------------------------------------------------------------------------

    async def probe(self) -> None:
        """Check every replica is up, the key works and the model is served; learn the context length.

        A replica that cannot be reached is backed off with a note while at least one answers; a wrong
        key or a replica serving another model is an error (a misconfigured fleet)."""
        outcomes = await asyncio.gather(*(self._probe_one(r) for r in self.replicas))
        reachable = [r for r, ok in zip(self.replicas, outcomes, strict=True) if ok]
        if not reachable:
            first = self.replicas[0]
            where = "any of " + self.url if len(self.replicas) > 1 else f"the teacher at {first.url}"
            raise TeacherUnavailable(
                f"cannot reach {where} ({first.last_error}); check --teacher-url and that the server is running"
            )
        for replica in self.replicas:
            if replica not in reachable:
                replica.down_until = time.monotonic() + self.settings.backoff_max_s
                self.notes.append(
                    f"replica {replica.url} did not answer at the start ({replica.last_error}); it is tried again later"
                )

    async def _probe_one(self, replica: Replica) -> bool:
        response = None
        for attempt in range(3):
            try:
                response = await self._send(replica, "GET", "/models", timeout=min(30.0, self.settings.timeout_s))
                break
            except transient_errors() as exc:
                replica.last_error = self._scrub(f"{type(exc).__name__}: {exc}")[:300]
                if attempt == 2:
                    return False
                await asyncio.sleep(self._backoff(attempt))
        assert response is not None
        if response.status_code in (401, 403):
            raise TeacherUnavailable(
                f"the teacher at {replica.url} refused the API key (HTTP {response.status_code}); set {API_KEY_ENV}"
            )
        if response.status_code != 200:
            return True  # some servers have no /models; fall back on the configured context length
        try:
            models = response.json().get("data", [])
        except (ValueError, AttributeError):
            return True
        if not isinstance(models, list):
            return True
        served = {m.get("id"): m for m in models if isinstance(m, dict)}
        if served and self.settings.model not in served:
            raise TeacherUnavailable(
                f"the teacher at {replica.url} does not serve '{self.settings.model}'; "
                f"it serves: {', '.join(sorted(map(str, served)))}"
            )
        entry = served.get(self.settings.model, {})
        # vLLM and SGLang say max_model_len; some other servers context_length or max_context_length.
        reported = next(
            (entry[k] for k in ("max_model_len", "context_length", "max_context_length") if k in entry), None
        )
        if isinstance(reported, int) and not isinstance(reported, bool) and reported > 0:
            # Replicas of one model should agree; the smallest is what every replica can take.
            if self.context_source != "server" or reported < self.context_length:
                self.context_length = reported
            self.context_source = "server"
        return True

    # --- dispatch -----------------------------------------------------------------------------------

    async def _acquire(self) -> Replica:
        """The replica with the fewest requests outstanding among those up and below `concurrency`."""
        assert self._changed is not None
        async with self._changed:
            while True:
                now = time.monotonic()
                ready = [r for r in self.replicas if r.up(now) and r.outstanding < self.settings.concurrency]
                if ready:
                    replica = min(ready, key=lambda r: (r.outstanding, r.order))
                    replica.outstanding += 1
                    return replica
                waking = [r.down_until for r in self.replicas if not r.up(now)]
                timeout = max(0.001, min(waking) - now) if waking else None
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout)
                except TimeoutError:
                    pass

    async def _release(self, replica: Replica) -> None:
        assert self._changed is not None
        async with self._changed:
            replica.outstanding -= 1
            self._changed.notify(1)

    def _failed(self, replica: Replica, error: str, retry_after: float | None) -> None:
        replica.failures += 1
        replica.last_error = error
        pause = retry_after if retry_after is not None else self._backoff(replica.failures - 1)
        # Never longer than half a request deadline: a teacher that is back must be noticed in time.
        pause = min(pause, self.settings.request_deadline_s / 2)
        replica.down_until = max(replica.down_until, time.monotonic() + pause)

    def _answered(self, replica: Replica) -> None:
        replica.failures = 0
        self._last_answer = time.monotonic()

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

    async def _post(self, make_body: Callable[[], bytes], deadline: float) -> tuple[Replica, _Attempt]:
        replica = await self._acquire()
        try:
            body = make_body()
            replica.requests += 1
            timeout = max(0.05, min(self.settings.timeout_s, deadline - time.monotonic()))
            try:
                response = await self._send(replica, "POST", "/chat/completions", body, timeout)
            except transient_errors() as exc:
                kind = "timed out" if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__
                error = f"{kind} after {timeout:.3g} s" if isinstance(exc, asyncio.TimeoutError) else f"{kind}: {exc}"
                error = f"{replica.url}: {self._scrub(error)[:300]}"
                self._failed(replica, error, None)
                return replica, _Attempt(None, error)
            status = response.status_code
            if status == 429 or status >= 500:
                error = f"{replica.url}: HTTP {status}: {self._scrub(response.text[:300])}"
                retry_after = self._retry_after(response.retry_after)
                self._failed(replica, error, retry_after)
                return replica, _Attempt(None, error, retry_after)
            self._answered(replica)
            return replica, _Attempt(response)
        finally:
            await self._release(replica)

    def _check_alive(self, last_error: str) -> None:
        silent = time.monotonic() - self._last_answer
        if silent > self.settings.request_deadline_s:
            raise TeacherGone(
                f"the teacher ({self.url}) has not answered for {silent:.0f} s "
                f"(last error: {last_error}); the answers so far are kept: re-run the same command to resume"
            )

    # --- one request --------------------------------------------------------------------------------

    def fit_max_tokens(self, request: TeacherRequest) -> int:
        """The largest completion that fits with the prompt, up to what the request asks for."""
        room = self.context_length - self.count_tokens(request.messages)
        return min(request.max_tokens, room)

    async def complete(self, request: TeacherRequest) -> TeacherResult:
        result = TeacherResult(request.key, request.stage)
        max_tokens = self.fit_max_tokens(request)
        # The minimum answer is fitted to the request: one that asks for 32 tokens is sent with 32.
        minimum = min(self.settings.min_output_tokens, request.max_tokens)
        if max_tokens < minimum:
            prompt = self.count_tokens(request.messages)
            result.error_kind, result.error = (
                TOO_LONG,
                f"the prompt (about {prompt} tokens) leaves {max(0, max_tokens)} tokens for an answer of at least "
                f"{minimum} in the teacher's context of {self.context_length} tokens",
            )
            return result
        payload: dict[str, Any] = {
            "model": self.settings.model,
            "messages": request.chat(),
            "max_tokens": max_tokens,
            "temperature": request.temperature,
            "seed": request.seed,
        }
        if request.stop:
            payload["stop"] = list(request.stop)
        deadline = time.monotonic() + self.settings.request_deadline_s
        transient = unreadable = cut = 0
        previous_text: str | None = None
        error = ""
        while True:
            result.attempts += 1
            sent: list[bool] = []

            def body(sent: list[bool] = sent) -> bytes:
                # Built once a slot is ours, so that a refusal of structured output learnt meanwhile
                # from another request already applies.
                structured = request.schema is not None and self.structured_output
                sent.append(structured)
                content = dict(payload)
                if structured:
                    content["response_format"] = {
                        "type": "json_schema",
                        "json_schema": {"name": request.stage, "schema": request.schema, "strict": True},
                    }
                return json.dumps(content).encode("utf-8")

            replica, attempt = await self._post(body, deadline)
            sent_structured = bool(sent and sent[-1])
            response = attempt.response
            if response is None:
                # The replica that failed is backed off (_failed); _acquire waits for it, or sends the
                # retry to another replica at once.
                error = attempt.error
                transient += 1
                self._check_alive(error)
                next_chance = min(r.down_until for r in self.replicas)
                if transient > self.settings.max_retries or next_chance > deadline:
                    result.error_kind = TRANSPORT
                    result.error = f"gave up after {result.attempts} attempts: {error}"
                    return result
                continue
            status = response.status_code
            if status == 200:
                self._read(response, request, result, int(payload["max_tokens"]))
                if result.ok:
                    return result
                if result.error_kind == TRUNCATED:
                    # Never again with the same settings: twice the room once, where the context allows.
                    bigger = min(2 * int(payload["max_tokens"]), self.fit_max_tokens(_with_max(request, 10**9)))
                    cut += 1
                    if cut > self.settings.length_retries or bigger <= int(payload["max_tokens"]):
                        return result
                    payload["max_tokens"] = bigger
                    continue
                if previous_text is not None and result.text == previous_text and result.text:
                    self.samples_freely = False
                    result.note(NOTE_SAMPLING)
                unreadable += 1
                if unreadable > self.settings.output_retries or not self.samples_freely:
                    return result
                previous_text = result.text
                payload["seed"] = (request.seed + unreadable) % 2**31  # the same seed would give the same text
                continue
            text = self._scrub(response.text[:300])
            if status == 400 and _context_overflow(text):
                smaller = _room_from_error(response.text, self.context_length)
                if smaller is not None and 1 <= smaller < int(payload["max_tokens"]):
                    payload["max_tokens"] = smaller
                    continue
                result.error_kind, result.error = TOO_LONG, f"HTTP 400: {text}"
                return result
            if status == 400 and sent_structured and _rejects_structured_output(text):
                # A server without structured output: ask without it from now on; the fallback
                # parser and the schema check still apply to every answer.
                self.structured_output = False
                result.note(NOTE_STRUCTURED)
                continue
            result.error_kind, result.error = REFUSED, f"HTTP {status} from {replica.url}: {text}"
            return result

    def _read(self, response: HttpResponse, request: TeacherRequest, result: TeacherResult, max_tokens: int) -> None:
        """Fill `result` from a 200 response; a body that is not a chat completion is a PARSE failure."""
        body: Any = None
        try:
            body = response.json()
        except (ValueError, RecursionError):
            pass
        choice = _first_choice(body)
        text = choice.get("message", {}).get("content") if isinstance(choice.get("message"), dict) else None
        finish = choice.get("finish_reason")
        if not isinstance(text, str) or not (finish is None or isinstance(finish, str)):
            result.data, result.text, result.finish_reason = None, "", ""
            result.error_kind, result.error = (
                PARSE,
                f"the response body is not a chat completion: {self._scrub(response.text[:200])}",
            )
            return
        usage = body.get("usage") if isinstance(body, dict) else None
        prompt_tokens, completion_tokens = _count(usage, "prompt_tokens"), _count(usage, "completion_tokens")
        result.prompt_tokens += prompt_tokens
        result.completion_tokens += completion_tokens
        result.text, result.finish_reason, result.max_tokens = text, finish or "", max_tokens
        if completion_tokens > max_tokens:
            result.note(NOTE_MAX_TOKENS)
        result.take(request.read(text, result.finish_reason), request)


def _first_choice(body: Any) -> dict[str, Any]:
    if isinstance(body, dict) and isinstance(body.get("choices"), list) and body["choices"]:
        first = body["choices"][0]
        if isinstance(first, dict):
            return first
    return {}


def _count(usage: Any, name: str) -> int:
    """A token count from `usage`; 0 for anything that is not a non-negative whole number."""
    value = usage.get(name) if isinstance(usage, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value < 0:
        return 0
    return int(min(value, 10**9))


def _with_max(request: TeacherRequest, max_tokens: int) -> TeacherRequest:
    from dataclasses import replace

    return replace(request, max_tokens=max_tokens)


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
