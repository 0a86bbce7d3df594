"""The generation key covers exactly what reaches the teacher, and every count of requests comes from the
one planner: a change of metadata only (author, attribution, comments) plans 0 requests in the
reviewer report, in `generate --dry-run` and in a release, which sends none; an edit of a seed plans
what the run then sends. A real git project, the stand-in teacher, the real CLI, a tiny model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import git, shipped_project
from labtax.cli import main
from openai_server import running_server

HAIKU = "compositional_skills/writing/freeform/haiku"
TIDES = "knowledge/science/oceanography/ocean_tides"
TINY_TRAINING = [
    *("--set", "max_length=512", "--set", "micro_batch_tokens=2048", "--set", "gradient_accumulation_steps=1"),
    *("--set", "warmup_steps=0", "--set", "phase1.max_steps=1", "--set", "phase2.max_steps=1"),
]


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = shipped_project(tmp_path / "repo", (HAIKU, TIDES))
    git(root, "tag", "v1.0.0")
    monkeypatch.chdir(root)
    return root


def edit_metadata_only(root: Path) -> None:
    """What reaches no teacher: the author, the attribution's capitalisation, a comment, quoting."""
    haiku = root / "taxonomy" / HAIKU / "qna.yaml"
    text = haiku.read_text().replace("created_by: labtax-maintainers", "created_by: 'someone-else'  # moved")
    haiku.write_text("# reviewed in March\n" + text)
    attribution = root / "taxonomy" / TIDES / "attribution.txt"
    attribution.write_text(re.sub(r"Creator names: (.*)", lambda m: f"Creator names: {m.group(1).upper()}",
                                  attribution.read_text()))  # fmt: skip
    git(root, "commit", "-q", "-am", "metadata only")


def release(root: Path, output: Path, version: str, url: str, base_model: Path) -> int:
    return main(
        [
            *("release", version, "--dry-run", "--output", str(output), "--repo", "org/student"),
            *("--base-model", str(base_model), "--teacher-url", url, "--teacher-model", "fake-teacher"),
            *("--target", "2", "--eval-max-new-tokens", "1"),
            *TINY_TRAINING,
        ]
    )


def planned(text: str) -> int:
    match = re.search(r"Generation: \*\*(\d+) teacher requests\*\*", text)
    assert match, text[:2000]
    return int(match.group(1))


def test_a_metadata_only_change_plans_and_sends_no_request(
    repo: Path, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "release"
    generation = output / "generation"
    dry_run = ["generate", "-o", str(generation), "--teacher-model", "fake-teacher", "--target", "2", "--dry-run"]
    with running_server() as teacher:
        assert release(repo, output, "v1.0.0", teacher.url, tiny_model_dir) == 0
        first = teacher.chat_requests
        assert first > 0
        capsys.readouterr()

        edit_metadata_only(repo)
        # The reviewer report: both leaves changed (their leaf hashes did), neither drives a request.
        assert main(["report", "--base", "v1.0.0"]) == 0
        report = capsys.readouterr().out
        assert "2 leaves changed" in report and planned(report) == 0
        assert report.count("nothing that reaches the teacher changed") == 2
        # generate --dry-run on the release's cache: nothing to generate.
        assert main([*dry_run, "--teacher-url", teacher.url]) == 0
        assert "0 leaves to generate (0 new, 0 to resume), 2 cached" in capsys.readouterr().out
        # The release: provenance keeps the new content hashes; the teacher is not asked anything.
        assert release(repo, output, "v1.0.1", teacher.url, tiny_model_dir) == 0
        assert teacher.chat_requests == first
        notes = (output / "notes.md").read_text()
        assert planned(notes) == 0
        manifest = json.loads((output / "release.json").read_text())
        hashes = {leaf["path"]: leaf["leaf_hash"] for leaf in manifest["leaves"]}
        old = json.loads((output / "history" / "v1.0.0" / "release.json").read_text())
        assert all(hashes[leaf["path"]] != leaf["leaf_hash"] for leaf in old["leaves"])  # provenance moved on
        assert sorted(manifest["generation"]) == sorted(old["generation"])  # the data did not

        # An edit of a seed's answer reaches the teacher: the report plans it (generate's defaults), and
        # generate plans the very same with the same parameters; the run sends about what it planned.
        haiku = repo / "taxonomy" / HAIKU / "qna.yaml"
        haiku.write_text(haiku.read_text().replace("Cold rain on the roof", "Cold rain on the tin roof", 1))
        git(repo, "commit", "-q", "-am", "a seed edited")
        capsys.readouterr()
        assert main(["report", "--base", "v1.0.0"]) == 0
        expected = planned(capsys.readouterr().out)
        assert expected > 0
        fresh = ["generate", "-o", str(tmp_path / "fresh"), "--teacher-model", "fake-teacher", "--dry-run"]
        assert main([*fresh, "--teacher-url", teacher.url]) == 0
        rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.endswith(f"{HAIKU}/qna.yaml")]
        assert [int(row[3]) for row in rows] == [expected]  # action, kind, target, expected, budget, leaf
        assert main([*dry_run, "--teacher-url", teacher.url]) == 0
        small = int(re.search(r"about (\d+) requests", capsys.readouterr().out).group(1))  # type: ignore[union-attr]
        before = teacher.chat_requests
        assert main([*dry_run[:-1], "--teacher-url", teacher.url, "--quiet"]) == 0
        sent = teacher.chat_requests - before
    summary = json.loads(sorted((generation / "runs").glob("*.json"))[-1].read_text())
    # Sent: the pipeline's requests; teacher calls: with retries and hedges, what the server counted.
    assert summary["planned_requests"] == small and summary["http_requests"] == sent >= summary["sent"] > 0
    ran = [row for row in summary["leaves"] if row["requests"] is not None]
    assert ran and sum(row["http_requests"] for row in ran) == sent  # leaf by leaf, as the release sums them
    assert all(row["http_requests"] >= row["sent"] for row in ran)
