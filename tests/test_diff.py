"""`labtax diff` on real git histories built in temporary directories: every status, renames with and
without edits, moves between branches, staged/unstaged/untracked/ignored files, odd paths, detached
HEAD, shallow clones, and the CLI's text and JSON output."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from tests.conftest import REPO_ROOT, git

from labtax.cli import main
from labtax.config import load_config
from labtax.errors import LabtaxError, UsageError
from labtax.gitdiff import ChangeStatus, DiffResult, changed_leaves
from labtax.taxonomy.leaf import DocumentRef, document_digest, git_tree_id, local_document_digest
from labtax.validate import validate_paths


def skill_text(topic: str, extra: str = "") -> str:
    seeds = "".join(
        f"  - question: Write a short note about {topic}, example {i}.{extra}\n"
        f"    answer: Here is a short note about {topic}, number {i}, written plainly.\n"
        for i in range(1, 6)
    )
    return (
        f"version: 3\ntask_description: Write short notes about {topic}.\ncreated_by: tester\nseed_examples:\n{seeds}"
    )


def knowledge_text(document_dir: str, commit: str) -> str:
    seeds = "".join(
        f"  - context: Tides rise and fall twice a day, paragraph {i}.\n"
        "    questions_and_answers:\n"
        + "".join(
            f"      - question: Question {j} about paragraph {i}?\n        answer: Answer {j} about paragraph {i}.\n"
            for j in range(1, 4)
        )
        for i in range(1, 6)
    )
    return (
        "version: 3\n"
        "domain: oceanography\n"
        "created_by: tester\n"
        "document_outline: Why tides occur and how they behave.\n"
        f"seed_examples:\n{seeds}"
        f"document:\n  repo: {document_dir}\n  commit: {commit}\n  patterns:\n    - '*.md'\n"
    )


ATTRIBUTION = (
    "Title of work: {title}\nLink to work: https://example.com\nRevision: 1\n"
    "License of the work: CC-BY-4.0\nCreator names: Tester\n"
)


def write_leaf(repo: Path, relative: str, text: str, title: str = "Notes") -> Path:
    directory = repo / "taxonomy" / relative
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "qna.yaml").write_text(text, encoding="utf-8")
    (directory / "attribution.txt").write_text(ATTRIBUTION.format(title=title), encoding="utf-8")
    return directory


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository whose main branch holds four skill leaves, then a feature branch checked out."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    for name in ("alpha", "beta", "gamma", "delta"):
        write_leaf(root, f"compositional_skills/writing/{name}", skill_text(name))
    commit_all(root, "base")
    git(root, "checkout", "-q", "-b", "feature")
    return root


def diff(repo: Path, base: str | None = "main") -> DiffResult:
    return changed_leaves(load_config(start=repo), base)


def statuses(result: DiffResult) -> dict[str, tuple[str, str | None]]:
    return {change.path: (str(change.status), change.old_path) for change in result.changes}


def leaf(name: str) -> str:
    return f"compositional_skills/writing/{name}/qna.yaml"


def test_every_status_with_hashes(repo: Path) -> None:
    write_leaf(repo, "compositional_skills/writing/alpha", skill_text("alpha", " Be brief."))
    git(repo, "mv", "taxonomy/compositional_skills/writing/beta", "taxonomy/compositional_skills/writing/bravo")
    shutil.rmtree(repo / "taxonomy/compositional_skills/writing/gamma")
    write_leaf(repo, "compositional_skills/writing/epsilon", skill_text("epsilon"))
    commit_all(repo, "change")

    result = diff(repo)
    assert statuses(result) == {
        leaf("alpha"): ("modified", leaf("alpha")),
        leaf("bravo"): ("renamed", leaf("beta")),
        leaf("gamma"): ("deleted", leaf("gamma")),
        leaf("epsilon"): ("added", None),
    }
    by_path = {c.path: c for c in result.changes}
    assert by_path[leaf("bravo")].hash == by_path[leaf("bravo")].old_hash  # a pure rename keeps its hash
    assert by_path[leaf("bravo")].is_pure_rename and not by_path[leaf("bravo")].drives_generation
    assert by_path[leaf("alpha")].hash != by_path[leaf("alpha")].old_hash
    assert by_path[leaf("gamma")].hash is None and by_path[leaf("gamma")].old_hash
    assert by_path[leaf("epsilon")].old_hash is None and by_path[leaf("epsilon")].drives_generation
    assert all(c.branch == "compositional_skills" and c.kind == "freeform_skill" for c in result.changes)
    assert result.base_ref == "main" and result.base_commit == git(repo, "rev-parse", "main").strip()


def test_hash_matches_validation_for_every_leaf(repo: Path) -> None:
    write_leaf(repo, "compositional_skills/writing/alpha", skill_text("alpha", " Changed."))
    commit_all(repo, "change")
    validated = {leaf.path: leaf.leaf_hash for leaf in validate_paths(load_config(start=repo)).leaves}
    change = diff(repo).changes[0]
    assert change.hash == validated[change.path]


def test_edited_rename_is_paired_by_git_similarity(repo: Path) -> None:
    old = repo / "taxonomy/compositional_skills/writing/beta"
    git(repo, "mv", str(old), str(repo / "taxonomy/compositional_skills/writing/beta_notes"))
    write_leaf(repo, "compositional_skills/writing/beta_notes", skill_text("beta", " Use one line."))
    commit_all(repo, "rename and edit")

    [change] = diff(repo).changes
    assert change.status is ChangeStatus.RENAMED
    assert (change.old_path, change.path) == (leaf("beta"), leaf("beta_notes"))
    assert change.hash != change.old_hash and change.drives_generation


def test_leaf_moved_between_branches(repo: Path) -> None:
    target = repo / "taxonomy/foundational_skills/writing"
    target.mkdir(parents=True)
    git(repo, "mv", "taxonomy/compositional_skills/writing/delta", str(target / "delta"))
    commit_all(repo, "move")

    [change] = diff(repo).changes
    assert change.status is ChangeStatus.RENAMED
    assert change.path == "foundational_skills/writing/delta/qna.yaml"
    assert change.branch == "foundational_skills"
    assert change.old_leaf is not None and change.old_leaf.branch == "compositional_skills"
    assert change.hash == change.old_hash  # the branch is part of the path, not of the content


def test_deleting_one_of_two_sibling_leaves(repo: Path) -> None:
    write_leaf(repo, "compositional_skills/writing/pair/one", skill_text("one"))
    write_leaf(repo, "compositional_skills/writing/pair/two", skill_text("two"))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "siblings")
    git(repo, "checkout", "-q", "-b", "remove-one")
    git(repo, "rm", "-q", "-r", "taxonomy/compositional_skills/writing/pair/one")
    commit_all(repo, "remove one")

    assert statuses(diff(repo, "feature")) == {leaf("pair/one"): ("deleted", leaf("pair/one"))}


def test_staged_unstaged_untracked_and_ignored_files(repo: Path) -> None:
    (repo / ".gitignore").write_text("scratch/\n")
    commit_all(repo, "ignore scratch")
    write_leaf(repo, "compositional_skills/writing/staged", skill_text("staged"))
    git(repo, "add", "taxonomy/compositional_skills/writing/staged")
    write_leaf(repo, "compositional_skills/writing/alpha", skill_text("alpha", " Unstaged."))
    write_leaf(repo, "compositional_skills/writing/untracked", skill_text("untracked"))
    write_leaf(repo, "compositional_skills/writing/scratch/ignored", skill_text("ignored"))
    (repo / "taxonomy/compositional_skills/writing/gamma/qna.yaml").unlink()  # deleted, not staged

    assert statuses(diff(repo)) == {
        leaf("staged"): ("added", None),
        leaf("alpha"): ("modified", leaf("alpha")),
        leaf("untracked"): ("added", None),
        leaf("gamma"): ("deleted", leaf("gamma")),
    }


def test_untracked_pure_rename_is_paired_by_hash(repo: Path) -> None:
    source = repo / "taxonomy/compositional_skills/writing/alpha"
    source.rename(source.parent / "alpha_moved")  # not staged: git sees a deletion and an untracked file

    [change] = diff(repo).changes
    assert (change.status, change.old_path, change.path) == ("renamed", leaf("alpha"), leaf("alpha_moved"))
    assert change.is_pure_rename


def test_attribution_change_is_a_leaf_change(repo: Path) -> None:
    (repo / "taxonomy/compositional_skills/writing/alpha/attribution.txt").write_text(
        ATTRIBUTION.format(title="Another title")
    )
    assert statuses(diff(repo)) == {leaf("alpha"): ("modified", leaf("alpha"))}


def test_formatting_only_change_keeps_the_hash_and_is_not_reported(repo: Path) -> None:
    path = repo / "taxonomy/compositional_skills/writing/alpha/qna.yaml"
    path.write_text("# a comment does not feed generation\n" + path.read_text())
    assert diff(repo).changes == []


def test_in_repository_document_change_is_a_change_of_its_knowledge_leaf(tmp_path: Path) -> None:
    repo = tmp_path / "docs-repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    documents = repo / "documents" / "tides"
    documents.mkdir(parents=True)
    (documents / "tides.md").write_text("# Tides\n\nThe Moon pulls the oceans.\n")
    (documents / "notes.txt").write_text("not selected by the pattern\n")
    write_leaf(repo, "knowledge/science/tides", knowledge_text("documents/tides", git_tree_id(documents)))
    write_leaf(repo, "compositional_skills/writing/alpha", skill_text("alpha"))
    commit_all(repo, "base")

    (documents / "notes.txt").write_text("still not selected\n")
    assert diff(repo).changes == []  # the leaf's hash covers only the files its patterns select

    (documents / "tides.md").write_text("# Tides\n\nThe Moon and the Sun pull the oceans.\n")
    [change] = diff(repo).changes
    assert (change.status, change.path, change.kind) == ("modified", "knowledge/science/tides/qna.yaml", "knowledge")
    assert change.hash != change.old_hash

    git(repo, "checkout", "-q", "--", "documents")
    assert diff(repo).changes == []
    (documents / "extra.md").write_text("# More\n")  # an untracked document file counts too
    [change] = diff(repo).changes
    assert (change.status, change.path) == ("modified", "knowledge/science/tides/qna.yaml")


def test_old_document_digest_matches_the_directory_digest(tmp_path: Path) -> None:
    directory = tmp_path / "documents"
    (directory / "sub").mkdir(parents=True)
    files = {"a-b.md": b"one", "a/x.md": b"two", "sub/c.md": b"three", "z.md": b"four"}
    (directory / "a").mkdir()
    for name, data in files.items():
        (directory / name).write_bytes(data)
    reference = DocumentRef("documents", "0" * 40, ("**/*.md",))
    assert document_digest(files.items()) == local_document_digest(tmp_path, reference)


def test_non_ascii_paths_and_spaces(repo: Path) -> None:
    write_leaf(repo, "compositional_skills/écriture/haïku poèmes", skill_text("haïku"))
    git(repo, "mv", "taxonomy/compositional_skills/writing/beta", "taxonomy/compositional_skills/writing/beta δ copy")
    commit_all(repo, "odd names")
    write_leaf(repo, "compositional_skills/écriture/日本語 の 葉", skill_text("nihongo"))  # untracked

    assert statuses(diff(repo)) == {
        "compositional_skills/écriture/haïku poèmes/qna.yaml": ("added", None),
        "compositional_skills/écriture/日本語 の 葉/qna.yaml": ("added", None),
        leaf("beta δ copy"): ("renamed", leaf("beta")),
    }


def test_detached_head_tag_and_sha_bases(repo: Path) -> None:
    git(repo, "tag", "v1", "main")
    write_leaf(repo, "compositional_skills/writing/epsilon", skill_text("epsilon"))
    commit_all(repo, "add")
    git(repo, "checkout", "-q", "--detach", "HEAD")
    sha = git(repo, "rev-parse", "main").strip()
    for base in ("main", "v1", sha, sha[:10]):
        assert statuses(diff(repo, base)) == {leaf("epsilon"): ("added", None)}, base


def test_default_base_prefers_origin_main(tmp_path: Path, repo: Path) -> None:
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))  # HEAD is the feature branch, which has no change yet
    git(clone, "checkout", "-q", "-b", "work", "origin/main")
    write_leaf(clone, "compositional_skills/writing/epsilon", skill_text("epsilon"))
    commit_all(clone, "add")
    result = diff(clone, None)
    assert result.base_ref == "origin/main"
    assert statuses(result) == {leaf("epsilon"): ("added", None)}


def test_missing_bases_are_usage_errors_that_say_what_to_do(repo: Path) -> None:
    with pytest.raises(UsageError, match=r"--base nope: no such branch.*--base empty"):
        diff(repo, "nope")
    git(repo, "branch", "-q", "-D", "main")
    with pytest.raises(UsageError, match="neither origin/main nor main"):
        diff(repo, None)
    with pytest.raises(UsageError, match="cannot start with '-'"):
        diff(repo, "--output=x")


def test_unrelated_history_says_to_use_empty(repo: Path) -> None:
    git(repo, "checkout", "-q", "--orphan", "other")
    commit_all(repo, "unrelated")
    with pytest.raises(LabtaxError, match="no common history"):
        diff(repo, "main")


def test_shallow_clone_says_how_much_history_to_fetch(tmp_path: Path, repo: Path) -> None:
    write_leaf(repo, "compositional_skills/writing/epsilon", skill_text("epsilon"))
    commit_all(repo, "feature work")
    git(repo, "checkout", "-q", "main")
    for number in range(3):  # main moves on after the fork, so the tips share no commit at depth 1
        write_leaf(repo, f"compositional_skills/writing/main{number}", skill_text(f"main {number}"))
        commit_all(repo, f"main {number}")
    clone = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", "--no-single-branch", "--branch", "feature", repo.as_uri(), str(clone))

    with pytest.raises(LabtaxError) as caught:
        diff(clone, "origin/main")
    message = str(caught.value)
    assert "shallow" in message and "git fetch --deepen=" in message and "fetch-depth: 0" in message

    git(clone, "fetch", "-q", "--deepen=10", "origin")
    assert statuses(diff(clone, "origin/main")) == {leaf("epsilon"): ("added", None)}


def test_empty_base_and_plain_directory_report_every_leaf_as_added(tmp_path: Path, repo: Path) -> None:
    (repo / ".gitignore").write_text("ignored/\n")
    write_leaf(repo, "compositional_skills/writing/ignored/x", skill_text("x"))
    everything = {leaf(n): ("added", None) for n in ("alpha", "beta", "gamma", "delta")}
    result = diff(repo, "empty")
    assert statuses(result) == everything and result.everything_new

    plain = tmp_path / "plain"
    shutil.copytree(repo / "taxonomy", plain / "taxonomy")
    shutil.rmtree(plain / "taxonomy/compositional_skills/writing/ignored")
    result = diff(plain, None)
    assert statuses(result) == everything and result.repository is None
    assert {c.hash for c in result.changes} == {c.hash for c in diff(repo, "empty").changes}


def test_unborn_branch_reports_every_leaf_as_added(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    write_leaf(root, "compositional_skills/writing/alpha", skill_text("alpha"))
    assert statuses(diff(root)) == {leaf("alpha"): ("added", None)}


def test_unreadable_new_version_is_still_reported(repo: Path) -> None:
    (repo / "taxonomy/compositional_skills/writing/alpha/qna.yaml").write_text("version: 3\nseed_examples: [\n")
    [change] = diff(repo).changes
    assert (change.status, change.hash, change.leaf) == ("modified", None, None)
    assert change.old_hash is not None and change.kind == "freeform_skill"


def test_cli_json_has_exactly_the_documented_keys(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_leaf(repo, "compositional_skills/writing/epsilon", skill_text("epsilon"))
    git(repo, "mv", "taxonomy/compositional_skills/writing/beta", "taxonomy/compositional_skills/writing/bravo")
    monkeypatch.chdir(repo)
    assert main(["diff", "--base", "main", "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [sorted(r) for r in records] == [
        sorted(["status", "path", "old_path", "branch", "kind", "hash", "old_hash"])
    ] * 2
    assert {r["status"] for r in records} == {"added", "renamed"}

    assert main(["diff", "--base", "main"]) == 0
    captured = capsys.readouterr()
    assert f"renamed   {leaf('beta')} -> {leaf('bravo')} (content unchanged)" in captured.out
    assert f"added     {leaf('epsilon')}" in captured.out
    assert "2 leaves changed (compared with main" in captured.err


def test_cli_root_option_and_usage_error_exit_code(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["diff", "--root", str(repo / "taxonomy"), "--base", "missing-branch"]) == 2
    assert "no such branch" in capsys.readouterr().err
    assert main(["diff", "--root", str(repo / "taxonomy"), "--base", "main", "-f", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_starter_taxonomy_diffs_cleanly_against_empty() -> None:
    """The repository's own taxonomy: every leaf is added, with the hash validation computes."""
    config = load_config(start=REPO_ROOT)
    validated = {leaf.path: leaf.leaf_hash for leaf in validate_paths(config).leaves}
    result = changed_leaves(config, "empty")
    assert {c.path: c.hash for c in result.changes} == validated


def test_git_calls_do_not_depend_on_the_commit_count(repo: Path, tmp_path: Path) -> None:
    """The diff asks git a fixed set of questions: a long history adds no calls (counted with a git wrapper)."""
    for number in range(30):
        (repo / "history.txt").write_text(f"{number}\n")
        commit_all(repo, f"history {number}")
    write_leaf(repo, "compositional_skills/writing/epsilon", skill_text("epsilon"))
    log = tmp_path / "git-calls.log"
    wrapper = tmp_path / "bin"
    wrapper.mkdir()
    real_git = shutil.which("git")
    (wrapper / "git").write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nexec "{real_git}" "$@"\n')
    (wrapper / "git").chmod(0o755)
    env_path = f"{wrapper}:{os.environ['PATH']}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", env_path)
        assert statuses(diff(repo)) == {leaf("epsilon"): ("added", None)}
    calls = log.read_text().splitlines()
    assert len(calls) <= 10, calls
    assert not any("--contains" in call or "rev-list" in call for call in calls)


def test_instructlab_layout_with_the_taxonomy_at_the_repository_top(tmp_path: Path) -> None:
    """`[tool.labtax] taxonomy = "."`: branches at the top, other top-level files are not leaves."""
    root = tmp_path / "instructlab-style"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "pyproject.toml").write_text('[tool.labtax]\ntaxonomy = "."\n')
    for name in ("alpha", "beta"):
        directory = root / "compositional_skills" / "writing" / name
        directory.mkdir(parents=True)
        (directory / "qna.yaml").write_text(skill_text(name))
    commit_all(root, "base")
    (root / "compositional_skills/writing/alpha/qna.yaml").write_text(skill_text("alpha", " Edited."))
    (root / "README.md").write_text("not a leaf\n")
    (root / ".hidden" / "compositional_skills").mkdir(parents=True)
    (root / ".hidden/compositional_skills/qna.yaml").write_text(skill_text("hidden"))

    [change] = changed_leaves(load_config(start=root), "main").changes
    assert (change.status, change.path) == ("modified", "compositional_skills/writing/alpha/qna.yaml")


def test_old_blobs_are_read_through_one_persistent_cat_file(repo: Path, tmp_path: Path) -> None:
    """Twenty modified leaves and their attributions: every old blob comes from one `cat-file --batch`."""
    for number in range(20):
        write_leaf(repo, f"compositional_skills/writing/many_{number:02d}", skill_text(f"many {number}"))
    commit_all(repo, "many")
    git(repo, "branch", "-f", "main", "HEAD")
    for number in range(20):
        write_leaf(repo, f"compositional_skills/writing/many_{number:02d}", skill_text(f"many {number}", " Edited."))
    log = tmp_path / "git-calls.log"
    wrapper = tmp_path / "bin"
    wrapper.mkdir()
    (wrapper / "git").write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nexec "{shutil.which("git")}" "$@"\n')
    (wrapper / "git").chmod(0o755)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{wrapper}:{os.environ['PATH']}")
        result = diff(repo)
    assert len(result.changes) == 20 and all(c.old_hash and c.hash != c.old_hash for c in result.changes)
    calls = log.read_text().splitlines()
    assert [call for call in calls if "cat-file" in call and "--batch" in call.split()] == ["cat-file --batch"]


def test_variables_of_a_calling_git_do_not_redirect_the_diff(repo: Path, tmp_path: Path) -> None:
    """Inside a hook, git exports GIT_DIR, GIT_INDEX_FILE...: labtax still diffs the repository it is asked about."""
    write_leaf(repo, "compositional_skills/writing/epsilon", skill_text("epsilon"))
    expected = statuses(diff(repo))
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GIT_DIR", str(other / ".git"))
        patch.setenv("GIT_WORK_TREE", str(other))
        patch.setenv("GIT_INDEX_FILE", str(other / ".git" / "index"))
        assert statuses(diff(repo)) == expected == {leaf("epsilon"): ("added", None)}


def test_linked_worktree_and_a_subdirectory_start(repo: Path, tmp_path: Path) -> None:
    """`git worktree add` checkouts (a .git file, not a directory) are found like any work tree."""
    write_leaf(repo, "compositional_skills/writing/alpha", skill_text("alpha", " Edited."))
    commit_all(repo, "edit alpha")
    linked = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", "-b", "second", str(linked), "feature")
    write_leaf(linked, "compositional_skills/writing/omega", skill_text("omega"))
    config = load_config(start=linked / "taxonomy" / "compositional_skills")
    result = changed_leaves(config, "main")
    assert statuses(result) == {leaf("alpha"): ("modified", leaf("alpha")), leaf("omega"): ("added", None)}
    assert result.repository is not None and result.repository.resolve() == linked.resolve()
    assert result.base_info is not None and result.base_info.summary == "base"
    assert result.base_info.sha == result.base_commit
