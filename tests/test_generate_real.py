"""Generation against a real OpenAI-compatible server: `transformers serve` on 127.0.0.1 (tests/real_model.py),
with the tiny random model (gibberish: the run completes and every failure is recorded) and with
SmolLM2-135M-Instruct, a real small instruct model that ignores `response_format` and writes free text:
one skill leaf and one knowledge leaf must yield samples. Small targets and token limits: CPU only."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from conftest import REPO_ROOT, git
from labtax.cli import main
from labtax.sdg.openai_teacher import OpenAITeacher, TeacherSettings
from labtax.sdg.run import honour_line
from labtax.sdg.teacher import NOTE_STRUCTURED, TeacherRequest
from real_model import ServedModel

SKILL = "compositional_skills/writing/freeform/haiku"
KNOWLEDGE = "knowledge/science/oceanography/ocean_tides"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    for leaf in (SKILL, KNOWLEDGE):
        shutil.copytree(REPO_ROOT / "taxonomy" / leaf, root / "taxonomy" / leaf)
    shutil.copytree(REPO_ROOT / "documents" / "ocean_tides", root / "documents" / "ocean_tides")
    (root / "pyproject.toml").write_text('[tool.labtax]\ntaxonomy = "taxonomy"\n')
    git(root.parent, "init", "-q", str(root))
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "taxonomy")
    monkeypatch.chdir(root)
    return root


def generate(served: ServedModel, out: Path, *extra: str) -> int:
    return main(
        [
            "generate",
            "-o",
            str(out),
            "--teacher-url",
            served.url,
            "--teacher-model",
            served.model,
            "--quiet",
            "--concurrency",
            "1",
            *extra,
        ]
    )


def summaries(out: Path) -> dict[str, dict]:
    index = json.loads((out / "generation.json").read_text())
    return {
        entry["leaf"]: json.loads((out / "leaves" / entry["cache_key"] / "summary.json").read_text())
        for entry in index["leaves"]
    }


def test_the_tiny_random_model_served_runs_to_completion_and_records_every_failure(
    project: Path, served_tiny_model: ServedModel, capsys: pytest.CaptureFixture[str]
) -> None:
    out = project / "gen"
    # --max-tokens 16 is below the client's 64-token minimum answer: it is sent as asked (issue 13.4a).
    code = generate(
        served_tiny_model,
        out,
        "--target",
        "1",
        "--max-tokens",
        "16",
        "--judge-max-tokens",
        "16",
        "--budget-factor",
        "3",
    )
    assert code in (0, 1)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "leaves no room for an answer" not in err
    assert "is also a local directory" in err  # transformers serve names the model by its path: a note, no refusal
    for summary in summaries(out).values():
        assert summary["sent"] > 0 and summary["requests"] <= summary["budget"]
        assert summary["failed"] == len(summary["failures"])
        assert all(f["kind"] in ("parse", "truncated", "refused", "too_long", "transport") for f in summary["failures"])
        assert summary["kept"] + summary["rejected"] >= 1  # every candidate accounted for


def test_a_server_that_ignores_response_format_is_noticed(served_tiny_model: ServedModel) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    request = TeacherRequest("k", "probe", (("user", "Say hello as JSON."),), schema, 16, 0.0)

    async def ask() -> list[str]:
        settings = TeacherSettings(served_tiny_model.url, served_tiny_model.model, concurrency=1, output_retries=0)
        async with OpenAITeacher(settings) as teacher:
            return (await teacher.complete(request)).notes

    notes = asyncio.run(ask())
    assert NOTE_STRUCTURED in notes  # random words are not the bare JSON asked for
    line = honour_line({NOTE_STRUCTURED: 1}, 1)
    assert line is not None and "structured output (response_format)" in line


# Real generation on CPU, one request at a time (transformers serve): a few dozen short requests, about
# two minutes on an idle 2-core machine; the limit leaves room for a busy one.
@pytest.mark.timeout(1200)
def test_smollm2_as_the_teacher_yields_samples_for_a_skill_and_a_knowledge_leaf(
    project: Path, served_smollm2: ServedModel, capsys: pytest.CaptureFixture[str]
) -> None:
    out = project / "gen"
    code = generate(
        served_smollm2, out, "--target", "1", "--max-tokens", "96", "--judge-max-tokens", "40", "--budget-factor", "30"
    )
    found = summaries(out)
    assert code == 0, found
    for leaf in (SKILL, KNOWLEDGE):
        summary = found[f"{leaf}/qna.yaml"]
        assert summary["status"] == "complete" and summary["kept"] == 1
        samples = (out / "leaves" / summary["cache_key"] / "samples.jsonl").read_text().splitlines()
        assert len(samples) == 1 and json.loads(samples[0])["messages"][1]["content"].strip()
    assert "Traceback" not in capsys.readouterr().err
