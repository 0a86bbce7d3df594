"""`labtax generate` when things go wrong, and the features around the teacher: a cached re-run with the
server down, a full disk, a teacher that trickles bytes, malformed answers, hand-edited caches, secrets
echoed by a server, several replicas, a served model named by a local path, several answers per prompt.
Real git projects, the stand-in teacher on 127.0.0.1, the real CLI (a subprocess where a limit or a
signal must apply to labtax alone)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labtax.cli import main
from openai_server import running_server
from test_generate import LEAVES, generate, index, outcomes, project, samples

__all__ = ["project"]  # the fixture, shared with test_generate


def cli(
    *args: str, env: dict[str, str] | None = None, limit_bytes: int | None = None
) -> subprocess.CompletedProcess[str]:
    """labtax in a subprocess; `limit_bytes`: the largest file it may write (RLIMIT_FSIZE: a full disk
    as the kernel reports it to the writer, EFBIG, with no root and no loop device)."""

    def limit() -> None:
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-m", "labtax.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        preexec_fn=limit,
        timeout=600,
        check=False,
    )


def sent_bodies(server_bodies: list[dict]) -> list[str]:
    """A request's identity as the server saw it: its messages, completion limit and seed."""
    return [json.dumps([b["messages"], b["max_tokens"], b["seed"]], sort_keys=True) for b in server_bodies]


def test_a_cached_rerun_never_contacts_the_teacher(project: Path) -> None:
    out = project / "gen"
    with running_server() as server:
        assert generate(server.url, out, "--target", "2") == 0
        url = server.url
    # The server is gone: a re-run with everything cached still succeeds, and says so.
    assert generate(url, out, "--target", "2") == 0
    assert set(outcomes(out).values()) == {"cached"}


def test_a_full_disk_stops_with_one_message_and_a_rerun_resumes_exactly(project: Path) -> None:
    reference, out = project / "reference", project / "gen"
    with running_server() as server:
        assert generate(server.url, reference, "--target", "3", "--concurrency", "1") == 0
    with running_server() as server:
        base = ["generate", "-o", str(out), "--teacher-url", server.url, "--teacher-model", "fake-teacher"]
        base += ["--target", "3", "--concurrency", "1", "--quiet"]
        full = cli(*base, limit_bytes=12_000)
        assert full.returncode == 1, full.stderr
        message = full.stderr.strip().splitlines()[-1]
        assert "cannot write" in message and str(out) in message and "needed" in message
        assert "run the same command again" in message and "Traceback" not in full.stderr
        first = sent_bodies(server.state.bodies)
        resumed = cli(*base)
        assert resumed.returncode == 0, resumed.stderr
        again = sent_bodies(server.state.bodies)[len(first) :]
    # At most the one answer the full disk kept from being written is asked again; nothing else.
    assert len(set(first) & set(again)) <= 1 and len(first) > 0
    got, want = index(out), index(reference)
    for path, entry in got.items():
        assert entry["status"] == "complete" and samples(out, entry) == samples(reference, want[path])


def test_a_trickling_teacher_is_given_up_within_the_deadline(project: Path) -> None:
    out = project / "gen"
    with running_server(fault_rates={"trickle": 1.0}, slow_s=60.0) as server:
        started = time.monotonic()
        result = cli(
            *("generate", "-o", str(out), "--teacher-url", server.url, "--teacher-model", "fake-teacher"),
            *("--target", "2", "--timeout", "0.5", "--request-deadline", "2", "--quiet"),
        )
        elapsed = time.monotonic() - started
    assert result.returncode == 1 and elapsed < 30
    assert "has not answered for" in result.stderr and "re-run the same command to resume" in result.stderr
    assert result.stderr.count("has not answered") == 1 and "Traceback" not in result.stderr
    with running_server() as server:
        assert generate(server.url, out, "--target", "2") == 0


def test_malformed_answers_are_failed_requests_and_the_run_finishes(project: Path) -> None:
    out = project / "gen"
    rates = {"bad_content": 0.1, "no_choices": 0.1, "bad_usage": 0.1}
    with running_server(fault_rates=rates, seed=3) as server:
        # Nearly a third of the answers are malformed, whichever requests draw them (they run concurrently):
        # a budget with room for that, so that the run finishing is what is tested, not the draw.
        assert generate(server.url, out, "--target", "3", "--budget-factor", "25") == 0
        assert sum(server.state.faults_served.values()) > 0
    failures = [
        failure for path in out.glob("leaves/*/summary.json") for failure in json.loads(path.read_text())["failures"]
    ]
    assert all(f["kind"] == "parse" and "not a chat completion" in f["error"] for f in failures)


def test_vet_cache_trusts_no_hand_edited_result(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = project / "gen"
    with running_server() as server:
        assert generate(server.url, out, "--target", "2") == 0
        entry = index(out)[f"{LEAVES[0]}/qna.yaml"]
        path = out / entry["samples"]
        rows = samples(out, entry)
        rows[0]["messages"][1]["content"] = "Buy cheap watches at example.com"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        capsys.readouterr()
        assert generate(server.url, out, "--target", "2") == 0
        assert set(outcomes(out).values()) == {"cached"}  # without --vet-cache the cache is trusted
        before = server.chat_requests
        assert generate(server.url, out, "--target", "2", "--vet-cache") == 0
        assert server.chat_requests > before
    err = capsys.readouterr().err
    assert "does not hold up (samples.jsonl:1: its answer is not what the recorded teacher answer says)" in err
    statuses = outcomes(out)
    assert statuses.pop(f"{LEAVES[0]}/qna.yaml") == "generated" and set(statuses.values()) == {"cached"}
    assert all("example.com" not in row["messages"][1]["content"] for row in samples(out, index(out)[entry["leaf"]]))


def test_secrets_echoed_by_the_teacher_reach_no_file_and_no_output(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = "sk-proj-SECRET0123456789abcdef"
    monkeypatch.setenv("LABTAX_TEACHER_API_KEY", key)
    out = project / "gen"
    with running_server(api_key=key, fault_rates={"echo_auth": 1.0}) as server:
        code = main(
            [
                "generate",
                "-o",
                str(out),
                "--teacher-url",
                server.url,
                "--teacher-model",
                "fake-teacher",
                "--target",
                "1",
                "--request-deadline",
                "3",
            ]
        )
    assert code != 0
    captured = capsys.readouterr()
    assert "upstream error" in captured.err or "has not answered" in captured.err
    written = [p.read_text(errors="replace") for p in out.rglob("*") if p.is_file()]
    assert written and not any("SECRET0123456789" in text for text in [*written, captured.out, captured.err])


def test_replicas_through_the_command(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = project / "gen"
    with running_server(fault_rates={"500": 1.0}) as broken, running_server() as healthy:
        code = main(
            [
                "generate",
                "-o",
                str(out),
                "--teacher-model",
                "fake-teacher",
                "--target",
                "2",
                "--quiet",
                "--teacher-url",
                broken.url,
                "--teacher-url",
                healthy.url,
            ]
        )
        assert code == 0
        assert healthy.chat_requests > 10 * max(1, broken.chat_requests)
    assert {e["status"] for e in index(out).values()} == {"complete"}


def test_a_served_model_named_by_a_local_path_is_asked_not_loaded(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # transformers serve names a model by the path it was given; the path exists here too.
    model_dir = project / "models" / "smol"
    model_dir.mkdir(parents=True)
    with running_server(model=str(model_dir)) as server:
        code = main(
            [
                "generate",
                "-o",
                str(project / "gen"),
                "--teacher-url",
                server.url,
                "--teacher-model",
                str(model_dir),
                "--target",
                "1",
                "--quiet",
            ]
        )
        assert code == 0 and server.chat_requests > 0
    assert "is also a local directory; with --teacher-url it is the name the server serves" in capsys.readouterr().err


def test_several_answers_per_prompt_are_recorded_for_preference_pairs(project: Path) -> None:
    out = project / "gen"
    with running_server() as server:
        assert generate(server.url, out, "--target", "2", "--candidates-per-prompt", "3") == 0
    entry = index(out)[f"{LEAVES[0]}/qna.yaml"]
    for row in samples(out, entry):
        responses = [e for e in row["metadata"]["exchanges"] if e["stage"] == "response"]
        assert len(responses) >= 2  # those that were answered and judged
        assert len({json.dumps(e["messages"]) for e in responses}) == 1  # the very same prompt
        assert len({e["request_id"] for e in responses}) == len(responses)
        kept = [e for e in responses if e["wrote"] == ["answer"]]
        assert len(kept) == 1 and kept[0]["judge_score"] == max(e["judge_score"] for e in responses)
        assert row["messages"][1]["content"] == kept[0]["output"]
        assert row["metadata"]["scores"]["pair"] == kept[0]["judge_score"] >= 2
