"""The teacher client against a real HTTP server on 127.0.0.1, and the local transformers backend."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from labtax.errors import UsageError
from labtax.sdg.answer_parsing import parse_answer, validator_for
from labtax.sdg.local_teacher import LocalSettings, LocalTeacher
from labtax.sdg.openai_teacher import OpenAITeacher, TeacherSettings, TeacherUnavailable
from labtax.sdg.prompts import load_prompt
from labtax.sdg.teacher import PARSE, TOO_LONG, TRANSPORT, TRUNCATED, TeacherRequest, TeacherResult
from openai_server import running_server


def request(key: str = "k", max_tokens: int = 256, prompt: str = "freeform_instructions") -> TeacherRequest:
    template = load_prompt(prompt)
    messages = template.render(task_description="Write a haiku.", examples="- Write a haiku about rain.", count=3)
    return TeacherRequest(key, template.name, messages, template.schema, max_tokens, 0.7, 1)


def settings(url: str, **overrides: Any) -> TeacherSettings:
    values: dict[str, Any] = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5.0}
    values.update(overrides)
    return TeacherSettings(url, "fake-teacher", **values)


def ask(config: TeacherSettings, *requests: TeacherRequest) -> tuple[list[TeacherResult], OpenAITeacher]:
    async def go() -> tuple[list[TeacherResult], OpenAITeacher]:
        async with OpenAITeacher(config) as teacher:
            return list(await asyncio.gather(*(teacher.complete(r) for r in requests))), teacher

    return asyncio.run(go())


def test_every_transient_fault_is_retried_until_a_valid_answer() -> None:
    with running_server(faults=["500", "429", "drop", "malformed", "truncate"]) as server:
        (result,), teacher = ask(settings(server.url), request())
        assert result.ok and result.error is None
        assert len(result.data["instructions"]) == 3  # type: ignore[index]
        assert result.attempts == 6
        assert teacher.requests_sent == server.chat_requests == 6
        assert dict(server.state.faults_served) == {"500": 1, "429": 1, "drop": 1, "malformed": 1, "truncate": 1}


def test_requests_carry_a_json_schema_and_the_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABTAX_TEACHER_API_KEY", "sekret")
    with running_server(api_key="sekret") as server:
        (result,), _ = ask(settings(server.url), request())
        body = server.state.bodies[0]
    assert result.ok
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == load_prompt("freeform_instructions").schema
    assert body["seed"] == 1


def test_a_wrong_api_key_stops_before_any_generation_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABTAX_TEACHER_API_KEY", "wrong")
    with running_server(api_key="sekret") as server:
        with pytest.raises(TeacherUnavailable, match="LABTAX_TEACHER_API_KEY"):
            ask(settings(server.url), request())
        assert server.chat_requests == 0


def test_an_unserved_model_and_an_unreachable_server_are_clear_errors() -> None:
    with running_server(model="other-model") as server:
        with pytest.raises(TeacherUnavailable, match="does not serve 'fake-teacher'; it serves: other-model"):
            ask(settings(server.url), request())
    with running_server() as server:
        url = server.url
    with pytest.raises(TeacherUnavailable, match="cannot reach the teacher"):
        ask(settings(url), request())


def test_bad_settings_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="not an http"):
        OpenAITeacher(TeacherSettings("localhost:8000", "m"))
    with pytest.raises(UsageError, match="--concurrency"):
        OpenAITeacher(TeacherSettings("http://localhost:8000", "m", concurrency=0))


def test_retry_after_is_honoured() -> None:
    with running_server(faults=["429"], retry_after="1") as server:
        times: list[float] = []
        original = server.state.next_fault

        def spy(rng: Any) -> str | None:
            times.append(time.monotonic())
            return original(rng)

        server.state.next_fault = spy  # type: ignore[method-assign]
        (result,), _ = ask(settings(server.url), request())
    assert result.ok and result.attempts == 2
    assert times[1] - times[0] >= 0.95  # waited as told, not the 10 ms backoff


def test_persistent_failures_are_recorded_not_raised() -> None:
    with running_server(fault_rates={"500": 1.0}) as server:
        (result,), _ = ask(settings(server.url, max_retries=2), request())
    assert not result.ok and result.error_kind == TRANSPORT
    assert "HTTP 500" in (result.error or "") and result.attempts == 3
    with running_server(fault_rates={"malformed": 1.0}) as server:
        (result,), _ = ask(settings(server.url, output_retries=1), request())
    assert result.error_kind == PARSE and result.attempts == 2
    with running_server(fault_rates={"truncate": 1.0}) as server:
        (result,), _ = ask(settings(server.url, output_retries=0), request())
    assert result.error_kind == TRUNCATED and result.finish_reason == "length"


def test_a_slow_answer_times_out_and_is_retried() -> None:
    with running_server(faults=["slow"], slow_s=1.5) as server:
        (result,), _ = ask(settings(server.url, timeout_s=0.3), request())
    assert result.ok and result.attempts == 2


def test_answers_wrapped_in_prose_are_rescued_and_counted() -> None:
    with running_server(ignore_response_format=True) as server:
        results, _ = ask(settings(server.url), request("a"), request("b"))
    assert all(r.ok and r.rescued for r in results)


def test_a_server_that_refuses_structured_output_is_asked_without_it() -> None:
    with running_server(reject_response_format=True) as server:
        results, teacher = ask(settings(server.url, concurrency=1), request("a"), request("b"))
        assert all(r.ok and r.rescued for r in results)  # prose-wrapped answers, found by the fallback parser
        assert not teacher.structured_output
        assert server.chat_requests == 3  # one refusal, then every request without response_format
        assert all("response_format" not in body for body in server.state.bodies)


def test_prompt_plus_max_tokens_never_exceed_the_context() -> None:
    with running_server(max_model_len=400) as server:
        (fits, too_long), teacher = ask(
            settings(server.url), request("a", max_tokens=1000), request("b", max_tokens=5000)
        )
        sent = [body["max_tokens"] for body in server.state.bodies]
    assert teacher.context_length == 400 and teacher.context_source == "server"
    prompt = teacher.count_tokens(request().messages)
    assert fits.ok and sent == [400 - prompt, 400 - prompt]
    assert too_long.ok  # clamped, not refused: the prompt fits, the answer gets the rest
    with running_server(max_model_len=100) as server:
        (result,), _ = ask(settings(server.url), request())
        assert result.error_kind == TOO_LONG and server.chat_requests == 0  # never sent


def test_a_context_overflow_reported_by_the_server_shrinks_max_tokens() -> None:
    # The server does not report its context; the configured one is too large; vLLM's 400 says by how much.
    with running_server(max_model_len=None, context_limit=700) as server:
        (result,), _ = ask(settings(server.url, context_length=100_000), request(max_tokens=4000))
        sent = [body["max_tokens"] for body in server.state.bodies]
    assert result.ok and result.attempts == 2
    assert len(sent) == 1 and sent[0] < 700  # the refused request is not in bodies; the retry fits


def test_the_configured_context_is_used_when_the_server_does_not_say() -> None:
    with running_server(max_model_len=None) as server:
        _, teacher = ask(settings(server.url, context_length=2048), request())
    assert teacher.context_length == 2048 and teacher.context_source == "configured"


def test_concurrency_is_bounded() -> None:
    # Measured where it matters, at the server: never more than --concurrency requests at once,
    # and the bound is actually used.
    with running_server(latency_s=0.05) as server:

        async def go() -> None:
            async with OpenAITeacher(settings(server.url, concurrency=6)) as teacher:
                await asyncio.gather(*(teacher.complete(request(str(i))) for i in range(24)))

        asyncio.run(go())
        assert server.state.peak_in_flight == 6
        assert server.chat_requests == 24


def test_parse_answer_strict_then_fallback() -> None:
    validator = validator_for(load_prompt("pair_judge").schema)
    assert parse_answer('{"score": 2, "explanation": "ok"}', validator) == (
        {"score": 2, "explanation": "ok"},
        False,
        "",
    )
    text = 'Here you go: {"score": 3, "explanation": "fine"} bye'
    assert parse_answer(text, validator) == ({"score": 3, "explanation": "fine"}, True, "")
    fenced = 'noise {"a": 1}\n```json\n{"score": 1, "explanation": "bad"}\n```'
    assert parse_answer(fenced, validator)[0] == {"score": 1, "explanation": "bad"}
    data, _, problem = parse_answer('{"score": 7, "explanation": "x"}', validator)
    assert data is None and "score" in problem
    assert parse_answer("no json here", validator)[2] == "the answer is not JSON"


def test_local_teacher_answers_every_request_and_records_gibberish_as_failures(tiny_model_dir: Path) -> None:
    async def go() -> tuple[list[TeacherResult], LocalTeacher]:
        async with LocalTeacher(LocalSettings(tiny_model_dir, batch_size=4, output_retries=0)) as teacher:
            template = load_prompt("instruction_judge")
            requests = [
                TeacherRequest(
                    f"k{i}",
                    template.name,
                    template.render(task_description="haiku", instruction=f"Write {i}."),
                    template.schema,
                    16,
                    0.0,
                )
                for i in range(6)
            ]
            return list(await asyncio.gather(*(teacher.complete(r) for r in requests))), teacher

    results, teacher = asyncio.run(go())
    assert teacher.requests_sent == 6 and teacher.context_length == 512
    assert all(r.attempts == 1 and r.prompt_tokens > 0 for r in results)
    # A random tiny model writes gibberish: every answer is a recorded failure, none crashes the run.
    assert all(not r.ok and r.error_kind in (PARSE, TRUNCATED) for r in results)
    # finish_reason as the model ended: "length" when it hit max_tokens, "stop" at its end-of-sequence token.
    assert all(r.finish_reason == ("length" if r.error_kind == TRUNCATED else "stop") for r in results)


def test_local_teacher_rejects_a_directory_that_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"config\.json"):
        LocalTeacher(LocalSettings(tmp_path))


def test_the_fake_server_runs_as_a_script() -> None:
    import json
    import subprocess
    import sys
    import urllib.request

    from conftest import REPO_ROOT

    command = [sys.executable, "-m", "tests.openai_server", "--port", "0", "--model", "m"]
    server = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split(" at ")[1].strip()
        with urllib.request.urlopen(f"{url}/models", timeout=10) as response:
            assert json.load(response)["data"][0]["id"] == "m"
    finally:
        server.terminate()
        server.wait()
