"""The release's use of training: a mistyped base model stops it before any work, and an earlier training
run is removed only once the new one has finished."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO_ROOT, git
from labtax.cli import main
from labtax.errors import UsageError
from openai_server import running_server
from test_train import FAST, write_phase_data


def test_a_mistyped_base_model_stops_the_release_before_generation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`out/nope` is a valid Hub id as well as a relative path: it used to pass the up-front check, run
    generation and curation, delete the previous training runs, and only then fail to load."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "taxonomy", repo / "taxonomy")
    shutil.copytree(REPO_ROOT / "documents", repo / "documents")
    shutil.copy2(REPO_ROOT / "pyproject.toml", repo / "pyproject.toml")
    git(tmp_path, "init", "-q", str(repo))
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "taxonomy")
    git(repo, "tag", "v0.2.0")
    monkeypatch.chdir(repo)
    output = tmp_path / "release"
    earlier_run = output / "train" / "0123456789abcdef"
    earlier_run.mkdir(parents=True)
    (earlier_run / "training.json").write_text("{}")
    with running_server() as teacher:
        command = ["release", "v0.2.0", "--dry-run", "--output", str(output), "--base-model", "out/nope"]
        code = main([*command, "--teacher-url", teacher.url, "--teacher-model", "fake-teacher", "--target", "2"])
        assert code == 2
        assert teacher.chat_requests == 0
    message = capsys.readouterr().err
    assert "out/nope: no such local path" in message and "taken as a Hub id" in message
    assert not (output / "generation").exists() and earlier_run.is_dir()


def test_an_earlier_training_run_is_removed_only_after_the_new_one_finished(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from labtax.release.release import ReleaseOptions
    from labtax.release.stages import train

    runs = tmp_path / "release" / "train"
    earlier = runs / "earlier-inputs"
    (earlier / "final").mkdir(parents=True)
    (earlier / "training.json").write_text(json.dumps({"status": "done"}))
    overrides = {**FAST, "phase1.max_steps": 1, "phase2.max_steps": 1}
    options = ReleaseOptions("v0.2.0", tmp_path / "release", str(tiny_model_dir), train_overrides=overrides)

    empty = tmp_path / "no-data"
    empty.mkdir()
    with pytest.raises(UsageError, match="no training data"):
        train(options, empty, runs / "new-inputs")
    assert (earlier / "final").is_dir()  # a failed run costs nothing that was finished

    outcome = train(options, write_phase_data(tmp_path / "data"), runs / "new-inputs")
    assert outcome.model_dir == runs / "new-inputs" / "final" and outcome.model_dir.is_dir()
    assert sorted(path.name for path in runs.iterdir()) == ["new-inputs"]


HAIKU = "compositional_skills/writing/freeform/haiku"


def release_generation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *leaves: str) -> Callable[[str], Any]:
    """The release's generation stage on a project of the shipped `leaves`: call it with a teacher URL."""
    from conftest import shipped_project
    from labtax.config import load_config
    from labtax.release.release import ReleaseOptions
    from labtax.release.stages import generate, load_release_leaves

    repo = shipped_project(tmp_path / "repo", leaves)
    monkeypatch.chdir(repo)
    config = load_config(start=repo)
    loaded = load_release_leaves(config)

    def run(url: str) -> Any:
        options = ReleaseOptions(
            "v0.1.0", tmp_path / "release", "unused", teacher_url=(url,), teacher_model="fake-teacher",
            generation_target=2,
        )  # fmt: skip
        return generate(config, options, loaded, tmp_path / "gen", None)

    return run


def test_a_leaf_short_of_its_target_for_lack_of_budget_does_not_stop_the_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leaf whose request budget ran out ends the same on every run (a re-run replays it): the release
    goes on with its samples and says so, instead of asking for a re-run that could never finish it. (A
    leaf short because of transport failures still stops it: a re-run asks those requests again.)"""
    generate = release_generation(tmp_path, monkeypatch, HAIKU, "knowledge/science/oceanography/ocean_tides")
    rejecting = {"pair_judge": lambda stage, body: "Explanation: off task.\nScore: 1"}  # every skill pair dropped
    with running_server(answers=rejecting) as teacher:
        outcome = generate(teacher.url)
    assert outcome.short == [f"{HAIKU}/qna.yaml (0 of 2)"] and outcome.teacher_requests > 0


def test_a_leaf_short_of_its_target_after_transport_failures_stops_the_release_and_a_rerun_resumes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other half of the rule: requests lost to transport failures (here every answer is a 429, retried
    until the client gives up) are asked again by the next run, so the release stops and says to re-run;
    the same command against a teacher that answers finishes the leaves from where they stopped."""
    from labtax.errors import LabtaxError

    generate = release_generation(tmp_path, monkeypatch, HAIKU)
    with running_server(fault_rates={"429": 1.0}, retry_after="0") as failing:
        with pytest.raises(LabtaxError) as stopped:
            generate(failing.url)
        assert failing.chat_requests > 0
    message = str(stopped.value)
    assert "after teacher failures" in message and f"{HAIKU}/qna.yaml" in message
    assert "run the same release command again to resume it" in message
    with running_server() as teacher:
        outcome = generate(teacher.url)
    assert outcome.short == [] and outcome.teacher_requests > 0
