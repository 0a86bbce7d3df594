"""The release workflow's safety properties, read from the YAML (tests/test_workflows.py runs
actionlint and zizmor on every workflow, this one included)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from conftest import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "release.yml"


def workflow() -> dict[Any, Any]:
    document = yaml.safe_load(WORKFLOW.read_text())
    document["on"] = document.pop(True)  # YAML 1.1 reads the key `on` as true
    return document


def job() -> dict[str, Any]:
    jobs = workflow()["jobs"]
    assert list(jobs) == ["release"]
    return jobs["release"]


def step(name_part: str) -> dict[str, Any]:
    return next(s for s in job()["steps"] if name_part in s.get("name", ""))


def test_only_version_tags_and_manual_dispatch_start_it() -> None:
    triggers = workflow()["on"]
    assert set(triggers) == {"push", "workflow_dispatch"}
    assert triggers["push"] == {"tags": ["v*"]}
    assert "pull_request" not in WORKFLOW.read_text() and "pull_request_target" not in WORKFLOW.read_text()


def test_gpu_runner_release_environment_least_privilege_and_no_overlap() -> None:
    document = workflow()
    assert document["permissions"] == {}
    assert job()["permissions"] == {"contents": "write"}
    assert job()["runs-on"] == ["self-hosted", "gpu"]
    assert job()["environment"] == "release"
    assert document["concurrency"] == {"group": "release", "cancel-in-progress": False}
    assert step("Check out")["with"]["persist-credentials"] is False


def test_actions_are_pinned_to_commits() -> None:
    uses = [s["uses"] for s in job()["steps"] if "uses" in s]
    assert uses and all(re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", u) for u in uses)


def test_generation_is_cached_by_leaf_hashes_and_vetted() -> None:
    key_step = step("cache key")
    assert "--cache-key" in key_step["run"] and key_step["id"] == "leaves"
    cache = step("Restore generation results")
    assert cache["uses"].startswith("actions/cache@")
    assert cache["with"]["key"] == "labtax-generation-${{ steps.leaves.outputs.key }}"
    assert ".labtax-cache/release/generation" in cache["with"]["path"]
    assert "--vet-cache" in step("Release")["run"]


def test_secrets_reach_only_the_release_step() -> None:
    with_secrets = [s["name"] for s in job()["steps"] if "secrets." in str(s)]
    assert with_secrets == ["Release"]
    assert step("Release")["env"]["HF_TOKEN"] == "${{ secrets.HF_TOKEN }}"


def test_eval_and_manifest_are_uploaded_even_when_the_gate_fails_and_notes_make_the_github_release() -> None:
    upload = step("Upload")
    assert upload["if"] == "${{ !cancelled() }}"
    assert {".labtax-cache/release/eval.json", ".labtax-cache/release/release.json"} <= set(
        upload["with"]["path"].split()
    )
    github_release = step("GitHub release")
    assert '--notes-file "$RELEASE_DIR/notes.md"' in github_release["run"]
    assert github_release["env"] == {"GH_TOKEN": "${{ github.token }}"}
