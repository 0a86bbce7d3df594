"""A stand-in teacher: a real HTTP server on 127.0.0.1 speaking the subset of the OpenAI API labtax uses.

`GET /v1/models` and `POST /v1/chat/completions`. It recognises the generation stage from a phrase of
its prompt and answers with plausible free text in the format the stage asks for (numbered lists,
tagged blocks, Q:/A: pairs, `Explanation: ... Score: N` verdicts), built from the prompt and the
request's `seed`, so a whole `labtax generate` run works offline; it honours `stop` (unless
`ignore_stop`), and a request with `response_format` gets `{"text": ...}` JSON. Faults can be
injected in order (`faults=["500", "429", "drop", ...]`) or at random rates (`fault_rates`):

    500          HTTP 500                         429        HTTP 429 with Retry-After
    drop         the connection closes with no response
    malformed    an answer in no format at all    prose      JSON wrapped in prose (schema requests)
    truncate     finish_reason=length, half the answer
    slow         the answer comes after `slow_s` seconds
    trickle      headers, then a byte every 50 ms for `slow_s` seconds, never a whole body
    echo_auth    HTTP 500 whose body echoes the request headers (Authorization included)
    bad_content  a 200 whose `content` is not a string       bad_usage  non-numeric `usage`
    no_choices   a 200 without choices

Use it from a test (`with start_server() as server: server.url ...`) or as a script:
`python -m tests.openai_server --port 8000 [--latency 0.05]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# What a small teacher was writing when max_tokens cut it, per stage (`cut_stages`).
CUT_ITEM = {"knowledge_qa": "Q: What else does the passage say about the", "freeform_instructions": "9. Write a"}

FAULTS = (
    "500", "429", "drop", "malformed", "prose", "truncate", "slow", "trickle", "echo_auth",
    "bad_content", "bad_usage", "no_choices",
)  # fmt: skip

Answer = Callable[[str, dict[str, Any]], str]  # (stage, request body) -> the answer's text


@dataclass
class ServerState:
    model: str = "fake-teacher"
    max_model_len: int | None = 8192
    latency_s: float = 0.0
    slow_s: float = 2.0
    retry_after: str = "0"
    api_key: str | None = None
    ignore_response_format: bool = False  # answer in prose-wrapped JSON, as servers without structured output do
    ignore_stop: bool = False  # write on past the stop sequences, as some servers do
    reject_response_format: bool = False  # HTTP 400 for any request carrying response_format
    context_limit: int | None = None  # enforce a context (prompt ~ characters / 4), refusing as vLLM does
    faults: list[str] = field(default_factory=list)
    fault_rates: dict[str, float] = field(default_factory=dict)
    answers: dict[str, Answer] = field(default_factory=dict)  # stage -> custom answer
    # Stages whose every answer runs into max_tokens, as a small teacher's do: the whole answer, then the
    # start of one more item, cut (finish_reason=length).
    cut_stages: tuple[str, ...] = ()
    seed: int = 0
    # observations
    chat_requests: int = 0  # every POST /v1/chat/completions, faulted ones included
    in_flight: int = 0  # POSTs being handled right now
    peak_in_flight: int = 0  # the most handled at once: the client's concurrency as the server sees it
    stages: Counter[str] = field(default_factory=Counter)
    faults_served: Counter[str] = field(default_factory=Counter)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    keep_bodies: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: int = 0

    def next_fault(self, rng: random.Random) -> str | None:
        with self.lock:
            if self.faults:
                return self.faults.pop(0)
        for fault, rate in self.fault_rates.items():
            if rng.random() < rate:
                return fault
        return None


# --- plausible answers, per stage -----------------------------------------------------------------


def _prompt(body: dict[str, Any]) -> str:
    """The last user message: the request itself (judges show worked examples in earlier turns)."""
    users = [str(m.get("content", "")) for m in body.get("messages", []) if m.get("role") == "user"]
    return users[-1] if users else ""


def _section(prompt: str, header: str) -> str:
    """The text after `header:` up to the next blank line followed by a header-like line."""
    end = r"\n\n(?:[A-Z][\w ]*:|Reply as|Write \d|Write only|Keep it|Rate the|A good|Is everything|Score how|Put each)"
    match = re.search(rf"^{re.escape(header)}:\s*\n(.*?)(?:{end}|\Z)", prompt, re.S | re.M)
    if match:
        return match.group(1).strip()
    inline = re.search(rf"^{re.escape(header)}:\s*(.+)$", prompt, re.M)
    return inline.group(1).strip() if inline else ""


_MARKERS = {
    "Candidate instruction:": "instruction_judge",
    "Rate the response:": "pair_judge",
    "new instructions for the same task": "freeform_instructions",
    "new contexts of the same kind": "grounded_contexts",
    "can be done using only the context.": "grounded_questions",
    "can be done using\nonly the context": "grounded_question_judge",
    "question-answer pairs about facts": "knowledge_qa",
    "Is everything the answer says supported": "knowledge_faithfulness",
    "Score how well the answer addresses": "knowledge_relevance",
    "A good question is clear": "knowledge_question",
    "Write only the response": "response",
    "multiple-choice questions about facts": "eval_mcq",
    "Answer to rate:": "eval_judge",
    "agrees with the reference answer": "precheck_judge",  # labtax precheck --judge-url
}


def _stage_from_prompt(body: dict[str, Any]) -> str:
    """The stage, from a phrase of its prompt."""
    prompt = _prompt(body)
    return next((stage for marker, stage in _MARKERS.items() if marker in prompt), "unknown")


def _count(prompt: str) -> int:
    match = re.search(r"Write (\d+) ", prompt)
    return max(1, min(int(match.group(1)), 20)) if match else 3


def _digest(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)


def _verdict(explanation: str, score: object, word: str = "Score") -> str:
    return f"Explanation: {explanation}\n{word}: {score}"


def default_answer(stage: str, body: dict[str, Any], serial: int) -> str:
    """A plausible free-text answer in the format the stage's prompt asks for."""
    prompt = _prompt(body)
    serial %= 100_000
    count = _count(prompt)
    if stage == "freeform_instructions":
        task = _section(prompt, "Task")[:60]
        lines = [
            f"{i + 1}. Instruction {serial}.{i}: show the skill '{task}' on case {serial * 31 + i}."
            for i in range(count)
        ]
        return "Here are the instructions:\n" + "\n".join(lines)
    if stage == "grounded_contexts":
        blocks = [
            f"[Start of Context]\nContext {serial}.{i}. Item A costs {i + 3} euros; "
            f"item B costs {serial % 7 + 2} euros.\n[End of Context]"
            for i in range(count)
        ]
        return "\n\n".join(blocks)
    if stage == "grounded_questions":
        context = _section(prompt, "Context")
        return "\n".join(f"{i + 1}. Question {i} about: {context[:40]}" for i in range(count))
    if stage in ("instruction_judge", "grounded_question_judge"):
        instruction = _section(prompt, "Candidate instruction") or _section(prompt, "Instruction")
        keep = _digest(instruction) % 5 != 0  # drop about one in five, deterministically
        return _verdict("clear and on task" if keep else "too vague", 1 if keep else 0)
    if stage == "response":
        instruction = _section(prompt, "Instruction")
        return f"A careful answer (take {serial % 97}) to: {instruction}"
    if stage == "pair_judge":
        response = _section(prompt, "Response")
        score = (1, 2, 3, 3)[_digest(response) % 4]  # about a quarter are dropped
        return _verdict(f"rated {score}", score)
    if stage == "knowledge_qa":
        passage = _section(prompt, "Passage")
        sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", passage) if len(s.strip()) > 20] or [
            passage or "nothing"
        ]
        pairs = []
        for i in range(count):
            fact = sentences[(serial + i) % len(sentences)]
            pairs.append(f"Q: What is stated about '{' '.join(fact.split()[:6])}' ({serial}.{i})?\nA: {fact}")
        return "\n\n".join(pairs)
    if stage == "knowledge_faithfulness":
        question = _section(prompt, "Question")
        return _verdict("checked", "NO" if _digest(question) % 7 == 0 else "YES", "Answer")
    if stage == "knowledge_relevance":
        question = _section(prompt, "Question")
        return _verdict("addresses it", 2 if _digest(question) % 9 else 1)
    if stage == "knowledge_question":
        question = _section(prompt, "Question")
        return _verdict("clear", 0 if _digest(question + "q") % 11 == 0 else 1)
    if stage == "eval_mcq":
        # Questions whose right choice is a sentence of the passage, the others sentences from elsewhere in it
        # reworded: a model that read the document prefers the true sentence.
        passage = _section(prompt, "Passage")
        sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", passage) if len(s.split()) >= 6] or [passage]
        questions = []
        for i in range(min(count, len(sentences))):
            fact = sentences[i]
            wrong = [f"It is not true that {sentences[(i + k) % len(sentences)].lower()}" for k in (1, 2, 3)]
            wrong = [w if w != fact else f"{w} (no)" for w in wrong]
            questions.append(
                {
                    "question": f"Which statement does the passage make ({i + 1})?",
                    "choices": [fact, *wrong],
                    "answer": "A",
                }
            )
        return json.dumps({"questions": questions})
    if stage == "eval_judge":
        # A rating that follows the answer's word overlap with the reference: better answers rate higher.
        reference = set(re.findall(r"\w+", _section(prompt, "Reference answer").lower()))
        answer = set(re.findall(r"\w+", _section(prompt, "Answer to rate").lower()))
        overlap = len(reference & answer) / max(1, len(reference | answer))
        return json.dumps({"explanation": f"word overlap {overlap:.2f}", "rating": 1 + round(9 * overlap)})
    return f"unknown stage {stage}"


# --- the HTTP server ------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode("utf-8") if not isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        key = self.server.state.api_key
        if key is None or self.headers.get("Authorization") == f"Bearer {key}":
            return True
        self._send(401, {"error": {"message": "invalid api key"}})
        return False

    def do_GET(self) -> None:
        state = self.server.state
        if not self._authorised():
            return
        if self.path.rstrip("/") == "/v1/models":
            model: dict[str, Any] = {"id": state.model, "object": "model", "owned_by": "labtax-tests"}
            if state.max_model_len is not None:
                model["max_model_len"] = state.max_model_len
            self._send(200, {"object": "list", "data": [model]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        state = self.server.state
        with state.lock:
            state.in_flight += 1
            state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
        try:
            self._handle_post()
        finally:
            with state.lock:
                state.in_flight -= 1

    def _handle_post(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self._authorised():
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": "not found"}})
            return
        body = json.loads(raw)
        if state.reject_response_format and "response_format" in body:
            with state.lock:
                state.chat_requests += 1
            self._send(400, {"error": {"message": "response_format is not supported by this server"}})
            return
        prompt_tokens = sum(len(str(m.get("content", ""))) // 4 for m in body.get("messages", []))
        wanted = prompt_tokens + int(body.get("max_tokens") or 0)
        if state.context_limit is not None and wanted > state.context_limit:
            with state.lock:
                state.chat_requests += 1
            message = (
                f"This model's maximum context length is {state.context_limit} tokens. However, you requested "
                f"{wanted} tokens ({prompt_tokens} in the messages, {body.get('max_tokens')} in the completion). "
                "Please reduce the length of the messages or completion."
            )
            self._send(400, {"object": "error", "message": message, "type": "BadRequestError", "code": 400})
            return
        stage = str(
            ((body.get("response_format") or {}).get("json_schema") or {}).get("name", "")
        ) or _stage_from_prompt(body)
        with state.lock:
            state.chat_requests += 1
            state.counter += 1
            serial = state.counter
            state.stages[stage] += 1
            if state.keep_bodies:
                state.bodies.append(body)
        fault = state.next_fault(self.server.rng)
        if fault:
            with state.lock:
                state.faults_served[fault] += 1
        if state.latency_s:
            time.sleep(state.latency_s)
        if fault == "slow":
            time.sleep(state.slow_s)
        if fault == "500":
            self._send(500, {"error": {"message": "internal error (injected)"}})
            return
        if fault == "429":
            self._send(429, {"error": {"message": "rate limited (injected)"}}, {"Retry-After": state.retry_after})
            return
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fault == "echo_auth":  # a misconfigured proxy that echoes the request headers in its error page
            self._send(500, {"error": {"message": "upstream error", "headers": dict(self.headers.items())}})
            return
        if fault == "trickle":  # headers, then a byte at a time, never the end
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(int(state.slow_s * 20)):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                pass
            self.close_connection = True
            return
        custom = state.answers.get(stage)
        # Answers depend on the prompt and the request's `seed` only, so reruns are reproducible.
        nonce = body.get("seed")
        content = (
            custom(stage, body) if custom else default_answer(stage, body, nonce if isinstance(nonce, int) else serial)
        )
        if "response_format" in body and not custom and not content.startswith("{"):
            content = json.dumps({"text": content})  # free text asked for as JSON (the evaluation's answers are JSON)
        finish = "stop"
        stops = [str(x) for x in body.get("stop") or []]
        if fault == "malformed":
            content = "Sorry, I cannot write that in the format you asked for."
        elif fault == "prose" or ("response_format" in body and state.ignore_response_format):
            content = f"Sure! Here is the JSON you asked for:\n```json\n{content}\n```\nHope this helps."
        elif fault == "truncate":
            content, finish = content[: len(content) // 2], "length"
        elif stage in state.cut_stages:
            content, finish = f"{content.rstrip()}\n{CUT_ITEM.get(stage, 'And then the')}", "length"
        if stops and not state.ignore_stop:
            at = min((content.find(x) for x in stops if x in content), default=-1)
            if at >= 0:
                content = content[:at]
        message: object = {"role": "assistant", "content": content}
        usage: object = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(content) // 4,
            "total_tokens": prompt_tokens + len(content) // 4,
        }
        choices: object = [{"index": 0, "message": message, "finish_reason": finish}]
        if fault == "bad_content":
            choices = [{"index": 0, "message": {"role": "assistant", "content": [content]}, "finish_reason": "stop"}]
        elif fault == "bad_usage":
            usage = {"prompt_tokens": "many", "completion_tokens": {"n": 1}}
        elif fault == "no_choices":
            choices = None
        self._send(
            200,
            {
                "id": f"chatcmpl-{serial}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": state.model,
                "choices": choices,
                "usage": usage,
            },
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], state: ServerState) -> None:
        super().__init__(address, _Handler)
        self.state = state
        self.rng = random.Random(state.seed)


@dataclass
class RunningServer:
    state: ServerState
    port: int
    _server: _Server
    _thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def chat_requests(self) -> int:
        return self.state.chat_requests

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_server(port: int = 0, **settings: Any) -> RunningServer:
    """Start the server in a background thread (port 0: any free port). `settings` are ServerState fields."""
    state = ServerState(**settings)
    server = _Server(("127.0.0.1", port), state)
    thread = threading.Thread(target=server.serve_forever, name="fake-openai", daemon=True)
    thread.start()
    return RunningServer(state, server.server_address[1], server, thread)


@contextmanager
def running_server(**settings: Any) -> Iterator[RunningServer]:
    server = start_server(**settings)
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible teacher for labtax tests and dry runs.")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", default="fake-teacher")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every chat completion")
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument("--fault-rate", action="append", default=[], metavar="FAULT=RATE", help=f"one of {FAULTS}")
    args = parser.parse_args(argv)
    rates = {name: float(rate) for name, rate in (item.split("=", 1) for item in args.fault_rate)}
    server = start_server(
        args.port,
        model=args.model,
        latency_s=args.latency,
        max_model_len=args.max_model_len,
        fault_rates=rates,
        keep_bodies=False,
    )
    print(f"serving {args.model} at {server.url}", flush=True)
    try:
        server._thread.join()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
