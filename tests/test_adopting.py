"""Issue 12: an InstructLab taxonomy adopts labtax with no false alarms, old problems and all.

First each false alarm, on a leaf shaped like merged InstructLab contributions (tests/data/instructlab);
each of these failed before. Then docs/adopting.md followed step by step on a temporary repository laid out
like InstructLab's (branches at the top level) with realistic old problems in untouched leaves: the real
pre-commit hook (this repository's hook definition) and `labtax validate --base` let a contributor's clean
change through, with notes about the old problems, and still stop a bad one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT, git
from labtax.errors import Severity
from labtax.taxonomy.leaf import git_tree_id
from test_validate_support import ATTRIBUTION, Project, make_project, run_cli, skill_yaml

DATA = Path(__file__).parent / "data" / "instructlab"
HOOKS = yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))


def instructlab_project(root: Path) -> Project:
    """A repository laid out like InstructLab's taxonomy: branches at the top, `taxonomy = "."`."""
    return make_project(root, taxonomy=".")


# --- each false alarm of issue 12 -------------------------------------------------------------------


def test_the_same_instruction_over_different_passages_is_not_a_duplicate(tmp_path: Path) -> None:
    project = instructlab_project(tmp_path / "t")
    text = (DATA / "grounded_same_question.yaml").read_text()
    project.leaf("compositional_skills/grounded/entailment", text, (DATA / "grounded_attribution.txt").read_text())
    result = project.validate()
    assert result.diagnostics == [], result.diagnostics
    # The same question over the same passage is still a duplicate.
    first_seed = text.split("  - context:")[1]
    project.leaf(
        "compositional_skills/grounded/entailment",
        text + "  - context:" + first_seed.replace("Yes. The passage", "Yes, since the passage"),
        (DATA / "grounded_attribution.txt").read_text(),
    )
    assert [d.rule for d in project.validate().diagnostics] == ["duplicate-question"]


def test_a_summarisation_seed_with_a_968_word_article_is_accepted(tmp_path: Path) -> None:
    project = instructlab_project(tmp_path / "t")
    text = (DATA / "summarisation_long_article.yaml").read_text()
    project.leaf(
        "compositional_skills/grounded/summarisation", text, (DATA / "summarisation_attribution.txt").read_text()
    )
    assert project.validate().diagnostics == []
    # The same article in a knowledge seed is over InstructLab's knowledge limits, which still apply there.
    article = yaml.safe_load(text)["seed_examples"][0]["context"]
    assert len(article.split()) == 968


def test_a_public_domain_budget_leaf_without_a_revision_is_accepted(tmp_path: Path) -> None:
    project = instructlab_project(tmp_path / "t")
    project.leaf(
        "knowledge/economics/us_federal_budget",
        (DATA / "knowledge_us_budget.yaml").read_text(),
        (DATA / "knowledge_us_budget_attribution.txt").read_text(),
    )
    result = project.validate()
    assert result.errors == 0, result.diagnostics
    # "Revision" is asked for "where possible": its absence is a warning, not an error.
    [warning] = result.diagnostics
    assert (warning.rule, warning.severity) == ("attribution-field", Severity.WARNING)
    assert "'Revision:' line is missing" in warning.message


# --- docs/adopting.md, followed on an InstructLab-shaped repository ---------------------------------

OLD_V2_FEW_SEEDS = skill_yaml(count=4, version=2)  # older InstructLab skills had fewer than 5 seeds
OLD_TRAILING = skill_yaml().replace("created_by: tester", "created_by: tester  ")
OLD_ATTRIBUTION_NO_CREATOR = ATTRIBUTION.replace("Creator names: Test Author\n", "")


@pytest.fixture
def hook_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRE_COMMIT_HOME", str(tmp_path_factory.mktemp("pre-commit-home")))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("PRE_COMMIT", raising=False)


def commit(cwd: Path, message: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "commit", "-m", message], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


def old_taxonomy(root: Path) -> Project:
    """The repository before adoption: clean leaves, the false-alarm leaves, and old problems."""
    project = instructlab_project(root)
    (root / "pyproject.toml").unlink()  # not adopted yet
    project.leaf("compositional_skills/writing/freeform/haiku", skill_yaml())
    project.leaf(
        "compositional_skills/grounded/entailment",
        (DATA / "grounded_same_question.yaml").read_text(),
        (DATA / "grounded_attribution.txt").read_text(),
    )
    project.leaf(
        "compositional_skills/grounded/summarisation",
        (DATA / "summarisation_long_article.yaml").read_text(),
        (DATA / "summarisation_attribution.txt").read_text(),
    )
    project.leaf(
        "knowledge/economics/us_federal_budget",
        (DATA / "knowledge_us_budget.yaml").read_text(),
        (DATA / "knowledge_us_budget_attribution.txt").read_text(),
    )
    # Old problems, in leaves nobody is editing:
    project.leaf("compositional_skills/writing/freeform/jokes/puns", OLD_V2_FEW_SEEDS)  # too-few-items
    project.leaf(
        "foundational_skills/reasoning/logic", OLD_TRAILING, attribution=None
    )  # trailing-space, no attribution
    project.leaf(
        "compositional_skills/extraction/tables", skill_yaml(prefix="Table question"), OLD_ATTRIBUTION_NO_CREATOR
    )
    # A knowledge leaf whose documents live in the repository (labtax's offline form).
    project.write("knowledge_documents/tides/tides.md", "# Tides\n\nThe Moon raises two tides a day.\n")
    tree = git_tree_id(root / "knowledge_documents/tides")
    knowledge = (DATA / "knowledge_us_budget.yaml").read_text()
    knowledge = re.sub(r"document:\n(.|\n)*", "", knowledge) + (
        f"document:\n  repo: knowledge_documents/tides\n  commit: {tree}\n  patterns:\n    - '*.md'\n"
    )
    project.leaf("knowledge/science/tides", knowledge, (DATA / "summarisation_attribution.txt").read_text())
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "an InstructLab taxonomy with a history")
    return project


def adopt(project: Project) -> None:
    """docs/adopting.md, steps 1-3: [tool.labtax], the hook, the first commit."""
    (project.root / "pyproject.toml").write_text('[tool.labtax]\ntaxonomy = "."\n', encoding="utf-8")
    [exported] = HOOKS
    # The exported hook, run from this environment instead of a clone (the same entry and file types).
    hook = {key: exported[key] for key in ("id", "name", "entry", "types_or", "verbose")} | {"language": "system"}
    config = {"repos": [{"repo": "local", "hooks": [hook]}]}
    (project.root / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    installed = subprocess.run(
        [sys.executable, "-m", "pre_commit", "install"], cwd=project.root, capture_output=True, text=True, check=False
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    git(project.root, "add", "-A")
    adopted = commit(project.root, "adopt labtax")
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr


def test_adopting_an_instructlab_taxonomy_with_old_problems(tmp_path: Path, hook_env: None) -> None:
    project = old_taxonomy(tmp_path / "taxonomy")
    root = project.root
    adopt(project)

    # The whole tree has old problems, and labtax sees them all ...
    whole = run_cli(root, "validate")
    assert whole.returncode == 1
    for where in ("jokes/puns/qna.yaml", "logic/qna.yaml", "logic/attribution.txt", "tables/attribution.txt"):
        assert where in whole.stdout, where
    # ... but none of the false alarms of issue 12.
    for leaf in ("entailment", "summarisation", "us_federal_budget"):
        assert not any(leaf in line and "error" in line for line in whole.stdout.splitlines()), leaf
    # On main, nothing is touched: the old problems are notices and nothing fails.
    on_main = run_cli(root, "validate", "--base", "main")
    assert on_main.returncode == 0, on_main.stdout + on_main.stderr

    # A contributor adds a leaf and fixes one word in an old leaf whose attribution.txt is old.
    git(root, "checkout", "-q", "-b", "contribution")
    project.leaf("compositional_skills/writing/freeform/limericks", skill_yaml(prefix="Limerick"))
    tables = root / "compositional_skills/extraction/tables/qna.yaml"
    tables.write_text(tables.read_text().replace("Answer short questions.", "Answer short questions about tables."))
    git(root, "add", "-A")
    hook = commit(root, "limericks, and a clearer task for tables")
    output = hook.stdout + hook.stderr
    assert hook.returncode == 0, output
    assert re.search(r"labtax validate\.+Passed", output)
    # The clear note: the untouched attribution.txt is old, the change gets through, generation waits.
    assert "compositional_skills/extraction/tables/attribution.txt:1:1: notice [attribution-field]" in output
    assert "pre-existing, not blocking this change" in output and "generation skips the leaf" in output

    # The PR workflow's verdict is the same: exit 0, the old problems listed once as notices.
    pr = run_cli(root, "validate", "--base", "main", "--format", "github")
    assert pr.returncode == 0, pr.stdout + pr.stderr
    notices = [line for line in pr.stdout.splitlines() if line.startswith("::notice")]
    errors = [line for line in pr.stdout.splitlines() if line.startswith("::error")]
    assert errors == [] and len(notices) >= 4
    assert len(notices) == len(set(notices))  # once each
    as_json = run_cli(root, "validate", "--base", "main", "--format", "json")
    records = json.loads(as_json.stdout)  # one array, blocking findings and notices together
    assert as_json.returncode == 0 and {r["severity"] for r in records} == {"notice"}
    assert len(records) == len(notices)

    # A bad change is still stopped, by the hook and by the PR workflow.
    project.leaf("compositional_skills/writing/freeform/sonnets", skill_yaml(count=3))
    git(root, "add", "-A")
    refused = commit(root, "sonnets")
    assert refused.returncode != 0
    assert "compositional_skills/writing/freeform/sonnets/qna.yaml:5:3: error [too-few-items]" in (
        refused.stdout + refused.stderr
    )
    assert run_cli(root, "validate", "--base", "main").returncode == 1
    git(root, "reset", "-q", "--hard", "HEAD")  # the staged sonnets go too

    # An edited document without a new pin is caught where the contributor works: by the hook.
    (root / "knowledge_documents/tides/tides.md").write_text("# Tides\n\nThe Moon and the Sun raise the tides.\n")
    git(root, "add", "-A")
    stale = commit(root, "edit the tides document")
    assert stale.returncode != 0
    stale_output = stale.stdout + stale.stderr
    assert "knowledge/science/tides/qna.yaml:" in stale_output and "[document-check]" in stale_output
    new_tree = git_tree_id(root / "knowledge_documents/tides")
    assert f"set document.commit to {new_tree}" in stale_output
    tides = root / "knowledge/science/tides/qna.yaml"
    tides.write_text(re.sub(r"commit: [0-9a-f]{40}", f"commit: {new_tree}", tides.read_text()))
    git(root, "add", "-A")
    repinned = commit(root, "edit the tides document, with its new pin")
    assert repinned.returncode == 0, repinned.stdout + repinned.stderr
