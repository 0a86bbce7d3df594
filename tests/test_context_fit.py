"""A seed or a document chunk that cannot fit the teacher's context is reported before any request: by
`labtax validate --teacher-context`, `labtax generate --dry-run` and the reviewer report (issue 12)."""

from __future__ import annotations

from pathlib import Path

from conftest import git
from labtax.config import load_config
from labtax.report import reviewer_report
from labtax.taxonomy.leaf import git_tree_id
from openai_server import running_server
from test_validate_support import ATTRIBUTION, knowledge_yaml, make_project, run_cli, skill_yaml

HUGE_ANSWER = " ".join(f"word{i}" for i in range(3000))  # ~25 kB: about 8,000 estimated tokens


def test_validate_reports_a_seed_that_cannot_fit(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    file = project.leaf("compositional_skills/a", skill_yaml().replace("Answer number 3.", HUGE_ANSWER))
    assert run_cli(project.root, "validate").returncode == 0  # no context given: not checked
    result = run_cli(project.root, "validate", "--teacher-context", "4096")
    assert result.returncode == 1
    [line] = [line for line in result.stdout.splitlines() if "[context-fit]" in line]
    assert line.startswith(f"{file}:9:5: error [context-fit] seed example 3 cannot fit the teacher's context of 4096")
    assert "response prompt with it alone is about" in line
    # A teacher with a long enough context takes it.
    assert run_cli(project.root, "validate", "--teacher-context", "32768").returncode == 0


def test_validate_reports_a_document_chunk_that_cannot_fit(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    # One 400-word chunk of long "words" (no spaces inside) is far larger than 1,024 tokens.
    project.write("documents/notes/long.md", " ".join("x" * 40 for _ in range(800)) + "\n")
    project.git_add("documents/notes")
    tree = git_tree_id(project.root / "documents/notes")
    project.leaf("knowledge/k", knowledge_yaml(tree))
    result = run_cli(project.root, "validate", "--teacher-context", "2048")
    lines = [line for line in result.stdout.splitlines() if "[context-fit]" in line]
    assert lines and all("chunk " in line and "of long.md cannot fit" in line for line in lines)
    assert result.returncode == 1


def test_generate_dry_run_and_the_report_name_the_misfits(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    project.leaf("compositional_skills/fits", skill_yaml())
    git(project.root, "init", "-q")
    git(project.root, "add", "-A")
    git(project.root, "commit", "-qm", "base")
    project.leaf("compositional_skills/huge", skill_yaml().replace("Answer number 2.", HUGE_ANSWER))
    remote = knowledge_yaml("a" * 40, repo="https://github.com/example/docs")
    project.leaf("knowledge/remote", remote, ATTRIBUTION)
    with running_server() as server:
        result = run_cli(
            project.root,
            "generate",
            "--output",
            str(tmp_path / "gen"),
            "--teacher-url",
            server.url,
            "--teacher-model",
            "fake-teacher",
            "--dry-run",
            "--teacher-context",
            "4096",
        )
        assert server.chat_requests == 0
    assert result.returncode == 1, result.stdout + result.stderr
    assert "does not fit: compositional_skills/huge/qna.yaml: seed example 2 cannot fit" in result.stdout
    assert "compositional_skills/fits" not in result.stdout.split("does not fit")[-1]
    report = reviewer_report(load_config(start=project.root), "main")
    assert "Context fit" in report and "seed example 2 cannot fit the teacher" in report
    # Remote documents the report did not fetch are "not checked", never a silent pass.
    assert "not checked" in report and "remote documents" in report
