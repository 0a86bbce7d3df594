"""Shared fixtures. Every test runs with its own HOME and caches, and git has an identity and no
global configuration, so nothing on the developer's machine leaks in (pre-commit's habit)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from real_model import ServedModel

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("LABTAX_CACHE_DIR", str(home / ".cache" / "labtax"))
    monkeypatch.setenv(
        "PRE_COMMIT_HOME", os.environ.get("LABTAX_TEST_PRE_COMMIT_HOME", str(home / ".cache" / "pre-commit"))
    )
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test Author")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "author@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test Committer")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "committer@example.com")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home / ".cache" / "huggingface"))
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    (home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n[commit]\n\tgpgsign = false\n")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "LABTAX_TEACHER_API_KEY", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return home


def needs_extra(*extras: str) -> pytest.MarkDecorator:
    """Skip a test of a command behind an extra where that extra is not installed: only in the core
    install's runs (.ci/core-versions); .ci/setup installs every extra, so the full suite skips nothing."""
    from labtax.extras import modules_of

    missing = [extra for extra in extras if not all(importlib.util.find_spec(m) for m in modules_of(extra))]
    return pytest.mark.skipif(bool(missing), reason=f"needs labtax[{','.join(missing)}]")


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` for a test; fail the test with git's message when it fails."""
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"git {' '.join(args)} failed: {result.stderr}"
    return result.stdout


def shipped_project(root: Path, leaves: Iterable[str], documents: Iterable[str] = ("ocean_tides",)) -> Path:
    """A labtax project at `root` holding some of the shipped leaves and documents, committed to git."""
    for leaf in leaves:
        shutil.copytree(REPO_ROOT / "taxonomy" / leaf, root / "taxonomy" / leaf)
    for name in documents:
        shutil.copytree(REPO_ROOT / "documents" / name, root / "documents" / name)
    (root / "pyproject.toml").write_text('[tool.labtax]\ntaxonomy = "taxonomy"\n')
    git(root.parent, "init", "-q", str(root))
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "taxonomy")
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama-architecture model with an in-process tokenizer, built once per session."""
    from labtax.train.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a transformers directory, prepared by `.ci/run` before the suite."""
    from real_model import require_smollm2

    try:
        return require_smollm2()
    except RuntimeError as exc:
        missing = str(exc)  # failed outside the handler: one line, not the same line twice (chained)
    pytest.fail(missing, pytrace=False)


@pytest.fixture(scope="session")
def served_smollm2(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedModel]:
    """`transformers serve` with SmolLM2-135M-Instruct on 127.0.0.1, shared by the session's tests."""
    from real_model import serve

    with serve(smollm2_dir, tmp_path_factory.mktemp("serve-smollm2")) as served:
        yield served


@pytest.fixture(scope="session")
def served_tiny_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedModel]:
    """`transformers serve` with the tiny random model on 127.0.0.1: a real server, answers of random words."""
    from real_model import serve

    with serve(tiny_model_dir, tmp_path_factory.mktemp("serve-tiny")) as served:
        yield served
