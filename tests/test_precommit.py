"""The pre-commit hooks, run for real: `git commit` in temporary repositories with `pre-commit install`,
this repository's `.pre-commit-config.yaml`, and `.pre-commit-hooks.yaml` used as an external repository
(pre-commit clones it and pip-installs labtax's core install into its own environment, once per test
session). Nothing is downloaded while the tests run: pip works offline from the wheelhouse `.ci/setup`
fills beforehand."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT, git
from labtax.taxonomy.discover import looks_like_leaf_file
from test_validate_support import ATTRIBUTION, make_project, run_cli, skill_yaml

HOOK_MANIFEST = REPO_ROOT / ".pre-commit-hooks.yaml"
OWN_CONFIG = REPO_ROOT / ".pre-commit-config.yaml"
BAD_LINE = "taxonomy/compositional_skills/bad/qna.yaml:5:3: error [too-few-items] 'seed_examples' has 3 seed examples"


WHEELHOUSE = REPO_ROOT / ".labtax-cache" / "wheelhouse"


def wheelhouse() -> Path:
    """The packages the hook environments install, put there by `.ci/setup` for these inputs."""
    stamp = WHEELHOUSE / ".complete"
    inputs = b"".join((REPO_ROOT / name).read_bytes() for name in STAMP_INPUTS)
    if not stamp.is_file() or stamp.read_text().strip() != hashlib.sha256(inputs).hexdigest():
        pytest.fail("the hook environments' packages are missing or out of date: run .ci/setup", pytrace=False)
    return WHEELHOUSE


STAMP_INPUTS = (
    "pyproject.toml",
    ".pre-commit-config.yaml",
    ".pre-commit-hooks.yaml",
    ".ci/constraints.txt",
)  # as .ci/setup


@pytest.fixture(scope="session")
def shared_pre_commit_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One PRE_COMMIT_HOME for the session: hook environments are built once (pip installs are slow)."""
    configured = os.environ.get("LABTAX_TEST_PRE_COMMIT_HOME")
    return Path(configured) if configured else tmp_path_factory.mktemp("pre-commit-home")


@pytest.fixture
def hook_env(shared_pre_commit_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PRE_COMMIT_HOME", str(shared_pre_commit_home))
    # pip in the hook environments installs from the wheelhouse only: a missing package fails, never downloads.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheelhouse()))
    monkeypatch.setenv("VIRTUALENV_NO_PERIODIC_UPDATE", "1")  # virtualenv's background wheel refresh
    monkeypatch.setenv("VIRTUALENV_NO_DOWNLOAD", "1")
    # `language: system` hooks find `labtax` on PATH, as in a developer's activated environment.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("PRE_COMMIT", raising=False)
    return shared_pre_commit_home


def pre_commit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", *args], cwd=cwd, capture_output=True, text=True, timeout=900, check=False
    )


def commit(cwd: Path, message: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "commit", "-m", message], cwd=cwd, capture_output=True, text=True, timeout=900, check=False
    )


def own_hook(hook_id: str) -> dict[str, object]:
    config = yaml.safe_load(OWN_CONFIG.read_text(encoding="utf-8"))
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    [hook] = [hook for hook in hooks if hook["id"] == hook_id]
    return hook


def taxonomy_repo(root: Path, config: dict[str, object]) -> Path:
    project = make_project(root)
    project.leaf("compositional_skills/good", skill_yaml())
    (root / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    git(root, "init", "-q")
    return root


def test_hook_gets_every_file_and_reports_the_look_alikes(tmp_path: Path) -> None:
    """The hook passes every file of the commit (an edited knowledge document must re-check its pin);
    `labtax validate --touched` reports leaf look-alikes and ignores the rest."""
    [hook] = yaml.safe_load(HOOK_MANIFEST.read_text(encoding="utf-8"))
    assert (hook["id"], hook["entry"], hook["language"]) == ("labtax-validate", "labtax validate --touched", "python")
    assert "files" not in hook and "files" not in own_hook("labtax-validate")
    assert own_hook("labtax-validate")["entry"] == hook["entry"]
    project = make_project(tmp_path / "p")
    look_alikes = ["qna.yml", "QNA.yaml", "Qna.YAML", "qna.yaml.txt", "qna_v2.yaml", "qna"]
    others = ["README.md", "my_qna_notes.md", "questions.yaml", "qnaire.txt"]
    for name in look_alikes + others:
        project.write(f"taxonomy/knowledge/x/{name}", "text\n")
        assert looks_like_leaf_file(name) == (name in look_alikes), name
    result = run_cli(
        project.root, "validate", "--touched", *[f"taxonomy/knowledge/x/{n}" for n in look_alikes + others]
    )
    reported = {line.split(":")[0].rsplit("/", 1)[1] for line in result.stdout.splitlines()}
    assert reported == set(look_alikes), result.stdout
    assert all("[file-name]" in line for line in result.stdout.splitlines())


def test_commit_with_a_bad_leaf_is_refused(tmp_path: Path, hook_env: Path) -> None:
    repo = taxonomy_repo(
        tmp_path / "taxonomy-repo", {"repos": [{"repo": "local", "hooks": [own_hook("labtax-validate")]}]}
    )
    installed = pre_commit(repo, "install")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    git(repo, "add", "-A")
    good = commit(repo, "a good leaf")
    assert good.returncode == 0, good.stdout + good.stderr
    assert re.search(r"labtax validate\.+Passed", good.stdout + good.stderr)

    (repo / "taxonomy/compositional_skills/bad").mkdir()
    (repo / "taxonomy/compositional_skills/bad/qna.yaml").write_text(skill_yaml(3))
    (repo / "taxonomy/compositional_skills/bad/attribution.txt").write_text(ATTRIBUTION)
    git(repo, "add", "-A")
    bad = commit(repo, "a bad leaf")
    output = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert re.search(r"labtax validate\.+Failed", output)
    assert BAD_LINE in output
    assert "Traceback" not in output
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "1"

    # A misnamed leaf is refused too, not skipped.
    (repo / "taxonomy/compositional_skills/bad/qna.yaml").rename(repo / "taxonomy/compositional_skills/bad/qna.yml")
    (repo / "taxonomy/compositional_skills/bad/qna.yml").write_text(skill_yaml())
    git(repo, "add", "-A")
    misnamed = commit(repo, "misnamed")
    assert misnamed.returncode != 0
    assert "taxonomy/compositional_skills/bad/qna.yml:1:1: error [file-name]" in misnamed.stdout + misnamed.stderr

    (repo / "taxonomy/compositional_skills/bad/qna.yml").rename(repo / "taxonomy/compositional_skills/bad/qna.yaml")
    git(repo, "add", "-A")
    fixed = commit(repo, "fixed")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr


def test_own_config_hygiene_hooks(tmp_path: Path, hook_env: Path) -> None:
    """This repository's .pre-commit-config.yaml, as is: the hygiene hooks install (from PyPI) and work."""
    repo = taxonomy_repo(tmp_path / "repo", {})
    shutil.copy(OWN_CONFIG, repo / ".pre-commit-config.yaml")
    (repo / "notes.txt").write_text("trailing   \nno final newline")
    git(repo, "add", "-A")
    first = pre_commit(repo, "run")
    assert first.returncode == 1, first.stdout + first.stderr
    assert re.search(r"trim trailing whitespace\.+Failed", first.stdout)
    assert re.search(r"fix end of files\.+Failed", first.stdout)
    assert re.search(r"labtax validate\.+Passed", first.stdout)
    assert (repo / "notes.txt").read_text() == "trailing\nno final newline\n"
    git(repo, "add", "-A")
    second = pre_commit(repo, "run")
    assert second.returncode == 0, second.stdout + second.stderr


def test_this_repository_passes_its_own_hooks(tmp_path: Path, hook_env: Path) -> None:
    """`pre-commit run --all-files`, as CONTRIBUTING.md says to run it, on a copy of this repository's
    tracked files: nothing to fix (two docs once ended in a blank line, and the hook failed on a clean
    clone), and labtax validate runs once over every leaf."""
    repo = tmp_path / "repo"
    for name in git(REPO_ROOT, "ls-files", "-z").split("\0"):
        source = REPO_ROOT / name
        if name and source.is_file() and not source.is_symlink():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, repo / name)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    ran = pre_commit(repo, "run", "--all-files")
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    assert ran.stdout.count("leaves checked") == 1  # one process (require_serial): one summary


def _hooks_repository(destination: Path) -> str:
    """A git repository holding this project's tracked files (their working-tree content, without the
    taxonomy, tests and docs), as a user's `repo:` URL would give pre-commit; returns its commit."""
    tracked = git(REPO_ROOT, "ls-files", "-z").split("\0")
    skipped = ("tests/", "benchmarks/", "taxonomy/", "documents/", "docs/", ".github/")
    for name in tracked:
        source = REPO_ROOT / name
        if name and not name.startswith(skipped) and source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, destination / name)
    # Files not committed yet (this working tree) are what the test is about.
    for name in ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml"):
        shutil.copy(REPO_ROOT / name, destination / name)
    for directory in ("schema", "tools/labtax"):
        shutil.copytree(
            REPO_ROOT / directory,
            destination / directory,
            ignore=shutil.ignore_patterns("__pycache__"),
            dirs_exist_ok=True,
        )
    git(destination, "init", "-q")
    git(destination, "add", "-A")
    git(destination, "commit", "-qm", "hooks")
    return git(destination, "rev-parse", "HEAD").strip()


def test_exported_hook_as_an_external_repository(tmp_path: Path, hook_env: Path) -> None:
    hooks_repo = tmp_path / "labtax-hooks"
    rev = _hooks_repository(hooks_repo)
    config = {"repos": [{"repo": str(hooks_repo), "rev": rev, "hooks": [{"id": "labtax-validate"}]}]}
    repo = taxonomy_repo(tmp_path / "taxonomy-repo", config)
    (repo / "taxonomy/compositional_skills/bad").mkdir()
    (repo / "taxonomy/compositional_skills/bad/qna.yaml").write_text(skill_yaml(3))
    (repo / "taxonomy/compositional_skills/bad/attribution.txt").write_text(ATTRIBUTION)
    git(repo, "add", "-A")
    # The hook runs from pre-commit's own environment: take our venv off PATH to prove it.
    env = dict(
        os.environ,
        PATH=os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != str(Path(sys.executable).parent)),
    )
    bad = subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", "--all-files"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert BAD_LINE in bad.stdout
    (repo / "taxonomy/compositional_skills/bad/qna.yaml").write_text(skill_yaml())
    good = subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", "--all-files"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert good.returncode == 0, good.stdout + good.stderr
    # The hook's environment has labtax and none of the training stack.
    [site_packages] = [
        path
        for path in hook_env.glob("repo*/py_env-*/lib/python*/site-packages")
        if list(path.glob("labtax-*.dist-info"))
    ]
    assert not (site_packages / "torch").exists()
    assert not (site_packages / "transformers").exists()
    core_install_runs_the_contributor_commands(site_packages.parents[2] / "bin", repo)


def core_install_runs_the_contributor_commands(bin_dir: Path, repo: Path) -> None:
    """The hook environment is a real core install (`pip install labtax`): nothing an extra is for is in
    it, validate/check/diff/report work there, and the other commands name the extra they need."""
    from labtax.extras import modules_of

    python = bin_dir / "python"
    probe = "import importlib.util, sys; print(*[m for m in sys.argv[1:] if importlib.util.find_spec(m)])"
    # The exported hook installs the `pdf` extra on purpose (.pre-commit-hooks.yaml); nothing else.
    heavy = sorted(set(modules_of("all")) - set(modules_of("pdf")))
    present = subprocess.run([python, "-c", probe, *heavy], capture_output=True, text=True, check=True)
    assert present.stdout.split() == []

    def labtax(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [bin_dir / "labtax", *args], cwd=repo, capture_output=True, text=True, timeout=300, check=False
        )

    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "good leaves")
    git(repo, "checkout", "-qb", "topic")
    copy = repo / "taxonomy/compositional_skills/good_again"
    shutil.copytree(repo / "taxonomy/compositional_skills/good", copy)
    assert labtax("check").returncode == 0
    diff = labtax("diff", "--base", "main")
    assert diff.returncode == 0 and diff.stdout.split() == ["added", "compositional_skills/good_again/qna.yaml"]
    report = labtax("report", "--base", "main")
    assert report.returncode == 0, report.stderr
    assert "**Near-duplicate seeds** (Jaccard" in report.stdout  # found by the exact join: no extra needed
    for command, extra in (("generate", "generate"), ("curate", "curate"), ("train", "train"), ("evaluate", "train")):
        result = labtax(command, "--help")
        assert result.returncode == 0, result.stderr
        arguments = {
            "generate": ["-o", "gen", "--teacher-model", "m"],
            "curate": ["--samples", "gen", "--output", "data"],
            "train": ["--base-model", "m", "--data", "data", "--output", "run"],
            "evaluate": ["--model", "run", "--baseline", "m"],
        }[command]
        result = labtax(command, *arguments)
        assert result.returncode == 2
        [line] = result.stderr.splitlines()
        assert line.startswith(f"error: this needs the '{extra}' extra") and line.endswith(
            f"pip install 'labtax[{extra}]'"
        )
    release = labtax("release", "v1.0.0", "--dry-run")
    assert release.returncode == 2 and release.stderr.strip().endswith("pip install 'labtax[release]'")
