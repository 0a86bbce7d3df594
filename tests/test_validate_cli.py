"""`labtax validate` as users run it: output formats, exit codes, taxonomy roots, severities, documents."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import git
from labtax.cli import main
from labtax.taxonomy.leaf import git_tree_id
from test_validate_support import ATTRIBUTION, Project, knowledge_yaml, make_project, run_cli, skill_yaml


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = make_project(tmp_path / "project")
    project.leaf("compositional_skills/good", skill_yaml())
    project.leaf("compositional_skills/few", skill_yaml(count=3, version=2))
    return project


def test_text_format_and_exit_code_1(project: Project) -> None:
    result = run_cli(project.root, "validate", fresh_process=True)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "taxonomy/compositional_skills/few/qna.yaml:1:10: warning [deprecated-version] qna.yaml version 2 is "
        "deprecated; set 'version: 3' at the top (version 3 needs at least 5 seed examples and a non-empty "
        "task_description)",
        "taxonomy/compositional_skills/few/qna.yaml:5:3: error [too-few-items] 'seed_examples' has 3 seed "
        "examples; at least 5 are needed",
    ]
    assert result.stderr.strip() == "2 leaves checked: 1 errors, 1 warnings"


def test_quiet_prints_only_problems(project: Project) -> None:
    result = run_cli(project.root, "validate", "--quiet")
    assert result.returncode == 1 and result.stderr == "" and len(result.stdout.splitlines()) == 2


def test_github_annotations(project: Project) -> None:
    result = run_cli(project.root, "validate", "--format", "github")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "::warning file=taxonomy/compositional_skills/few/qna.yaml,line=1,col=10,title=deprecated-version::"
        "qna.yaml version 2 is deprecated; set 'version: 3' at the top (version 3 needs at least 5 seed "
        "examples and a non-empty task_description) [.version]",
        "::error file=taxonomy/compositional_skills/few/qna.yaml,line=5,col=3,title=too-few-items::"
        "'seed_examples' has 3 seed examples; at least 5 are needed [.seed_examples]",
    ]


def test_json_records_have_exactly_the_documented_keys(project: Project) -> None:
    result = run_cli(project.root, "validate", "--format", "json", fresh_process=True)
    assert result.returncode == 1
    records = json.loads(result.stdout)
    assert [list(record) for record in records] == [
        ["file", "line", "column", "yaml_path", "severity", "rule", "message"]
    ] * 2
    assert records[1] == {
        "file": "taxonomy/compositional_skills/few/qna.yaml",
        "line": 5,
        "column": 3,
        "yaml_path": ".seed_examples",
        "severity": "error",
        "rule": "too-few-items",
        "message": "'seed_examples' has 3 seed examples; at least 5 are needed",
    }


def test_clean_run_exits_0_and_json_is_an_empty_list(project: Project) -> None:
    assert run_cli(project.root, "validate", "taxonomy/compositional_skills/good").returncode == 0
    result = run_cli(project.root, "validate", "-f", "json", "taxonomy/compositional_skills/good/qna.yaml")
    assert (result.returncode, json.loads(result.stdout)) == (0, [])


def test_warnings_alone_exit_0(project: Project) -> None:
    project.leaf("compositional_skills/few", skill_yaml(version=2))
    result = run_cli(project.root, "validate")
    assert result.returncode == 0 and "warning [deprecated-version]" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["validate", "no/such/path"], "no/such/path: no such file or directory"),
        (["validate", "--format", "xml"], "Invalid value for '--format'"),
        (["validate", "--root", "missing"], "is not a directory; pass --root"),
        (["validate", "--no-such-option"], "No such option"),
    ],
)
def test_usage_errors_exit_2(project: Project, args: list[str], message: str) -> None:
    result = run_cli(project.root, *args, fresh_process=True)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_severity_configuration_exits_2(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", extra_toml='[tool.labtax.severity]\ntab = "fatal"\n')
    result = run_cli(project.root, "validate")
    assert result.returncode == 2
    assert "[tool.labtax.severity] tab = 'fatal'; use one of: error, warning, off" in result.stderr


def test_in_process_main_returns_exit_codes(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.root)
    assert main(["validate", "taxonomy/compositional_skills/good"]) == 0
    assert main(["validate"]) == 1
    assert main(["validate", "missing"]) == 2


# --- severities -----------------------------------------------------------------------------------


def test_severity_overrides(tmp_path: Path) -> None:
    toml = (
        '[tool.labtax.severity]\ntrailing-space = "warning"\ndeprecated-version = "error"\n'
        'attribution-missing = "off"\n'
    )
    project = make_project(tmp_path / "p", extra_toml=toml)
    project.leaf(
        "compositional_skills/v2", skill_yaml(version=2).replace("created_by: tester", "created_by: tester "), None
    )
    result = run_cli(project.root, "validate", "-f", "json")
    records = [(r["rule"], r["severity"]) for r in json.loads(result.stdout)]
    assert records == [("deprecated-version", "error"), ("trailing-space", "warning")]
    assert result.returncode == 1
    project.leaf("compositional_skills/few", skill_yaml(3), None)
    (project.root / "pyproject.toml").write_text(
        '[tool.labtax]\n[tool.labtax.severity]\ntrailing-space = "off"\ntoo-few-items = "warning"\n'
        'attribution-missing = "off"\n'
    )
    result = run_cli(project.root, "validate")
    assert result.returncode == 0 and "warning [too-few-items]" in result.stdout and "trailing" not in result.stdout


# --- taxonomy roots -------------------------------------------------------------------------------


def test_root_option_and_instructlab_layout(tmp_path: Path) -> None:
    # An InstructLab-style repository: branches at the top level, no labtax configuration at all.
    repo = tmp_path / "il-taxonomy"
    (repo / "compositional_skills/writing/poems").mkdir(parents=True)
    (repo / "compositional_skills/writing/poems/qna.yaml").write_text(skill_yaml(3))
    (repo / "compositional_skills/writing/poems/attribution.txt").write_text(ATTRIBUTION)
    git(repo, "init", "-q")
    result = run_cli(repo, "validate", "--root", ".")
    assert result.returncode == 1
    assert result.stdout.startswith("compositional_skills/writing/poems/qna.yaml:5:3: error [too-few-items]")
    # The same with the root in pyproject.toml.
    (repo / "pyproject.toml").write_text('[tool.labtax]\ntaxonomy = "."\n')
    sub = repo / "compositional_skills/writing"
    result = run_cli(sub, "validate")  # from a subdirectory: the project root is found upwards
    assert result.returncode == 1
    assert result.stdout.startswith("compositional_skills/writing/poems/qna.yaml:5:3: error [too-few-items]")
    assert run_cli(repo, "validate", "compositional_skills/writing/poems/qna.yaml").returncode == 1


def test_working_copy_reached_through_a_symlink(project: Project, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(project.root)
    # The shell's $PWD keeps the symlink; a path typed from it is absolute through the link.
    result = run_cli(link, "validate", str(link / "taxonomy/compositional_skills/few/qna.yaml"))
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1].startswith(
        "taxonomy/compositional_skills/few/qna.yaml:5:3: error [too-few-items]"
    )
    assert "leaf-place" not in result.stdout


def test_root_relative_to_the_current_directory(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", taxonomy="taxonomy")
    project.write("other/compositional_skills/a/qna.yaml", skill_yaml())
    project.write("other/compositional_skills/a/attribution.txt", ATTRIBUTION)
    project.leaf("compositional_skills/b", skill_yaml(2))
    assert run_cli(project.root, "validate").returncode == 1
    result = run_cli(project.root, "validate", "--root", "other")
    assert (result.returncode, result.stdout) == (0, "")
    assert "1 leaves checked" in result.stderr


def test_explicit_attribution_path_validates_its_leaf(project: Project) -> None:
    result = run_cli(project.root, "validate", "taxonomy/compositional_skills/few/attribution.txt")
    assert result.returncode == 1 and "too-few-items" in result.stdout


# --- documents ------------------------------------------------------------------------------------


def test_local_documents_pin_is_the_git_tree_id(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    tree = project.documents()
    project.leaf("knowledge/testing", knowledge_yaml(tree))
    git(project.root, "init", "-q")
    git(project.root, "add", "-A")
    # The two ways CONTRIBUTING.md gives to compute the pin: staged, then committed.
    assert git(project.root, "write-tree", "--prefix=documents/notes/").strip() == tree
    git(project.root, "commit", "-qm", "documents")
    assert git(project.root, "rev-parse", "HEAD:documents/notes").strip() == tree
    assert run_cli(project.root, "validate", "--check-documents").returncode == 0
    # An edited document no longer matches the pin: the message gives the new id.
    project.write("documents/notes/more.md", "# More\n\nChanged.\n")
    new_tree = git_tree_id(project.root / "documents/notes")
    result = run_cli(project.root, "validate", "--check-documents")
    assert result.returncode == 1
    assert "taxonomy/knowledge/testing/qna.yaml:7:11: error [document-check] the documents in 'documents/notes' " in (
        result.stdout
    )
    assert f"set document.commit to {new_tree}" in result.stdout
    # Documents kept in this repository are checked without --check-documents too: offline and cheap.
    plain = run_cli(project.root, "validate")
    assert plain.returncode == 1 and f"set document.commit to {new_tree}" in plain.stdout
    assert "does not track" not in plain.stdout  # an edited file is tracked
    # An editor's backup file beside unchanged documents: named, with what to do.
    git(project.root, "checkout", "--", "documents/notes/more.md")
    project.write("documents/notes/guide.md~", "backup\n")
    stray = run_cli(project.root, "validate")
    assert stray.returncode == 1 and "it holds files git does not track (guide.md~), which count in the id" in (
        stray.stdout
    )


def test_local_documents_missing_directory_and_pattern(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    tree = project.documents()
    project.leaf("knowledge/a", knowledge_yaml(tree).replace("'*.md'", "'*.txt'"))
    project.leaf("knowledge/b", knowledge_yaml(tree, repo="documents/absent"))
    checks = [d for d in project.validate(check_documents=True).diagnostics if d.rule == "document-check"]
    messages = {d.file.split("/")[2]: d.message for d in checks}
    assert "pattern '*.txt' matches no file in 'documents/notes'" in messages["a"]
    assert "document directory 'documents/absent' does not exist" in messages["b"]
    # A mistyped directory is shown where it is written (the repo: line), not on the pin.
    (absent,) = [d for d in checks if d.file.split("/")[2] == "b"]
    assert absent.yaml_path == ".document.repo"
    line = (project.root / absent.file).read_text().splitlines()[absent.line - 1]
    assert line.strip().startswith("repo:") and "documents/absent" in line


def _docs_repo(path: Path) -> str:
    (path / "docs").mkdir(parents=True)
    (path / "docs/guide.md").write_text("# Guide\n\nRead me.\n")
    git(path, "init", "-q")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "docs")
    return git(path, "rev-parse", "HEAD").strip()


FILE_SOURCES = '[tool.labtax.documents]\nsources = ["local", "https", "file"]\n'


def test_file_urls_and_local_paths_are_limited_by_the_configuration(tmp_path: Path) -> None:
    commit = _docs_repo(tmp_path / "docs-repo")
    url = (tmp_path / "docs-repo").as_uri()
    project = make_project(tmp_path / "p")
    project.leaf("knowledge/remote", knowledge_yaml(commit, repo=url).replace("'*.md'", "docs/*.md"))
    [refused] = project.validate(check_documents=True).diagnostics  # and never fetched
    assert (refused.rule, refused.line, refused.column) == ("document-repo", 6, 9)
    assert "a file:// URL reads this machine's file system" in refused.message
    assert "[tool.labtax.documents] sources" in refused.message
    assert not (tmp_path / "home" / ".cache" / "labtax" / "documents").exists()
    only_https = make_project(tmp_path / "q", extra_toml='[tool.labtax.documents]\nsources = ["https"]\n')
    tree = only_https.documents()
    only_https.leaf("knowledge/local", knowledge_yaml(tree))
    [local] = only_https.validate(check_documents=True).diagnostics
    assert local.rule == "document-repo" and "documents kept in this repository" in local.message


def test_remote_documents_over_git(tmp_path: Path) -> None:
    commit = _docs_repo(tmp_path / "docs-repo")
    url = (tmp_path / "docs-repo").as_uri()
    project = make_project(tmp_path / "p", extra_toml=FILE_SOURCES)
    project.leaf("knowledge/good", knowledge_yaml(commit, repo=url).replace("'*.md'", "docs/*.md"))
    project.leaf("knowledge/nopattern", knowledge_yaml(commit, repo=url).replace("'*.md'", "'*.md'"))
    project.leaf("knowledge/nocommit", knowledge_yaml("deadbeef" * 5, repo=url).replace("'*.md'", "docs/*.md"))
    result = run_cli(project.root, "validate", "--check-documents")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert not any("knowledge/good/" in line for line in lines)
    [no_pattern] = [line for line in lines if "knowledge/nopattern/" in line]
    assert no_pattern.startswith("taxonomy/knowledge/nopattern/qna.yaml:9:7: error [document-check] pattern '*.md'")
    [no_commit] = [line for line in lines if "knowledge/nocommit/" in line]
    assert no_commit.startswith("taxonomy/knowledge/nocommit/qna.yaml:7:11: error [document-check] could not fetch")
    assert "deadbeef" * 5 in no_commit
    # The fetch is cached: a second run with the source gone still resolves the good leaf.
    subprocess.run(["rm", "-rf", str(tmp_path / "docs-repo")], check=True)
    again = run_cli(project.root, "validate", "--check-documents", "taxonomy/knowledge/good")
    assert again.returncode == 0, again.stdout
