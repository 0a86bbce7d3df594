"""`labtax release` end to end on the shipped taxonomy: a stand-in teacher and a stand-in Hub on
127.0.0.1, a tiny base model built offline, real generation, curation, two-phase training and
evaluation on CPU.

One scenario, because each step builds on the last: a dry run builds everything and pushes nothing;
the real release pushes exactly the staged files and tags them; the next version with nothing
changed (previous release read from the Hub) sends no teacher request and trains nothing; a changed
leaf regenerates only that leaf, and a model worse than the previous release stops at the gate.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import REPO_ROOT, git
from hub_server import running_hub
from labtax.cli import main
from openai_server import RunningServer, running_server

TOKEN = "hf_ReleaseTokenNeverPrinted42"

# A handful of optimizer steps: this proves the pipeline, not the model.
TINY_TRAINING = [
    *("--set", "max_length=512", "--set", "micro_batch_tokens=2048", "--set", "gradient_accumulation_steps=1"),
    *("--set", "warmup_steps=0", "--set", "phase1.max_steps=1", "--set", "phase2.max_steps=1"),
]
CHANGED_LEAF = "compositional_skills/writing/freeform/haiku/qna.yaml"


@pytest.fixture
def taxonomy_repo(tmp_path: Path) -> Path:
    """A git repository holding a copy of the shipped taxonomy, its documents and its configuration."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("taxonomy", "documents"):
        shutil.copytree(REPO_ROOT / name, repo / name)
    shutil.copy2(REPO_ROOT / "pyproject.toml", repo / "pyproject.toml")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "taxonomy")
    git(repo, "tag", "v1.0.0")
    return repo


def release(
    repo: Path,
    output: Path,
    version: str,
    teacher: RunningServer,
    base_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    *extra: str,
) -> int:
    monkeypatch.chdir(repo)
    return main(
        [
            *("release", version, *extra, "--output", str(output), "--repo", "org/student"),
            *("--base-model", str(base_model), "--teacher-url", teacher.url, "--teacher-model", "fake-teacher"),
            *("--target", "2", "--eval-max-new-tokens", "1", "--source-url", "https://github.com/org/taxonomy"),
            "--no-eval-teacher",  # the whole taxonomy: test_release_rerun.py has the teacher-judged evaluation
            *TINY_TRAINING,
        ]
    )


def test_release_dry_run_push_nothing_changed_and_gate_failure(
    taxonomy_repo: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import huggingface_hub.constants

    # conftest keeps every test offline; this one talks to its own Hub on 127.0.0.1.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    output = tmp_path / "release"
    leaf_count = len(list((taxonomy_repo / "taxonomy").rglob("qna.yaml")))
    with running_server() as teacher, running_hub(TOKEN) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)

        # 1. A dry run builds everything, writes the manifest and card, and only says what it would push.
        assert release(taxonomy_repo, output, "v1.0.0", teacher, tiny_model_dir, monkeypatch, "--dry-run") == 0
        first = capsys.readouterr()
        first_requests = teacher.chat_requests
        assert first_requests > 0 and hub.state.requests == []
        manifest = json.loads((output / "release.json").read_text())
        assert manifest["version"] == "v1.0.0" and manifest["previous_version"] is None
        assert manifest["taxonomy_commit"] == git(taxonomy_repo, "rev-parse", "HEAD").strip()
        assert len(manifest["leaves"]) == leaf_count and all(
            len(leaf["leaf_hash"]) == 64 for leaf in manifest["leaves"]
        )
        assert {item["path"] for item in manifest["data_files"]} >= {
            "data/phase1_knowledge.jsonl",
            "data/phase2_skills.jsonl",
            "data/curation.json",
        }
        assert manifest["teacher"] == "fake-teacher" and manifest["base_model"] == str(tiny_model_dir)
        assert manifest["hyperparameters"]["phase1"]["max_steps"] == 1
        assert (  # a first release is gated against its base model, not waved through
            manifest["evaluation"]["gate"]["status"] == "pass" and "heldout_loss" in manifest["evaluation"]["overall"]
        )
        compared = manifest["evaluation"]["leaves"]  # the per-leaf table the notes and the card show
        assert len(compared) == leaf_count and {row["versus"] for row in compared} == {"base"}
        assert "### Per leaf" in (output / "hub" / "model" / "README.md").read_text()
        assert manifest["hub"]["repo_id"] == "org/student" and manifest["hub"]["revision"] is None
        assert len(manifest["generation"]) == leaf_count
        staged = output / "hub" / "model"
        staged_files = {p.relative_to(staged).as_posix(): p.read_bytes() for p in staged.rglob("*") if p.is_file()}
        assert {"README.md", "release.json", "eval.json", "config.json", "model.safetensors", "tokenizer.json"} <= set(
            staged_files
        )
        assert "would push:" in first.out and "repository org/student:" in first.out and "tag v1.0.0" in first.out
        card = staged_files["README.md"].decode()
        assert "model-index" in card and "## Leaves added and changed (first release: every leaf is new)" in card
        assert f"https://github.com/org/taxonomy/blob/{manifest['taxonomy_commit']}/taxonomy/{CHANGED_LEAF}" in card
        notes = (output / "notes.md").read_text()
        assert (
            notes.startswith("# v1.0.0") and "## Review report" in notes and f"**{leaf_count} leaves changed**" in notes
        )

        # 2. The real release reuses the generation cache and pushes exactly the staged files, tagged:
        # the curated data to the dataset repository first, then the model.
        # The first attempt is interrupted (tagging the dataset fails after its commit); the same command
        # then completes it without a second commit, new teacher requests, or a second evaluation.
        data_repo = ("--dataset-repo", "org/student-data")
        hub.fail("tag", status=400)
        evaluated_at = (output / "eval.stamp").stat().st_mtime_ns
        assert release(taxonomy_repo, output, "v1.0.0", teacher, tiny_model_dir, monkeypatch, *data_repo) == 1
        interrupted = capsys.readouterr()
        assert "re-run the same command" in interrupted.err and TOKEN not in interrupted.err + interrupted.out
        assert release(taxonomy_repo, output, "v1.0.0", teacher, tiny_model_dir, monkeypatch, *data_repo) == 0
        pushed = capsys.readouterr()
        assert (output / "eval.stamp").stat().st_mtime_ns == evaluated_at
        assert teacher.chat_requests == first_requests
        creates = [json.loads(r.body) for r in hub.state.requests if r.operation == "create"]
        assert [c.get("type") for c in creates] == ["dataset", "dataset", "model"]  # attempt 1, then the re-run
        data = hub.repo("org/student-data", "dataset")
        assert len(data.user_commits()) == 1
        data_files = dict(data.commits[data.tags["v1.0.0"]].files)
        assert {"phase1_knowledge.jsonl", "phase2_skills.jsonl", "curation.json", "README.md"} <= set(data_files)
        assert data_files["phase2_skills.jsonl"] == (output / "data" / "phase2_skills.jsonl").read_bytes()
        repo = hub.repo("org/student")
        assert [c.message for c in repo.user_commits()] == ["labtax release v1.0.0"]
        released = dict(repo.commits[repo.tags["v1.0.0"]].files)
        released.pop(".gitattributes")
        assert released == {p.relative_to(staged).as_posix(): p.read_bytes() for p in staged.rglob("*") if p.is_file()}
        manifest = json.loads((output / "release.json").read_text())
        assert manifest["hub"]["revision"] == repo.tags["v1.0.0"] and "pushed org/student @ v1.0.0" in pushed.out
        assert manifest["hub"]["dataset_revision"] == data.tags["v1.0.0"]
        assert "datasets:\n- org/student-data" in released["README.md"].decode()
        assert TOKEN not in pushed.out + pushed.err

        # 3. Nothing changed: the previous release comes from the Hub; no teacher request, no training, no push.
        git(taxonomy_repo, "tag", "v1.0.1")
        runs = {p: p.stat().st_mtime_ns for p in (output / "train").rglob("training.json")}
        assert release(taxonomy_repo, output, "v1.0.1", teacher, tiny_model_dir, monkeypatch, *data_repo) == 0
        unchanged = capsys.readouterr()
        assert "nothing changed since v1.0.0" in unchanged.err
        assert teacher.chat_requests == first_requests
        assert {p: p.stat().st_mtime_ns for p in (output / "train").rglob("training.json")} == runs
        assert len(repo.user_commits()) == 1 and set(repo.tags) == {"v1.0.0"}
        assert (output / "skipped").read_text() == "v1.0.0\n"

        # 4. One leaf changes and the model is worse than the previous release: stop at the gate.
        leaf_file = taxonomy_repo / "taxonomy" / CHANGED_LEAF
        leaf_file.write_text(leaf_file.read_text().replace("task_description: ", "task_description: Short poems. ", 1))
        git(taxonomy_repo, "commit", "-q", "-am", "haiku: sharper description")
        git(taxonomy_repo, "tag", "v1.1.0")
        previous_eval = output / "history" / "v1.0.0" / "eval.json"
        better = json.loads(previous_eval.read_text())
        for leaf in better["leaves"]:  # the previous release's model was far better on every leaf
            leaf["model"]["nll_sum"] = leaf["model"]["tokens"] * 0.5
        previous_eval.write_text(json.dumps(better))
        assert release(taxonomy_repo, output, "v1.1.0", teacher, tiny_model_dir, monkeypatch, "--dry-run") == 1
        gated = capsys.readouterr()
        assert 0 < teacher.chat_requests - first_requests < first_requests / 4  # only the changed leaf
        assert "error: the evaluation gate failed:" in gated.err and "loss rose" in gated.err
        assert "Nothing was pushed" in gated.err and "would push" not in gated.out
        assert json.loads((output / "release.json").read_text())["changes"]["modified"] == [CHANGED_LEAF]
        assert "**1 leaf changed** (1 modified)" in (output / "notes.md").read_text()
        assert not (output / "history" / "v1.1.0").exists() and set(repo.tags) == {"v1.0.0"}
