"""`labtax release` killed (kill -9, the real command) after its push began, and after its tag was pushed, then
run again with the same command: it finishes, with the same files, one commit per repository and the tags
where they were. On a realistic mixed-licence taxonomy (CC-BY-4.0, CC-BY-SA-4.0, public domain, Apache-2.0)
whose cards credit every source, and with credentials in the `origin` URL and in a documents `repo:` URL
that never reach a card, the notes, release.json or any output.

A stand-in teacher, a stand-in Hub and a real git server (smart HTTP) on 127.0.0.1; a tiny model on CPU."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT, git
from git_http_server import serving_git
from hub_server import HubServer, running_hub
from labtax.cli import main
from openai_server import RunningServer, running_server

TOKEN = "hf_RerunTokenNeverPrinted0042"
ORIGIN_SECRET = "ghp_OriginRemoteSecret0042"
DOCUMENTS_SECRET = "ghp_DocumentsRepoSecret0042"
TINY_TRAINING = [
    *("--set", "max_length=2048", "--set", "micro_batch_tokens=4096", "--set", "gradient_accumulation_steps=1"),
    *("--set", "warmup_steps=0", "--set", "phase1.max_steps=1", "--set", "phase2.max_steps=1"),
]
# leaf -> (attribution.txt, the licence the cards show)
SOURCES = {
    "knowledge/science/oceanography/ocean_tides": None,  # CC-BY-4.0; its documents move to the git server
    "knowledge/science/metrology/si_base_units": (
        "Title of work: International System of Units\n"
        "Link to work: https://en.wikipedia.org/wiki/International_System_of_Units\n"
        "Revision: oldid=1234567890\n"
        "License of the work: CC BY-SA 4.0\n"
        "Creator names: Wikipedia contributors\n"
    ),
    "knowledge/science/astronomy/exoplanet_detection": (
        "Title of work: Exoplanet Exploration: Ways to Find a Planet\n"
        "Link to work: https://science.nasa.gov/exoplanets/whats-an-exoplanet/\n"
        "Revision: 2024-03-01\n"
        "License of the work: Public Domain (US Government work)\n"
        "Creator names: NASA Science | Exoplanet Exploration Program\n"
    ),
    "compositional_skills/writing/freeform/haiku": None,  # Apache-2.0
}


@pytest.fixture
def services(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # this test talks to its own Hub on 127.0.0.1
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with running_server() as teacher:
        yield teacher


def mixed_licence_taxonomy(root: Path, git_server_root: Path, documents_url: str) -> Path:
    """Four leaves under four licences; ocean_tides' documents in another repository, fetched over HTTP."""
    repo = root / "repo"
    for leaf, attribution in SOURCES.items():
        shutil.copytree(REPO_ROOT / "taxonomy" / leaf, repo / "taxonomy" / leaf)
        if attribution:
            (repo / "taxonomy" / leaf / "attribution.txt").write_text(attribution)
    for name in ("si_base_units", "exoplanet_detection"):
        shutil.copytree(REPO_ROOT / "documents" / name, repo / "documents" / name)
    # The documents repository: ocean_tides' article, committed and served as docs.git.
    source = root / "docs-src"
    shutil.copytree(REPO_ROOT / "documents" / "ocean_tides", source)
    git(root, "init", "-q", str(source))
    git(source, "add", ".")
    git(source, "commit", "-q", "-m", "ocean tides article")
    commit = git(source, "rev-parse", "HEAD").strip()
    git(root, "clone", "-q", "--bare", str(source), str(git_server_root / "docs.git"))
    leaf = repo / "taxonomy" / "knowledge/science/oceanography/ocean_tides"
    text = (leaf / "qna.yaml").read_text()
    start = text.index("document:\n")
    (leaf / "qna.yaml").write_text(
        text[:start] + f"document:\n  repo: {documents_url}\n  commit: {commit}\n  patterns:\n    - '*.md'\n"
    )
    attribution = (leaf / "attribution.txt").read_text().replace("documents/ocean_tides/", documents_url)
    (leaf / "attribution.txt").write_text(attribution)
    (repo / "pyproject.toml").write_text(
        '[tool.labtax]\ntaxonomy = "taxonomy"\n\n[tool.labtax.documents]\nsources = ["local", "https", "http"]\n'
    )
    git(root, "init", "-q", str(repo))
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "taxonomy")
    git(repo, "tag", "v1.0.0")
    git(repo, "remote", "add", "origin", f"https://release-bot:{ORIGIN_SECRET}@github.com/org/taxonomy.git")
    return repo


def general_set(directory: Path) -> Path:
    """The release manager's general set: questions the model must not forget, whatever the taxonomy."""
    path = directory / "general.jsonl"
    rows = [
        {"question": "What is the capital of France?", "answer": "Paris."},
        {"question": "Which is a prime number?", "choices": ["4", "6", "7", "9"], "answer": "C"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def release_args(output: Path, teacher: RunningServer, base_model: Path, *extra: str) -> list[str]:
    return [
        *("release", "v1.0.0", *extra, "--output", str(output), "--repo", "org/student"),
        *("--dataset-repo", "org/student-data", "--base-model", str(base_model)),
        *("--teacher-url", teacher.url, "--teacher-model", "fake-teacher", "--target", "2"),
        *("--eval-max-new-tokens", "1", "--general", str(general_set(output.parent)), *TINY_TRAINING),
    ]


def killed_release(repo: Path, args: list[str], hub: HubServer, path_part: str) -> str:
    """Run the release as a real process and kill -9 it once the Hub saw a request whose path has `path_part`."""
    process = subprocess.Popen(
        [sys.executable, "-m", "labtax.cli", *args],
        cwd=repo,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(2400):
            if any(path_part in request.path for request in hub.state.requests) or process.poll() is not None:
                break
            time.sleep(0.05)
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)  # the request is being held (or was applied and its answer is held)
        process.kill()
    finally:
        out, err = process.communicate()
    assert process.returncode == -9
    return out + err


def pushed_files(hub: HubServer, repo_id: str, repo_type: str = "model") -> dict[str, bytes]:
    repo = hub.repo(repo_id, repo_type)
    return dict(repo.commits[repo.tags["v1.0.0"]].files)


def test_a_killed_release_finishes_when_run_again_and_credits_every_source_without_secrets(
    services: RunningServer,
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import datasets

    teacher, output, printed = services, tmp_path / "release", []
    (tmp_path / "served").mkdir()
    with serving_git(tmp_path / "served") as documents:
        repo = mixed_licence_taxonomy(tmp_path, tmp_path / "served", documents.url("docs.git", f"u:{DOCUMENTS_SECRET}"))
        monkeypatch.chdir(repo)
        args = release_args(output, teacher, tiny_model_dir)

        # 1. The dry run builds everything: data, model, cards, release.json, notes.
        assert main([*args, "--dry-run"]) == 0
        first = capsys.readouterr()
        printed.append(first.out + first.err)
        requests = teacher.chat_requests
        evaluation = {stage: teacher.state.stages[stage] for stage in ("eval_mcq", "eval_judge")}
        assert all(evaluation.values()), "the release's evaluation asks the teacher (questions, ratings)"
        generation_requests = requests - sum(evaluation.values())
        assert generation_requests > 0
        assert "phase 1: " in first.err and "peak learning rate" in first.err  # the training plan, before training

        # 2. The real release, killed while the model's commit is in flight (the dataset is pushed and tagged).
        with running_hub(TOKEN) as hub:
            monkeypatch.setenv("HF_ENDPOINT", hub.url)
            held = hub.hang("commit", repo_type="model")
            printed.append(killed_release(repo, args, hub, "/api/models/org/student/commit/"))
            held.set()
            assert hub.repo("org/student-data", "dataset").tags  # the push had begun
            assert not hub.repo("org/student").tags

            assert main(args) == 0  # the same command again
            rerun = capsys.readouterr()
            printed.append(rerun.out + rerun.err)
            assert "tag v1.0.0 already holds these files: nothing to push" in rerun.out  # the dataset
            for repo_id, kind in (("org/student", "model"), ("org/student-data", "dataset")):
                assert len(hub.repo(repo_id, kind).user_commits()) == 1, repo_id
            manifest = json.loads((output / "release.json").read_text())
            assert manifest["hub"]["revision"] == hub.repo("org/student").tags["v1.0.0"]
            first_push = {kind: pushed_files(hub, repo_id, kind) for repo_id, kind in
                          (("org/student", "model"), ("org/student-data", "dataset"))}  # fmt: skip

        # 3. On a fresh Hub, killed after the model's tag was created (its answer never came back).
        with running_hub(TOKEN) as hub:
            monkeypatch.setenv("HF_ENDPOINT", hub.url)
            held = hub.hang("tag", after_apply=True, repo_type="model")
            printed.append(killed_release(repo, args, hub, "/api/models/org/student/tag/"))
            held.set()
            assert "v1.0.0" in hub.repo("org/student").tags

            assert main(args) == 0
            rerun = capsys.readouterr()
            printed.append(rerun.out + rerun.err)
            assert rerun.out.count("tag v1.0.0 already holds these files: nothing to push") == 2
            for repo_id, kind in (("org/student", "model"), ("org/student-data", "dataset")):
                assert len(hub.repo(repo_id, kind).user_commits()) == 1, repo_id
                assert pushed_files(hub, repo_id, kind) == first_push[kind]  # byte for byte: nothing time-stamped
        assert teacher.chat_requests == requests  # no re-run asked the teacher again
        assert documents.saw_credentials is False

    # What was published: the cards credit every source, grouped by licence, linked at the release commit.
    commit = git(repo, "rev-parse", "HEAD").strip()
    model_files, data_files = first_push["model"], first_push["dataset"]
    card = model_files["README.md"].decode()
    for licence, count in (("CC-BY-4.0", 1), ("CC-BY-SA-4.0", 1), ("public domain", 1), ("Apache-2.0", 1)):
        assert f"| {licence} | {count} |" in card and f"<details><summary>{licence}: {count} leaf</summary>" in card
    assert "[International System of Units](https://en.wikipedia.org/wiki/International_System_of_Units)" in card
    assert "Wikipedia contributors" in card and "oldid=1234567890" in card
    assert "NASA Science \\| Exoplanet Exploration Program" in card  # contributor text escaped for a table
    assert (
        f"(https://github.com/org/taxonomy/blob/{commit}/taxonomy/knowledge/science/metrology/si_base_units/qna.yaml)"
        in card
    )
    assert f"(https://github.com/org/taxonomy/tree/{commit}/documents/si_base_units/)" not in card  # a URL, not a path
    rows = list(csv.DictReader(io.StringIO(model_files["attribution.csv"].decode())))
    assert {row["leaf"].split("/")[-2]: row["license"] for row in rows} == {
        "ocean_tides": "CC-BY-4.0",
        "si_base_units": "CC-BY-SA-4.0",
        "exoplanet_detection": "LicenseRef-Public-Domain",
        "haiku": "Apache-2.0",
    }
    assert data_files["attribution.csv"] == model_files["attribution.csv"]
    released = json.loads(model_files["release.json"])
    by_leaf = {leaf["path"].split("/")[-2]: leaf["attribution"] for leaf in released["leaves"]}
    assert by_leaf["si_base_units"] == {
        "title": "International System of Units",
        "link": "https://en.wikipedia.org/wiki/International_System_of_Units",
        "revision": "oldid=1234567890",
        "license": "CC BY-SA 4.0",
        "license_id": "CC-BY-SA-4.0",
        "creators": "Wikipedia contributors",
    }
    assert by_leaf["ocean_tides"]["link"].startswith("http://***@127.0.0.1:")
    # The dataset card: a mixed licence set is `other`, named and linked; `load_dataset` finds both phases.
    data_card = data_files["README.md"].decode()
    metadata = yaml.safe_load(data_card.split("---\n")[1])
    assert (metadata["license"], metadata["license_name"], metadata["license_link"]) == (
        "other",
        "labtax-mixed-sources",
        "attribution.csv",
    )
    assert metadata["configs"] == [
        {
            "config_name": "default",
            "data_files": [
                {"split": "phase1_knowledge", "path": "phase1_knowledge.jsonl"},
                {"split": "phase2_skills", "path": "phase2_skills.jsonl"},
            ],
        }
    ]
    staged = output / "hub" / "data"
    loaded = datasets.load_dataset(str(staged))
    assert set(loaded) == {"phase1_knowledge", "phase2_skills"}
    assert loaded["phase2_skills"].num_rows == released["data_summary"]["phase2_rows"]

    # The evaluation behind the gate: held-out answers, the teacher's questions and ratings, the general set.
    evaluated = json.loads((output / "eval.json").read_text())
    assert evaluated["general"] is not None and evaluated["general"]["questions"] == 2
    assert any(leaf["mcq"] for leaf in evaluated["leaves"]) and any(leaf["judged"] for leaf in evaluated["leaves"])

    # What happened, beside what was planned.
    summary = released["data_summary"]
    assert summary["leaves_generated"] == 4 and summary["leaves_reused"] == 0
    assert summary["requests_sent"] == generation_requests and summary["planned_requests"] > 0
    notes = (output / "notes.md").read_text()
    assert f"- **Generation**: {generation_requests:,} teacher requests sent" in notes
    assert f"(the planner estimated {summary['planned_requests']:,})" in notes
    assert "Sources by licence: " in notes

    # No credential anywhere: outputs of every run (the killed ones too), cards, notes, manifests.
    published = [path.read_bytes().decode("utf-8", "replace") for path in output.rglob("*")
                 if path.is_file() and path.suffix in (".md", ".json", ".csv")]  # fmt: skip
    everything = "\n".join(printed + published)
    for secret in (TOKEN, ORIGIN_SECRET, DOCUMENTS_SECRET):
        assert secret not in everything, secret
