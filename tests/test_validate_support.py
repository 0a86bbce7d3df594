"""Builders for the validation tests: a small project with a taxonomy, written leaf by leaf.

The leaves are written as text (not dumped from Python values) so that tests can assert exact
lines and columns. Line numbers of the good leaves are documented beside each builder.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from labtax.config import load_config
from labtax.errors import Diagnostic
from labtax.taxonomy.leaf import git_tree_id
from labtax.validate import ValidationResult, validate_paths

ATTRIBUTION = """Title of work: Test examples
Link to work: n/a (original work)
Revision: n/a
License of the work: CC-BY-4.0
Creator names: Test Author
"""


def skill_yaml(count: int = 5, version: int = 3, prefix: str = "Question") -> str:
    """A valid skill leaf. Line 1 version, 2 created_by, 3 task_description, 4 seed_examples;
    seed i (0-based) starts on line 5 + 2*i at column 5 (`  - question:`), its answer on the next line."""
    lines = [f"version: {version}", "created_by: tester", "task_description: Answer short questions.", "seed_examples:"]
    for index in range(count):
        lines.append(f"  - question: {prefix} number {index + 1}?")
        lines.append(f"    answer: Answer number {index + 1}.")
    return "\n".join(lines) + "\n"


def knowledge_yaml(commit: str, repo: str = "documents/notes", seeds: int = 5, version: int = 3) -> str:
    """A valid knowledge leaf. Lines 1-4 header, 5 document, 6 repo, 7 commit, 8 patterns, 9 the pattern,
    10 seed_examples; seed i starts on line 11 + 8*i (`  - context:`), its pairs on lines +2, +4, +6."""
    lines = [
        f"version: {version}",
        "created_by: tester",
        "domain: testing",
        "document_outline: Notes about testing software.",
        "document:",
        f"  repo: {repo}",
        f"  commit: {commit}",
        "  patterns:",
        "    - '*.md'",
        "seed_examples:",
    ]
    for index in range(seeds):
        lines.append(f"  - context: Context paragraph number {index + 1} about testing.")
        lines.append("    questions_and_answers:")
        for pair in range(3):
            lines.append(f"      - question: Question {pair + 1} about paragraph {index + 1}?")
            lines.append(f"        answer: Answer {pair + 1}.")
    return "\n".join(lines) + "\n"


@dataclass
class Project:
    """A project directory with `pyproject.toml` ([tool.labtax]) and a taxonomy root."""

    root: Path
    taxonomy: str = "taxonomy"

    @property
    def taxonomy_root(self) -> Path:
        return self.root / self.taxonomy if self.taxonomy != "." else self.root

    def write(self, relative: str, text: str | bytes) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    def leaf(self, name: str, text: str | bytes, attribution: str | None = ATTRIBUTION) -> str:
        """Write `<taxonomy>/<name>/qna.yaml` (+ attribution.txt); returns the qna.yaml's display path."""
        prefix = "" if self.taxonomy == "." else f"{self.taxonomy}/"
        self.write(f"{prefix}{name}/qna.yaml", text)
        if attribution is not None:
            self.write(f"{prefix}{name}/attribution.txt", attribution)
        return f"{prefix}{name}/qna.yaml"

    def documents(self, name: str = "notes") -> str:
        """Write documents/<name>/ with two markdown files and `git add` them (labtax reads documents from git
        objects; the project becomes a git repository if it is not one); returns the git tree id (the pin)."""
        self.write(f"documents/{name}/intro.md", "# Testing\n\nTests check that software does what it should.\n")
        self.write(f"documents/{name}/more.md", "# More\n\nA failing test is information.\n")
        self.git_add(f"documents/{name}")
        return git_tree_id(self.root / "documents" / name)

    def git_add(self, *paths: str) -> None:
        if not (self.root / ".git").exists():
            subprocess.run(["git", "init", "-q"], cwd=self.root, check=True)
        subprocess.run(["git", "add", "--", *paths], cwd=self.root, check=True)

    def validate(self, *paths: str, check_documents: bool = False) -> ValidationResult:
        config = load_config(start=self.root)
        targets = [self.root / p for p in paths] or None
        return validate_paths(config, targets, check_documents=check_documents)

    def findings(self, *paths: str, check_documents: bool = False) -> list[tuple[str, int, int, str]]:
        """(file, line, column, rule) of every diagnostic."""
        return [
            (d.file, d.line, d.column, d.rule)
            for d in self.validate(*paths, check_documents=check_documents).diagnostics
        ]

    def only(self, *paths: str, rule: str, check_documents: bool = False) -> list[Diagnostic]:
        return [d for d in self.validate(*paths, check_documents=check_documents).diagnostics if d.rule == rule]


def make_project(root: Path, taxonomy: str = "taxonomy", extra_toml: str = "") -> Project:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(f'[tool.labtax]\ntaxonomy = "{taxonomy}"\n{extra_toml}', encoding="utf-8")
    project = Project(root, taxonomy)
    project.taxonomy_root.mkdir(parents=True, exist_ok=True)
    return project


def run_cli(
    cwd: Path, *args: str, fresh_process: bool = False, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The real `labtax` entry point, `labtax.cli.main`, run in `cwd`: in this process (fast), or in a
    fresh interpreter as the pre-commit hook and CI run it (`fresh_process=True`)."""
    if fresh_process:
        code = "import sys; from labtax.cli import main; sys.exit(main(sys.argv[1:]))"
        return subprocess.run(
            [sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    from labtax.cli import main

    out, err = io.StringIO(), io.StringIO()
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(["labtax", *args], code, out.getvalue(), err.getvalue())
