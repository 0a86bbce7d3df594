"""The teacher client against real HTTP servers on 127.0.0.1 (the stand-in with injected faults), the
free-text answer formats, and the local transformers backend."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from labtax.errors import UsageError
from labtax.sdg.answer_parsing import AnswerFormat, read_answer
from labtax.sdg.dispatch import Dispatcher
from labtax.sdg.local_teacher import LocalSettings, LocalTeacher
from labtax.sdg.openai_teacher import OpenAITeacher, TeacherGone, TeacherSettings, TeacherUnavailable, scrub
from labtax.sdg.prompts import load_prompt
from labtax.sdg.teacher import (
    NOTE_CUT,
    NOTE_SAMPLING,
    NOTE_STOP,
    NOTE_STRUCTURED,
    PARSE,
    REQUEST_OWNER,
    TOO_LONG,
    TRANSPORT,
    TRUNCATED,
    TeacherRequest,
    TeacherResult,
)
from openai_server import default_answer, running_server

SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string"}},
    "required": ["text"],
    "additionalProperties": False,
}


def request(
    key: str = "k", max_tokens: int = 256, prompt: str = "freeform_instructions", **extra: Any
) -> TeacherRequest:
    template = load_prompt(prompt)
    messages = template.render(
        task_description="Write a haiku.",
        examples="- Write a haiku about rain.",
        count=3,
        context_block="",
        instruction="Write a haiku about rain.",
    )
    answer = template.answer.with_limit(3)
    values: dict[str, Any] = {"schema": None, "answer": answer, "stop": answer.stop_sequences(), **extra}
    return TeacherRequest(key, template.name, messages, max_tokens=max_tokens, temperature=0.7, seed=1, **values)


def settings(url: str | tuple[str, ...], **overrides: Any) -> TeacherSettings:
    values: dict[str, Any] = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5.0}
    values.update(overrides)
    return TeacherSettings(url, "fake-teacher", **values)


def ask(config: TeacherSettings, *requests: TeacherRequest) -> tuple[list[TeacherResult], OpenAITeacher]:
    async def go() -> tuple[list[TeacherResult], OpenAITeacher]:
        async with OpenAITeacher(config) as teacher:
            return list(await asyncio.gather(*(teacher.complete(r) for r in requests))), teacher

    return asyncio.run(go())


def test_every_transient_fault_is_retried_until_a_valid_answer() -> None:
    with running_server(faults=["500", "429", "drop", "malformed"]) as server:
        (result,), teacher = ask(settings(server.url), request())
        assert result.ok and result.error is None
        assert len(result.data["items"]) == 3  # type: ignore[index]
        assert result.attempts == 5
        assert teacher.requests_sent == server.chat_requests == 5
        assert dict(server.state.faults_served) == {"500": 1, "429": 1, "drop": 1, "malformed": 1}
        seeds = [body["seed"] for body in server.state.bodies]
        assert seeds[-1] != seeds[-2]  # an unreadable answer is asked again with another seed


def test_requests_carry_stop_sequences_and_the_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABTAX_TEACHER_API_KEY", "sekret")
    with running_server(api_key="sekret") as server:
        (result,), _ = ask(settings(server.url), request())
        body = server.state.bodies[0]
    assert result.ok
    assert body["stop"] == ["\n4."] and "response_format" not in body  # free text, stopped after 3 items
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
    with pytest.raises(TeacherUnavailable, match="cannot reach"):
        ask(settings(url), request())


def test_bad_settings_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="not an http"):
        OpenAITeacher(TeacherSettings("localhost:8000", "m"))
    with pytest.raises(UsageError, match="--concurrency"):
        OpenAITeacher(TeacherSettings("http://localhost:8000", "m", concurrency=0))
    with pytest.raises(UsageError, match="same server twice"):
        OpenAITeacher(TeacherSettings(("http://h:1", "http://h:1/v1"), "m"))


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
        (result,), teacher = ask(settings(server.url, output_retries=3), request())
    # The same unreadable text for a new seed: the server ignores sampling, so asking again is futile.
    assert result.error_kind == PARSE and result.attempts == 2 and NOTE_SAMPLING in result.notes
    assert not teacher.samples_freely


def test_a_cut_answer_keeps_its_complete_items_and_is_never_asked_again_as_it_was() -> None:
    with running_server(fault_rates={"truncate": 1.0}) as server:
        (result,), _ = ask(settings(server.url), request())
        assert server.chat_requests == 1  # items before the cut were kept: no retry
    assert result.ok and result.partial and NOTE_CUT in result.notes
    assert 1 <= len(result.data["items"]) < 3  # type: ignore[index]
    # Nothing usable before the cut: asked once more with twice the room, then given up.
    with running_server(fault_rates={"truncate": 1.0}) as server:
        (result,), _ = ask(settings(server.url), request(prompt="response", answer=None, stop=()))
        sent = [body["max_tokens"] for body in server.state.bodies]
    assert result.error_kind == TRUNCATED and sent == [256, 512]


def test_a_max_tokens_below_the_minimum_answer_is_sent_as_asked() -> None:
    # issue 13: --max-tokens 32 made every request fail locally ("leaves no room for an answer").
    with running_server() as server:
        (result,), _ = ask(settings(server.url), request(max_tokens=32))
        assert result.ok and server.state.bodies[0]["max_tokens"] == 32


def test_a_dead_or_trickling_teacher_is_given_up_within_the_deadline() -> None:
    # Headers, then a byte every 50 ms: a read timeout never fires; the attempt's total timeout does,
    # and the request deadline ends the run with one message.
    with running_server(fault_rates={"trickle": 1.0}, slow_s=30.0) as server:
        started = time.monotonic()
        with pytest.raises(TeacherGone, match=r"has not answered for \d+ s .*re-run the same command"):
            ask(settings(server.url, timeout_s=0.5, request_deadline_s=1.5), request())
        assert time.monotonic() - started < 6


@pytest.mark.parametrize("fault", ["bad_content", "bad_usage", "no_choices"])
def test_a_malformed_200_is_a_failed_request_not_a_crash(fault: str) -> None:
    with running_server(fault_rates={fault: 1.0}) as server:
        (result,), _ = ask(settings(server.url, output_retries=0), request())
    if fault == "bad_usage":  # the answer itself is fine; the counts are ignored
        assert result.ok and result.prompt_tokens == 0
    else:
        assert result.error_kind == PARSE and "not a chat completion" in (result.error or "")


def test_error_bodies_are_scrubbed_before_they_are_stored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABTAX_TEACHER_API_KEY", "sk-live-0123456789abcdef")
    with running_server(fault_rates={"echo_auth": 1.0}) as server:
        (result,), _ = ask(settings(server.url, max_retries=1), request())
    assert result.error_kind == TRANSPORT and "upstream error" in (result.error or "")
    assert "0123456789abcdef" not in (result.error or "")
    assert scrub('{"Authorization": "Bearer abc.def-123456"} token=xyz12345 https://u:p@h/x') == (
        '{"Authorization": "***"} token=*** https://***@h/x'
    )


def test_replicas_share_the_load_and_a_failing_one_is_backed_off() -> None:
    with running_server(latency_s=0.05) as first, running_server(latency_s=0.05) as second:

        async def go(config: TeacherSettings) -> list[TeacherResult]:
            async with OpenAITeacher(config) as teacher:
                return list(await asyncio.gather(*(teacher.complete(request(str(i))) for i in range(40))))

        results = asyncio.run(go(settings((first.url, second.url), concurrency=4)))
        assert all(r.ok for r in results)
        assert first.chat_requests == second.chat_requests == 20  # the least busy replica each time
        assert first.state.peak_in_flight == second.state.peak_in_flight == 4
    with running_server(fault_rates={"500": 1.0}) as broken, running_server() as healthy:
        results = asyncio.run(
            go(settings((broken.url, healthy.url), concurrency=4, backoff_base_s=5.0, backoff_max_s=5.0))
        )
        assert all(r.ok for r in results)
        assert healthy.chat_requests == 40 and broken.chat_requests <= 4  # backed off after its first failures
    with running_server() as healthy:
        dead = "http://127.0.0.1:9/v1"
        results = asyncio.run(go(settings((dead, healthy.url), concurrency=4)))
        assert all(r.ok for r in results) and healthy.chat_requests == 40


def test_a_server_that_ignores_response_format_is_noticed() -> None:
    schema_request = request(prompt="response", answer=None, stop=(), schema=SCHEMA)
    with running_server(ignore_response_format=True) as server:
        (result,), _ = ask(settings(server.url), schema_request)
        assert server.state.bodies[0]["response_format"]["type"] == "json_schema"
    assert result.ok and result.rescued and NOTE_STRUCTURED in result.notes


def test_a_server_that_refuses_structured_output_is_asked_without_it() -> None:
    schema_request = request(prompt="response", answer=None, stop=(), schema=SCHEMA)
    prose = {"response": lambda stage, body: 'Here you are: {"text": "a haiku"}'}
    with running_server(reject_response_format=True, answers=prose) as server:
        results, teacher = ask(settings(server.url, concurrency=1), schema_request, schema_request)
        assert all(r.ok for r in results)
        assert not teacher.structured_output
        assert server.chat_requests == 3  # one refusal, then every request without response_format


def test_a_server_that_ignores_stop_sequences_is_cut_here_and_noticed() -> None:
    with running_server(
        ignore_stop=True, answers={"freeform_instructions": lambda s, b: "1. a\n2. b\n3. c\n4. d\n5. e"}
    ) as server:
        (result,), _ = ask(settings(server.url), request())
    assert result.data == {"items": ["a", "b", "c"]} and NOTE_STOP in result.notes


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
        assert "context of 100 tokens" in (result.error or "")


def test_a_context_overflow_reported_by_the_server_shrinks_max_tokens() -> None:
    # The server does not report its context; the configured one is too large; vLLM's 400 says by how much.
    with running_server(max_model_len=None, context_limit=700) as server:
        (result,), _ = ask(settings(server.url, context_length=100_000), request(max_tokens=4000))
        sent = [body["max_tokens"] for body in server.state.bodies]
    assert result.ok and result.attempts == 2
    assert len(sent) == 1 and sent[0] < 700  # the refused request is not in bodies; the retry fits


def test_concurrency_is_bounded() -> None:
    with running_server(latency_s=0.05) as server:

        async def go() -> None:
            async with OpenAITeacher(settings(server.url, concurrency=6)) as teacher:
                await asyncio.gather(*(teacher.complete(request(str(i))) for i in range(24)))

        asyncio.run(go())
        assert server.state.peak_in_flight == 6
        assert server.chat_requests == 24


def test_every_attempt_is_counted_for_the_leaf_that_asked_retries_and_hedges_included() -> None:
    """Each leaf's task names itself in REQUEST_OWNER; every HTTP request made for it (a retry, and a hedge
    that a timer set off while another leaf's request was in flight) is counted for it, so the per-leaf
    counts of a run (and a release's total) are what the server saw."""
    held = threading.Event()

    def answer(stage: str, body: dict[str, Any]) -> str:
        if "[slow]" in body["messages"][-1]["content"] and not held.is_set():
            held.set()
            time.sleep(1.0)  # the slow leaf's first answer: long enough to be hedged
        return default_answer(stage, body, int(body["seed"]))

    def tagged(owner: str, key: str) -> TeacherRequest:
        ask = request(f"{owner}-{key}")
        return dataclasses.replace(ask, messages=(*ask.messages[:-1], ("user", f"{ask.messages[-1][1]} [{owner}]")))

    with running_server(fault_rates={"500": 0.15}, answers={"freeform_instructions": answer}, seed=5) as server:

        async def go() -> tuple[dict[str, int], int]:
            async with OpenAITeacher(settings(server.url, concurrency=8)) as teacher:
                dispatcher = Dispatcher(teacher, 8)

                async def leaf(owner: str, count: int, rank: int) -> None:
                    REQUEST_OWNER.set(owner)
                    for n in range(count):
                        await dispatcher.complete((rank, n), tagged(owner, str(n)))

                await leaf("warm", 20, 0)  # latencies to hedge by
                busy = asyncio.ensure_future(leaf("busy", 60, 1))  # its timers are set in its own context
                await asyncio.sleep(0.05)
                await leaf("slow", 1, 2)
                await busy
                return dict(teacher.sent.by_owner), dispatcher.hedged

        counted, hedged = asyncio.run(go())
    seen = {owner: 0 for owner in ("warm", "busy", "slow")}
    for body in server.state.bodies:
        seen[body["messages"][-1]["content"].rsplit("[", 1)[1].rstrip("]")] += 1
    assert hedged >= 1 and seen["slow"] >= 2 and server.state.faults_served["500"] > 0
    assert counted == seen and sum(seen.values()) == server.chat_requests


# --- reading answers ------------------------------------------------------------------------------


def test_items_keep_every_complete_item_before_a_cut() -> None:
    items = AnswerFormat("items", limit=5)
    text = "Sure, here you go:\n1. Write a haiku about snow.\n2) **Write a haiku about frogs.**\n- Write one about"
    assert read_answer(text, "length", items).data == {
        "items": ["Write a haiku about snow.", "Write a haiku about frogs."]
    }
    assert read_answer(text, "stop", items).data == {
        "items": ["Write a haiku about snow.", "Write a haiku about frogs.", "Write one about"]
    }
    assert read_answer("1. a\n2. b\n3. c", "stop", AnswerFormat("items", limit=2)).data == {"items": ["a", "b"]}
    assert read_answer("Write a haiku about dew.", "stop", AnswerFormat("items", limit=1)).rescued  # no marker
    assert read_answer("Sorry, I cannot do that.", "stop", items).data is None
    assert read_answer("1. only half of it", "length", items).data is None


def test_pairs_blocks_and_scores() -> None:
    pairs = AnswerFormat("qa_pairs")
    text = (
        "Q: What causes tides?\nA: The Moon's pull\nand the Sun's.\n\n"
        "Question 2: Why two a day?\nAnswer 2: Earth turns\nQ: cut"
    )
    parsed = read_answer(text, "length", pairs)
    assert (
        parsed.data
        == {
            "pairs": [
                {"question": "What causes tides?", "answer": "The Moon's pull\nand the Sun's."},
                {"question": "Why two a day?", "answer": "Earth turns"},
            ]
        }
        and parsed.partial
    )
    # What SmolLM2-135M wrote once: a second pair labelled "B:" after a blank line. The first answer ends
    # at the blank line; the unlabelled pair is left out rather than run into the first answer.
    text = "Q: How many SI base units are there?\nA: Seven.\n\nB: How many SI derived units are there?\nA: Eight"
    assert read_answer(text, "stop", pairs).data == {
        "pairs": [{"question": "How many SI base units are there?", "answer": "Seven."}]
    }
    # Without a paragraph break, or with another label (`Answer:`, `A)`), the line stays in the answer.
    for text, kept in (
        ("Q: Why?\nA: Because.\nA: And again.", "Because.\nA: And again."),
        ("Q: What is 2+2?\nA: Let me think step by step.\n\nAnswer: 4", "Let me think step by step.\n\nAnswer: 4"),
        ("Q: Which?\nA: The options are:\n\nA) one\nB) two\nThe right one is A.",
         "The options are:\n\nA) one\nB) two\nThe right one is A."),
    ):  # fmt: skip
        question = text[3 : text.index("\n")]
        assert read_answer(text, "stop", pairs).data == {"pairs": [{"question": question, "answer": kept}]}
    blocks = AnswerFormat("blocks", tag="Context")
    text = "[Start of Context]\nOne.\n[End of Context]\n[Start of Context]\nTwo\n[Start of Context]\nThr"
    assert read_answer(text, "length", blocks).data == {"items": ["One.", "Two"]}
    assert read_answer("Just one context.", "stop", blocks).data == {"items": ["Just one context."]}
    score = AnswerFormat("score", low=1, high=3)
    assert read_answer("Explanation: fine.\nScore: 2", "stop", score).data == {"score": 2, "explanation": "fine."}
    assert read_answer("The response is 3 out of 3.", "stop", score).data == {
        "score": 3,
        "explanation": "The response is",
    }
    assert read_answer("Score: 7", "stop", score).data is None
    verdict = AnswerFormat("score", low=0, high=1, words={"YES": 1, "NO": 0})
    assert read_answer("Explanation: said so.\nAnswer: yes", "stop", verdict).data == {
        "score": 1,
        "explanation": "said so.",
    }
    assert read_answer("Yes, it does. Yes.", "stop", verdict).data == {"score": 1, "explanation": "Yes, it does."}
    assert read_answer("Yes and no.", "stop", verdict).data is None


# --- the local backend ----------------------------------------------------------------------------


def test_local_teacher_answers_every_request_and_records_gibberish_as_failures(tiny_model_dir: Path) -> None:
    async def go() -> tuple[list[TeacherResult], LocalTeacher]:
        async with LocalTeacher(LocalSettings(tiny_model_dir, batch_size=4, output_retries=0)) as teacher:
            template = load_prompt("response")
            requests = [
                TeacherRequest(
                    f"k{i}",
                    template.name,
                    template.render(task_description="haiku", examples="", context_block="", instruction=f"Write {i}."),
                    None,
                    16,
                    0.0,
                    answer=template.answer,
                )
                for i in range(6)
            ]
            return list(await asyncio.gather(*(teacher.complete(r) for r in requests))), teacher

    results, teacher = asyncio.run(go())
    assert teacher.requests_sent == 6 and teacher.context_length == 512
    assert all(r.attempts == 1 and r.prompt_tokens > 0 for r in results)
    # A random tiny model writes gibberish: a free-text answer cut at max_tokens is a recorded failure (never
    # retried with the same settings), one that ended at its end-of-sequence token is the answer; no crash.
    for r in results:
        assert (r.finish_reason, r.error_kind) == ("length", TRUNCATED) or (r.finish_reason == "stop" and r.ok)


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
