"""`labtax generate` end to end: a real git project, the fake teacher on 127.0.0.1, the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import git, shipped_project
from labtax.cli import main
from openai_server import running_server

LEAVES = (
    "compositional_skills/writing/freeform/haiku",
    "compositional_skills/extraction/json/invoice_fields",
    "foundational_skills/reasoning/unit_conversion",
    "knowledge/science/oceanography/ocean_tides",
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small labtax project (three kinds of leaves, one local document) committed to git."""
    root = shipped_project(tmp_path / "project", LEAVES)
    monkeypatch.chdir(root)
    return root


def generate(url: str, out: Path, *extra: str) -> int:
    return main(
        ["generate", "--output", str(out), "--teacher-url", url, "--teacher-model", "fake-teacher", "--quiet", *extra]
    )


def index(out: Path) -> dict[str, dict]:
    data = json.loads((out / "generation.json").read_text())
    assert data["format"] == "labtax-generation/2" and data["teacher"] == "fake-teacher"
    return {entry["leaf"]: entry for entry in data["leaves"]}


def outcomes(out: Path) -> dict[str, str]:
    """What the latest run did per leaf (generated, cached, incomplete, missing)."""
    latest = sorted((out / "runs").glob("*.json"))[-1]
    return {row["leaf"]: row["outcome"] for row in json.loads(latest.read_text())["leaves"]}


def samples(out: Path, entry: dict) -> list[dict]:
    return [json.loads(line) for line in (out / entry["samples"]).read_text().splitlines()]


def test_generate_then_rerun_sends_zero_requests(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = project / "gen"
    with running_server() as server:
        assert generate(server.url, out, "--target", "6") == 0
        first = server.chat_requests
        entries = index(out)
        assert {e["status"] for e in entries.values()} == {"complete"}
        assert set(outcomes(out).values()) == {"generated"}
        assert {e["kind"] for e in entries.values()} == {"knowledge", "freeform_skill", "grounded_skill"}
        for entry in entries.values():
            assert entry["kept"] == entry["target"] == 6
            rows = samples(out, entry)
            assert len(rows) == 6
            assert all(r["metadata"]["leaf_hash"] == entry["leaf_hash"] for r in rows)
            assert set(rows[0]["metadata"]) == {
                "format", "leaf", "leaf_hash", "pipeline", "prompt_version", "teacher", "scores", "exchanges"
            }  # fmt: skip
            assert not (out / "leaves" / entry["cache_key"] / "journal.jsonl").exists()
        assert first > 0 and server.state.stages["knowledge_qa"] > 0 and server.state.stages["grounded_contexts"] > 0
        capsys.readouterr()

        assert generate(server.url, out, "--target", "6") == 0
        assert server.chat_requests == first  # nothing changed: zero requests
        assert {e["status"] for e in index(out).values()} == {"complete"}
        assert set(outcomes(out).values()) == {"cached"}
        runs = sorted((out / "runs").glob("*.json"))
        assert len(runs) == 2 and json.loads(runs[-1].read_text())["sent"] == 0

        # Editing one leaf regenerates that leaf only.
        leaf = project / "taxonomy" / LEAVES[0] / "qna.yaml"
        leaf.write_text(
            leaf.read_text().replace("Write a haiku about autumn rain.", "Write a haiku about spring rain.")
        )
        assert generate(server.url, out, "--target", "6") == 0
        statuses = outcomes(out)
        assert statuses[f"{LEAVES[0]}/qna.yaml"] == "generated"
        assert sorted(statuses.values()).count("cached") == 3
        assert set(server.state.stages) >= {"freeform_instructions"}


def test_dry_run_prints_the_plan_and_sends_nothing(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = project / "gen"
    with running_server() as server:
        assert (
            main(
                [
                    "generate",
                    "-o",
                    str(out),
                    "--teacher-url",
                    server.url,
                    "--teacher-model",
                    "fake-teacher",
                    "--dry-run",
                ]
            )
            == 0
        )
        printed = capsys.readouterr().out
        assert server.chat_requests == 0
        assert not (out / "generation.json").exists()
        assert "4 leaves to generate" in printed and "nothing was sent" in printed
        assert "generate knowledge" in printed and "taxonomy" not in printed.split("\n")[0]
        command = ["generate", "-o", str(out), "--teacher-url", server.url, "--teacher-model", "fake-teacher"]
        assert main([*command, "--target", "3"]) == 0  # not quiet: bars on stderr, the summary on stdout
        captured = capsys.readouterr()
        assert "freeform_instructions" in captured.err and "req/s" in captured.err
        assert "4 of 4 leaves run" in captured.out and "generated       3      3" in captured.out
        assert "knowledge_faithfulness" in captured.out and "keep rate" in captured.out  # the per-stage table
        assert "planned about" in captured.out and "requests, sent" in captured.out
        main(
            [
                "generate",
                "-o",
                str(out),
                "--teacher-url",
                server.url,
                "--teacher-model",
                "fake-teacher",
                "--target",
                "3",
                "--dry-run",
            ]
        )
        assert "0 leaves to generate" in capsys.readouterr().out


def test_base_limits_generation_to_changed_leaves(project: Path) -> None:
    out = project / "gen"
    git(project, "checkout", "-q", "-b", "topic")
    leaf = project / "taxonomy" / LEAVES[2] / "qna.yaml"
    leaf.write_text(leaf.read_text().replace("Convert quantities", "Convert physical quantities", 1))
    git(project, "commit", "-q", "-am", "change one leaf")
    with running_server() as server:
        assert generate(server.url, out, "--target", "3", "--base", "main") == 0
        statuses = outcomes(out)
        assert {e["status"] for e in index(out).values()} == {"complete", "missing"}
    assert statuses.pop(f"{LEAVES[2]}/qna.yaml") == "generated"
    assert set(statuses.values()) == {"missing"}


def test_an_invalid_leaf_never_refuses_generation_of_the_valid_ones(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 12: an old error in an unrelated leaf used to refuse `generate --base` altogether."""
    out = project / "gen"
    haiku = project / "taxonomy" / LEAVES[0] / "qna.yaml"
    haiku.write_text(haiku.read_text().replace("created_by:", "created_by: [a, list]\nold_key:", 1))
    git(project, "commit", "-q", "-am", "an old problem on main")
    git(project, "checkout", "-q", "-b", "topic")
    changed = project / "taxonomy" / LEAVES[2] / "qna.yaml"
    changed.write_text(changed.read_text().replace("Convert quantities", "Convert physical quantities", 1))
    broken = project / "taxonomy" / LEAVES[1] / "qna.yaml"
    broken.write_text(broken.read_text().replace("created_by:", "created_by: [x]\nnot_a_key:", 1))
    git(project, "commit", "-q", "-am", "one good change, one bad")
    with running_server() as server:
        assert generate(server.url, out, "--target", "3", "--base", "main") == 1
        err = capsys.readouterr().err
        statuses = {path: e["status"] for path, e in index(out).items()}
    assert statuses[f"{LEAVES[2]}/qna.yaml"] == "complete"  # what GEN holds
    assert f"skipped {LEAVES[1]}/qna.yaml: it has validation errors" in err
    assert "[wrong-type]" in err and "[unknown-key]" in err
    assert "1 other invalid leaves are not planned" in err  # the old haiku problem: counted, not blocking
    assert LEAVES[0] not in err


def test_bad_configuration_fails_before_any_request(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = project / "gen"
    (project / "a-file").write_text("")
    assert generate("http://127.0.0.1:9/v1", project / "a-file") == 2
    assert "is not a directory" in capsys.readouterr().err
    with running_server() as server:
        assert generate(server.url, out, "--target", "0") == 2
        assert "--target must be at least 1" in capsys.readouterr().err
        assert main(["generate", "-o", str(out), "--teacher-model", "fake-teacher"]) == 2
        assert "--teacher-url is needed" in capsys.readouterr().err
        assert main(["generate", "-o", str(out), "--teacher-url", "localhost", "--teacher-model", "m"]) == 2
        assert "not an http(s) URL" in capsys.readouterr().err
        assert generate(server.url, out, "--all", "--base", "main") == 2
        # A knowledge document that no longer matches its pin: the leaf is skipped, its error listed.
        (project / "documents" / "ocean_tides" / "extra.md").write_text("new text\n")
        assert generate(server.url, out, "--dry-run") == 1
        err = capsys.readouterr().err
        assert "skipped knowledge/science/oceanography/ocean_tides/qna.yaml: it has validation errors" in err
        assert "[document-check] the documents in 'documents/ocean_tides' are not the pinned ones" in err
        assert server.chat_requests == 0
    (project / "documents" / "ocean_tides" / "extra.md").unlink()
    assert generate("http://127.0.0.1:9/v1", out) == 2
    assert "cannot reach the teacher" in capsys.readouterr().err


def test_a_leaf_short_of_its_target_is_reported(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = project / "gen"
    with running_server(fault_rates={"malformed": 1.0}) as server:
        code = generate(server.url, out, "--target", "2")
        err = capsys.readouterr().err
        sent = server.chat_requests
    assert code == 1
    entries = index(out)
    assert {e["status"] for e in entries.values()} == {"incomplete"}
    for path in entries:
        assert f"warning: {path}: 0 of 2 samples" in err
    key = entries[f"{LEAVES[0]}/qna.yaml"]["cache_key"]
    summary = json.loads((out / "leaves" / key / "summary.json").read_text())
    assert summary["failed"] > 0 and summary["failures"][0]["kind"] == "parse"
    rejected = [json.loads(line) for line in (out / "leaves" / key / "rejected.jsonl").read_text().splitlines()]
    assert rejected and all(r["reason"].startswith("teacher-failure: parse") for r in rejected)
    # Parse failures were paid for: a rerun replays them instead of asking again.
    with running_server() as server:
        assert generate(server.url, out, "--target", "2") == 1
        assert server.chat_requests == 0
    assert sent > 0


def test_transport_failures_are_asked_again_by_the_next_run(project: Path) -> None:
    from labtax.config import load_config
    from labtax.sdg.openai_teacher import TeacherGone
    from labtax.sdg.params import GenerationParams
    from labtax.sdg.run import generate as generate_leaves
    from labtax.sdg.teacher_spec import TeacherSpec
    from labtax.validate import load_leaves

    out = project / "gen"
    leaves = load_leaves(load_config()).leaves
    params = GenerationParams(target=2)
    with running_server(fault_rates={"500": 1.0}) as server:
        # A server that fails everything never answers: the run stops once a request deadline has passed.
        spec = TeacherSpec("fake-teacher", server.url, backoff_base_s=0.001, max_retries=1, request_deadline_s=1.0)
        with pytest.raises(TeacherGone, match="has not answered"):
            generate_leaves(leaves, spec, out, params=params, project_root=project)
        assert server.chat_requests > 0
    with running_server() as server:
        spec = TeacherSpec("fake-teacher", server.url)
        result = generate_leaves(leaves, spec, out, params=params, project_root=project)
        assert server.chat_requests > 0 and not result.incomplete
    assert {e["status"] for e in index(out).values()} == {"complete"} and set(outcomes(out).values()) == {"generated"}


def test_local_teacher_runs_the_pipelines_offline(
    project: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = project / "gen"
    for leaf in LEAVES[1:3]:  # one skill and one knowledge leaf are enough here: CPU generation is slow
        shutil.rmtree(project / "taxonomy" / leaf)
    code = main(
        [
            "generate",
            "-o",
            str(out),
            "--teacher-model",
            str(tiny_model_dir),
            "--target",
            "1",
            "--max-tokens",
            "24",
            "--budget-factor",
            "3",
            "--quiet",
        ]
    )
    assert code == 1  # a random tiny model writes no valid JSON: every leaf is reported short
    entries = index_any(out)
    assert {e["status"] for e in entries} == {"incomplete"}
    for entry in entries:
        summary = json.loads((out / "leaves" / entry["cache_key"] / "summary.json").read_text())
        assert summary["sent"] > 0 and summary["failed"] == summary["sent"]
        assert {f["kind"] for f in summary["failures"]} <= {"parse", "truncated", "too_long"}
        assert summary["teacher"].startswith("local:")
    capsys.readouterr()
    # The dry run computes the same cache keys (knowledge chunked by the model's tokenizer): nothing is new.
    assert main(["generate", "-o", str(out), "--teacher-model", str(tiny_model_dir), "--target", "1",
                 "--max-tokens", "24", "--budget-factor", "3", "--dry-run"]) == 0  # fmt: skip
    assert "2 leaves to generate (0 new, 2 to resume)" in capsys.readouterr().out


def index_any(out: Path) -> list[dict]:
    return json.loads((out / "generation.json").read_text())["leaves"]


def test_kill_9_then_resume_repeats_no_request_and_duplicates_no_sample(project: Path) -> None:
    reference, out = project / "reference", project / "gen"
    with running_server() as server:
        assert generate(server.url, reference, "--target", "8") == 0
        total = server.chat_requests
    with running_server(latency_s=0.02) as server:
        command = [
            sys.executable, "-m", "labtax.cli", "generate", "-o", str(out), "--teacher-url", server.url,
            "--teacher-model", "fake-teacher", "--target", "8", "--concurrency", "2", "--quiet",
        ]  # fmt: skip
        child = subprocess.Popen(command, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            journals = sum(p.read_bytes().count(b"\n") for p in out.glob("leaves/*/journal.jsonl"))
            if (
                journals + sum(json.loads(p.read_text())["sent"] for p in out.glob("leaves/*/summary.json"))
                >= total // 3
            ):
                break
            time.sleep(0.02)
        assert child.poll() is None, "the run finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        # Every answer the killed run wrote down, by the seed its request was sent with.
        journaled = {
            int(json.loads(line)["key"][:8], 16)
            for path in out.glob("leaves/*/journal.jsonl")
            for line in path.read_text().splitlines()
            if line.endswith("}")
        }
        assert 0 < len(journaled) < total
        before = len(server.state.bodies)

        assert generate(server.url, out, "--target", "8") == 0
        resumed = {body["seed"] for body in server.state.bodies[before:]}
    assert resumed and not resumed & journaled  # answers in the journal were replayed, none asked again
    got, want = index(out), index(reference)
    assert got.keys() == want.keys()
    for path, entry in got.items():
        assert entry["status"] == "complete" and entry["cache_key"] == want[path]["cache_key"]
        rows = samples(out, entry)
        assert rows == samples(reference, want[path])  # the same samples as an uninterrupted run, none twice
        assert len({json.dumps(r["messages"]) for r in rows}) == len(rows)
