"""`labtax report` on a real git history, checked through a real markdown renderer (markdown-it-py with
GitHub's tables): structure, escaping of untrusted content, links, diagnostics, near-duplicates and
the planned generation."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token
from tests.conftest import REPO_ROOT, git

from labtax.cli import main
from labtax.config import load_config
from labtax.gitdiff import changed_leaves
from labtax.report import (
    REPORT_MARKER,
    build_report,
    code,
    near_duplicates,
    render_markdown,
    reviewer_report,
    text,
)
from labtax.sdg.params import GenerationParams, expected_requests
from labtax.taxonomy.leaf import LeafKind
from labtax.text import shingles
from labtax.validate import validate_paths

HAIKU = "compositional_skills/writing/freeform/haiku"
TIDES = "knowledge/science/oceanography/ocean_tides"
COMMITS = "compositional_skills/writing/freeform/commit_messages"
SQL = "compositional_skills/coding/sql/queries"


def renderer() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


def tables(tokens: list[Token]) -> list[list[int]]:
    """For every table, the number of cells in each row (header included)."""
    found: list[list[int]] = []
    rows: list[int] = []
    for token in tokens:
        if token.type == "table_open":
            rows = []
        elif token.type == "tr_open":
            rows.append(0)
        elif token.type in ("th_open", "td_open"):
            rows[-1] += 1
        elif token.type == "table_close":
            found.append(rows)
    return found


def copy_leaf(repo: Path, relative: str) -> Path:
    target = repo / "taxonomy" / relative
    shutil.copytree(REPO_ROOT / "taxonomy" / relative, target)
    return target


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Four starter leaves (haiku, commit messages, SQL, ocean tides with its document) on main."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    for relative in (HAIKU, TIDES, COMMITS, SQL):
        copy_leaf(root, relative)
    shutil.copytree(REPO_ROOT / "documents" / "ocean_tides", root / "documents" / "ocean_tides")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    git(root, "checkout", "-q", "-b", "contribution")
    return root


def contribute(repo: Path) -> None:
    """Every kind of change a reviewer meets, including hostile text in a leaf."""
    content = yaml.safe_load((repo / "taxonomy" / HAIKU / "qna.yaml").read_text())
    content["task_description"] = (
        "<script>alert(1)</script> | @octocat <!-- labtax-report --> ``x`` [y](javascript:z) "
        + content["task_description"]
    )
    content["seed_examples"][0]["question"] = "Write a haiku about spring rain."
    near_copy = repo / "taxonomy/compositional_skills/writing/freeform/haiku_seasons"
    near_copy.mkdir(parents=True)
    # A new leaf whose seeds repeat the haiku leaf's, with a hostile task description.
    (near_copy / "qna.yaml").write_text(yaml.safe_dump(content, sort_keys=False, allow_unicode=True))
    (near_copy / "attribution.txt").write_text("Title of work: Seasons\nLicense of the work: Proprietary\n")
    git(repo, "mv", f"taxonomy/{COMMITS}", "taxonomy/compositional_skills/writing/commit_messages")
    tides_document = repo / "documents/ocean_tides/ocean_tides.md"
    tides_document.write_text(tides_document.read_text() + "\nA new closing paragraph.\n")
    git(repo, "rm", "-q", "-r", f"taxonomy/{SQL}")
    git(repo, "commit", "-q", "-m", "contribution")


def test_report_structure_renders_on_a_real_markdown_renderer(repo: Path) -> None:
    contribute(repo)
    markdown = reviewer_report(load_config(start=repo), "main")
    assert markdown.startswith(REPORT_MARKER + "\n")
    assert markdown.count(REPORT_MARKER) == 1  # the leaf's copy of the marker is escaped

    md = renderer()
    tokens = md.parse(markdown)
    rendered = md.render(markdown)
    assert rendered.startswith(REPORT_MARKER)  # an HTML block: hidden on GitHub, findable by the workflow
    summary, duplicates = tables(tokens)[:2]
    assert summary == [9] * 5  # header + one row per changed leaf, nine cells each
    assert all(row == 4 for row in duplicates)
    assert rendered.count("<table>") == 2
    assert "<script" not in rendered and "javascript:" not in re.sub(r"<[^>]+>", "", rendered).split("(")[0]
    assert 'href="javascript' not in rendered
    assert "@octocat" not in rendered and "@\u200boctocat" in rendered
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered


def test_report_content_per_leaf(repo: Path) -> None:
    contribute(repo)
    config = load_config(start=repo)
    report = build_report(config, changed_leaves(config, "main"))
    sections = {section.change.path: section for section in report.sections}
    added = sections["compositional_skills/writing/freeform/haiku_seasons/qna.yaml"]
    renamed = sections["compositional_skills/writing/commit_messages/qna.yaml"]
    modified = sections[f"{TIDES}/qna.yaml"]
    deleted = sections[f"{SQL}/qna.yaml"]

    assert added.expected_requests == expected_requests(LeafKind.FREEFORM_SKILL, GenerationParams())
    assert modified.expected_requests == expected_requests(LeafKind.KNOWLEDGE, GenerationParams())
    assert renamed.expected_requests == deleted.expected_requests == 0
    assert report.expected_requests == added.expected_requests + modified.expected_requests
    assert {d.rule for d in added.diagnostics} >= {"attribution-field", "attribution-license"}
    assert [d.rule for d in modified.diagnostics] == ["document-check"]  # the edited document no longer matches its pin
    assert "set document.commit to" in modified.diagnostics[0].message
    assert not renamed.diagnostics and not deleted.diagnostics
    assert added.near_duplicates and added.near_duplicates[0].other.leaf == f"{HAIKU}/qna.yaml"
    assert not modified.near_duplicates

    markdown = render_markdown(report)
    assert "🔀 renamed (content unchanged)" in markdown
    assert "Proprietary" in markdown and "CC-BY-4.0" in markdown
    assert "[documents/ocean\\_tides](documents/ocean_tides)" in markdown  # a relative link to the documents
    assert f"| {deleted.change.path.join('``')} | 🗑️ deleted |" in markdown


def test_near_duplicates_against_the_rest_of_the_taxonomy(repo: Path) -> None:
    haiku = (repo / "taxonomy" / HAIKU / "qna.yaml").read_text()
    copy = repo / "taxonomy/compositional_skills/writing/freeform/haiku_again"
    copy.mkdir()
    (copy / "qna.yaml").write_text(
        haiku.replace("Write a haiku about autumn rain.", "Write a haiku about spring rain.")
    )
    shutil.copy(repo / "taxonomy" / HAIKU / "attribution.txt", copy / "attribution.txt")
    config = load_config(start=repo)
    markdown = reviewer_report(config, "main")
    report = build_report(config, changed_leaves(config, "main"))
    [section] = report.sections
    assert len(section.near_duplicates) == 5  # capped per leaf, most similar first
    best = section.near_duplicates[0]
    assert best.other.leaf == f"{HAIKU}/qna.yaml" and best.similarity == 1.0
    every = near_duplicates([section.change.leaf], validate_paths(config).leaves)[section.change.path]  # type: ignore[list-item]
    assert len(every) == 6  # five identical seeds, and the edited first one
    [edited] = [d for d in every if d.similarity < 1]
    assert (edited.seed.index, edited.other.index) == (1, 1) and 0.5 <= edited.similarity < 1

    rendered = renderer().render(markdown)
    assert rendered.count("<table>") == 2
    assert rendered.count("Write a haiku about a city at night.") == 2  # the pair, side by side
    assert "1 leaf changed" in rendered
    assert "1.00" in rendered


def test_near_duplicate_similarity_is_the_exact_jaccard_of_shingles() -> None:
    leaves = validate_paths(load_config(start=REPO_ROOT)).leaves
    haiku = next(leaf for leaf in leaves if leaf.path == f"{HAIKU}/qna.yaml")
    found = near_duplicates([haiku], leaves)
    assert found == {haiku.path: []}  # the starter taxonomy has no near-duplicates
    a, b = shingles("the quick brown fox jumps", 3), shingles("the quick brown fox sleeps", 3)
    assert len(a & b) / len(a | b) == pytest.approx(2 / 4)


def test_document_links_to_the_repository_at_that_commit(repo: Path) -> None:
    tides = repo / "taxonomy" / TIDES / "qna.yaml"
    tides.write_text(tides.read_text().replace("domain: oceanography", "domain: physical oceanography"))
    remote = repo / "taxonomy/knowledge/science/remote_doc"
    shutil.copytree(repo / "taxonomy" / TIDES, remote)
    content = (remote / "qna.yaml").read_text().split("document:")[0]
    (remote / "qna.yaml").write_text(
        content + "document:\n  repo: https://github.com/example/docs.git\n"
        "  commit: 0123456789abcdef0123456789abcdef01234567\n  patterns:\n    - '*.md'\n"
    )
    config = load_config(start=repo)
    head = git(repo, "rev-parse", "HEAD").strip()
    markdown = reviewer_report(config, "main", repository_url="https://github.com/example/taxonomy")
    rendered = renderer().render(markdown)
    assert f'href="https://github.com/example/taxonomy/tree/{head}/documents/ocean_tides"' in rendered
    assert 'href="https://github.com/example/docs/tree/0123456789abcdef0123456789abcdef01234567"' in rendered


def test_no_change_and_everything_new(repo: Path) -> None:
    config = load_config(start=repo)
    assert "No leaf changed (compared with `main`" in reviewer_report(config, "main")
    markdown = reviewer_report(config, "empty")
    assert "every leaf is new" in markdown
    assert tables(renderer().parse(markdown))[0] == [9] * 5  # header + four leaves


def test_escaping_keeps_table_cells_whole() -> None:
    hostile = "a | b `c` ``d`` <img src=x onerror=alert(1)> [link](http://x) *bold* @someone"
    row = f"| {code(hostile)} | {text(hostile)} |\n"
    markdown = "| one | two |\n|---|---|\n" + row
    md = renderer()
    assert tables(md.parse(markdown)) == [[2, 2]]
    rendered = md.render(markdown)
    assert "<img" not in rendered and "<a " not in rendered and "<em>" not in rendered
    assert "a | b `c` ``d``" in rendered.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def test_cli_writes_the_report_file_with_github_links(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    contribute(repo)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("GITHUB_REPOSITORY", "example/taxonomy")
    output = repo / "out" / "report.md"
    assert main(["report", "--base", "main", "--output", str(output)]) == 0
    markdown = output.read_text()
    assert markdown.startswith(REPORT_MARKER)
    assert "https://github.com/example/taxonomy/tree/" in markdown
    assert "report written to" in capsys.readouterr().err
    assert main(["report", "--base", "no-such-ref"]) == 2
