"""`labtax check`: the whole taxonomy validated, then a one-screen summary."""

from __future__ import annotations

from pathlib import Path

from conftest import REPO_ROOT
from test_validate_support import Project, knowledge_yaml, make_project, run_cli, skill_yaml


def small_taxonomy(root: Path) -> Project:
    project = make_project(root)
    tree = project.documents()
    project.leaf("knowledge/testing/notes", knowledge_yaml(tree))
    project.leaf("compositional_skills/writing/poems", skill_yaml())
    grounded = skill_yaml().replace("  - question:", "  - context: Some text to work on.\n    question:")
    project.leaf("compositional_skills/extraction/fields", grounded)
    project.leaf("foundational_skills/reasoning/sums", skill_yaml(6))
    return project


def test_summary_counts_leaves_per_branch_and_kind(tmp_path: Path) -> None:
    project = small_taxonomy(tmp_path / "p")
    result = run_cli(project.root, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "taxonomy taxonomy/: 4 leaves",
        "",
        "branch                       knowledge  freeform_skill  grounded_skill   seeds    Q&A",
        "knowledge                            1               0               0       5     15",
        "foundational_skills                  0               1               0       6      6",
        "compositional_skills                 0               1               1      10     10",
        "total                                1               2               1      21     31",
        "",
        "0 errors, 0 warnings: OK",
    ]
    assert len(result.stdout.splitlines()) < 25  # one screen


def test_problems_come_first_then_the_verdict(tmp_path: Path) -> None:
    project = small_taxonomy(tmp_path / "p")
    project.leaf("compositional_skills/writing/poems", skill_yaml(version=2))
    project.leaf("compositional_skills/broken", "version: 3\nseed_examples: [\n")
    project.write("documents/notes/more.md", "changed\n")  # the knowledge pin no longer matches
    result = run_cli(project.root, "check")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("taxonomy/compositional_skills/broken/qna.yaml:3:1: error [yaml-syntax]")
    assert any("warning [deprecated-version]" in line for line in lines)
    assert any("error [document-check]" in line for line in lines)
    assert "1 qna.yaml files could not be read at all (see the errors above)" in lines
    assert lines[-1] == "2 errors, 1 warnings: FAILED"
    # Remote documents can be left out (offline); documents kept in this repository are always checked
    # against their pin, from git objects (issue 12: the hook and the PR workflow catch a stale pin).
    offline = run_cli(project.root, "check", "--no-check-documents")
    assert offline.stdout.splitlines()[-1] == "2 errors, 1 warnings: FAILED"


def test_check_honours_root(tmp_path: Path) -> None:
    project = small_taxonomy(tmp_path / "p")
    result = run_cli(
        project.root / "documents", "check", "--root", str(project.root / "taxonomy" / "compositional_skills")
    )
    assert result.returncode == 1  # a branch is not a taxonomy root: its leaves are misplaced
    assert "error [leaf-place]" in result.stdout


def test_this_repository_taxonomy_passes_check() -> None:
    result = run_cli(REPO_ROOT, "check", fresh_process=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "0 errors, 0 warnings: OK"
