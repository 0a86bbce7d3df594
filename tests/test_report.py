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
    # The pair, side by side, and the seed in the new leaf's list of seeds.
    assert rendered.count("Write a haiku about a city at night.") == 3
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


# --- the seed-level diff -----------------------------------------------------------------------------


def edit_leaf(repo: Path, relative: str, change: object) -> dict[str, object]:
    """Load a leaf's qna.yaml, let `change` edit the mapping in place, write it back and commit."""
    path = repo / "taxonomy" / relative / "qna.yaml"
    content = yaml.safe_load(path.read_text())
    change(content)  # type: ignore[operator]
    path.write_text(yaml.safe_dump(content, sort_keys=False, allow_unicode=True))
    git(repo, "commit", "-q", "-am", "edit")
    return content  # type: ignore[no-any-return]


def section_for(repo: Path, relative: str) -> tuple[object, str]:
    config = load_config(start=repo)
    report = build_report(config, changed_leaves(config, "main"))
    [section] = [s for s in report.sections if s.change.path == f"{relative}/qna.yaml"]
    return section, render_markdown(report)


def test_seed_diff_add_remove_edit(repo: Path) -> None:
    def change(content: dict[str, list[dict[str, str]]]) -> None:
        seeds = content["seed_examples"]
        seeds[1]["answer"] = "Neon on wet streets\na night bus sighs at the stop\none window still lit\n"
        del seeds[3]  # the tide going out
        seeds.insert(0, {"question": "Write a haiku about a lighthouse.", "answer": "A beam sweeps\nthe sea\nships"})

    edit_leaf(repo, HAIKU, change)
    section, markdown = section_for(repo, HAIKU)
    leaf_diff = section.leaf_diff  # type: ignore[attr-defined]
    assert leaf_diff.tally() == "1 added, 1 edited, 1 removed"
    [added] = leaf_diff.with_status("added")
    assert (added.new_index, added.seed.qna[0].question) == (1, "Write a haiku about a lighthouse.")
    [edited] = leaf_diff.with_status("edited")
    assert (edited.old_index, edited.new_index, edited.moved) == (2, 3, False)  # shifted by the insert, not moved
    [removed] = leaf_diff.with_status("removed")
    assert (removed.old_index, removed.seed.qna[0].question) == (4, "Write a haiku about the tide going out.")
    assert not leaf_diff.moved  # an insertion above the other seeds does not move them

    assert "✏️ modified: seeds 1 added, 1 edited, 1 removed" in markdown
    rendered = renderer().render(markdown)
    assert "<details open>" in rendered and "<summary>Seed changes: 1 added, 1 edited, 1 removed</summary>" in rendered
    assert "<strong>seed 3</strong> (was seed 2)" in rendered
    assert "<br> a <del>last</del> <ins>night</ins> bus sighs" in rendered  # the word diff of the answer
    assert "<strong>was seed 4</strong>" in rendered and "Write a haiku about the tide going out." in rendered
    assert "Seed changes:</strong> 1 added, 1 edited, 1 removed; 4 unchanged" in rendered


def test_seed_diff_reorder_is_a_reorder(repo: Path) -> None:
    def change(content: dict[str, list[dict[str, str]]]) -> None:
        seeds = content["seed_examples"]
        seeds.append(seeds.pop(0))  # the first seed moves to the end, nothing else changes

    edit_leaf(repo, HAIKU, change)
    section, markdown = section_for(repo, HAIKU)
    leaf_diff = section.leaf_diff  # type: ignore[attr-defined]
    assert leaf_diff.tally() == "1 moved"
    [moved] = leaf_diff.moved
    assert (moved.status, moved.old_index, moved.new_index) == ("unchanged", 1, 6)
    assert not leaf_diff.with_status("edited") and not leaf_diff.with_status("added")
    rendered = renderer().render(markdown)
    assert "<strong>seed 6</strong> (was seed 1, moved): Write a haiku about autumn rain." in rendered
    assert "<del>" not in rendered and "<ins>" not in rendered


def test_seed_diff_changed_context_and_document_pin(repo: Path) -> None:
    def change(content: dict[str, object]) -> None:
        seeds = content["seed_examples"]
        assert isinstance(seeds, list)
        seeds[0]["context"] = seeds[0]["context"].replace("about 46 percent", "roughly 46 percent")
        content["document"] = {**content["document"], "commit": "0" * 40}  # type: ignore[dict-item]

    edit_leaf(repo, TIDES, change)
    section, markdown = section_for(repo, TIDES)
    leaf_diff = section.leaf_diff  # type: ignore[attr-defined]
    [edited] = leaf_diff.with_status("edited")
    assert edited.old_index == edited.new_index == 1
    assert [(c.name, c.new) for c in leaf_diff.document] == [("commit", "0" * 40)]
    rendered = renderer().render(markdown)
    assert "Document pin changed:</strong> commit <code>643223dda1b80fbd49dbe00e8028e81fe546353a</code> → " in rendered
    assert "<strong>context (changed):</strong>" in rendered
    assert "<del>about</del> <ins>roughly</ins> 46 percent" in rendered
    assert "question 1" not in rendered  # unchanged pairs of an edited seed are not repeated


def test_seed_diff_documents_changed_under_the_same_pin(repo: Path) -> None:
    document = repo / "documents/ocean_tides/ocean_tides.md"
    document.write_text(document.read_text() + "\nOne more paragraph.\n")
    git(repo, "commit", "-q", "-am", "document")
    section, markdown = section_for(repo, TIDES)
    leaf_diff = section.leaf_diff  # type: ignore[attr-defined]
    assert leaf_diff.documents_changed and not leaf_diff.changed_seeds and not leaf_diff.document
    assert "the pinned documents' content differs from the base (same pin)" in markdown
    assert "<details" not in markdown


def test_seed_diff_of_a_fifty_seed_leaf_is_collapsed_and_escaped(repo: Path) -> None:
    hostile = (
        "</details><script>alert(1)</script> <!-- labtax-report --> | @octocat ``x`` [y](javascript:z) "
        "# not a heading\n- not a list\n</summary>"
    )

    def change(content: dict[str, object]) -> None:
        seeds = [
            {"question": f"Write a haiku about harbour number {i}.", "answer": f"Boats in row {i}\ngulls\nsalt"}
            for i in range(50)
        ]
        seeds[10]["answer"] = hostile
        content["seed_examples"] = seeds

    edit_leaf(repo, HAIKU, change)
    git(repo, "commit", "-q", "--allow-empty", "-m", "base for the edit")
    git(repo, "branch", "-f", "main", "HEAD")  # the 50-seed leaf is now the base

    def edit(content: dict[str, list[dict[str, str]]]) -> None:
        seeds = content["seed_examples"]
        seeds[10]["answer"] = hostile + " <img src=x onerror=alert(2)>"
        seeds[20]["question"] = "Write a haiku about harbour number twenty, at dawn."
        seeds.insert(5, {"question": "Write a haiku about a <b>bold</b> crab.", "answer": "Sideways\nit goes\nhome"})
        seeds.append(seeds.pop(0))
        del seeds[30]

    edit_leaf(repo, HAIKU, edit)
    section, markdown = section_for(repo, HAIKU)
    leaf_diff = section.leaf_diff  # type: ignore[attr-defined]
    assert leaf_diff.tally() == "1 added, 2 edited, 1 moved, 1 removed"
    md = renderer()
    rendered = md.render(markdown)
    assert markdown.count(REPORT_MARKER) == 1
    assert "<details>" in rendered and "<details open>" not in rendered  # more than three: collapsed
    assert rendered.count("<details") == 1 and rendered.count("</details>") == 1  # the seed's copy is escaped
    assert rendered.count("<summary>") == 1
    assert "<script" not in rendered and "<img" not in rendered and "<b>" not in rendered
    assert "&lt;img src=x onerror=alert(2)&gt;" in rendered
    assert "@octocat" not in rendered and "<h1>" not in rendered
    tags = set(re.findall(r"<(/?[a-z0-9]+)", rendered)) - {"br"}
    assert tags <= {
        "h2",
        "/h2",
        "h3",
        "/h3",
        "p",
        "/p",
        "strong",
        "/strong",
        "code",
        "/code",
        "ul",
        "/ul",
        "li",
        "/li",
        "table",
        "/table",
        "thead",
        "/thead",
        "tbody",
        "/tbody",
        "tr",
        "/tr",
        "th",
        "/th",
        "td",
        "/td",
        "details",
        "/details",
        "summary",
        "/summary",
        "del",
        "/del",
        "ins",
        "/ins",
        "sub",
        "/sub",
        "a",
        "/a",
    }
    assert len(markdown) < 20_000  # 50 seeds, four changed: the page shows the changes, not the leaf
