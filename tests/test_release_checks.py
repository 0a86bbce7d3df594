"""`labtax release` refuses a bad request in about a second, before any generation or training, with
a message that says what to do (exit code 2)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import REPO_ROOT, git
from labtax.cli import main

LEAF = "compositional_skills/writing/freeform/haiku"


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed one-leaf taxonomy, tagged v1.0.0, as the current directory."""
    root = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "taxonomy" / LEAF, root / "taxonomy" / LEAF)
    (root / "pyproject.toml").write_text('[tool.labtax]\ntaxonomy = "taxonomy"\n')
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "leaf")
    git(root, "tag", "v1.0.0")
    monkeypatch.chdir(root)
    return root


def release(*args: str) -> int:
    return main(["release", *args, "--base-model", "org/base", "--teacher-model", "t", "--teacher-url", "http://x"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["1.0.0", "--repo", "org/m"], "use a tag like v1.2.3"),
        (["v2.0.0", "--repo", "org/m"], "tag v2.0.0 does not exist; tag the commit to release"),
        (["v1.0.0"], "no Hub repository: pass --repo"),
        (["v1.0.0", "--repo", "org/m"], "HF_TOKEN is not set"),
    ],
)
def test_bad_requests_are_refused_before_any_work(
    repo: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert release(*args, "--output", str(repo / "out")) == 2
    assert message in capsys.readouterr().err
    assert not (repo / "out").exists()


def test_a_tag_on_another_commit_and_uncommitted_leaves_are_refused(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    leaf = repo / "taxonomy" / LEAF / "qna.yaml"
    leaf.write_text(leaf.read_text() + "\n")
    assert release("v1.0.0", "--repo", "org/m") == 2
    assert "the taxonomy has uncommitted changes" in capsys.readouterr().err
    git(repo, "commit", "-q", "-am", "edit")
    assert release("v1.0.0", "--repo", "org/m") == 2
    assert "tag v1.0.0 points at" in capsys.readouterr().err


def test_offline_mode_is_refused_for_a_real_release(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_TOKEN", "hf_x")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert release("v1.0.0", "--repo", "org/m") == 2
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err


def test_the_cache_key_is_a_hash_of_every_leaf_hash(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["release", "v1.0.0", "--cache-key"]) == 0
    first = capsys.readouterr().out
    leaf = repo / "taxonomy" / LEAF / "qna.yaml"
    leaf.write_text(leaf.read_text().replace("task_description: ", "task_description: Short poems. ", 1))
    assert main(["release", "v1.0.0", "--cache-key"]) == 0
    second = capsys.readouterr().out
    assert first.startswith("key=") and len(first.strip()) == 4 + 64 and first != second
