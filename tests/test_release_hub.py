"""The Hub push against a stand-in Hub on 127.0.0.1: exact files, one commit, one tag; interrupted
pushes (lost commit response, failed tag, killed process) complete on re-run without a second
commit; the token never reaches output or logs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub_server import HubServer, running_hub
from labtax.release.hub import HubError, plan_push, push_release

TOKEN = "hf_TestTokenThatMustNeverBePrinted0123456789"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    import huggingface_hub.constants

    # conftest sets HF_HUB_OFFLINE for every test; huggingface_hub reads it once, at import.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with running_hub(TOKEN) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


@pytest.fixture
def release_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "release"
    (folder / "tokenizer").mkdir(parents=True)
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# student v1.0.0\n")
    (folder / "release.json").write_text('{"format": "labtax-release/1"}\n')
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 8)
    (folder / "tokenizer" / "tokenizer.json").write_text('{"model": {}}\n')
    return folder


def local_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def released_files(hub: HubServer, repo_id: str, tag: str, repo_type: str = "model") -> dict[str, bytes]:
    repo = hub.repo(repo_id, repo_type)
    files = dict(repo.commits[repo.tags[tag]].files)
    files.pop(".gitattributes")
    return files


def test_push_creates_the_repository_one_commit_with_exactly_the_files_and_the_tag(
    hub: HubServer, release_folder: Path
) -> None:
    result = push_release(plan_push(release_folder, "org/student", "v1.0.0"), token=TOKEN)

    repo = hub.repo("org/student")
    assert [c.message for c in repo.user_commits()] == ["labtax release v1.0.0"]
    assert repo.tags == {"v1.0.0": result.commit} and repo.branches["main"] == result.commit
    assert repo.tag_messages["v1.0.0"] == "labtax release v1.0.0"
    assert released_files(hub, "org/student", "v1.0.0") == local_files(release_folder)
    assert (result.created_commit, result.created_tag) == (True, True)
    writes = [r for r in hub.state.requests if r.method == "POST"]
    assert [r.operation for r in writes] == ["create", "validate-yaml", "preupload", "commit", "tag"]
    assert all(r.authorization == f"Bearer {TOKEN}" for r in writes)


def test_pushing_the_same_release_again_changes_nothing(hub: HubServer, release_folder: Path) -> None:
    plan = plan_push(release_folder, "org/student", "v1.0.0")
    first = push_release(plan, token=TOKEN)
    second = push_release(plan, token=TOKEN)

    assert second.commit == first.commit
    assert (second.created_commit, second.created_tag) == (False, False)
    assert len(hub.repo("org/student").user_commits()) == 1


def test_a_new_version_replaces_files_of_the_old_one(hub: HubServer, release_folder: Path) -> None:
    push_release(plan_push(release_folder, "org/student", "v1.0.0"), token=TOKEN)
    (release_folder / "tokenizer" / "tokenizer.json").unlink()
    (release_folder / "model.safetensors").write_bytes(b"new weights")
    push_release(plan_push(release_folder, "org/student", "v1.1.0"), token=TOKEN)

    assert released_files(hub, "org/student", "v1.1.0") == local_files(release_folder)
    assert "tokenizer/tokenizer.json" in released_files(hub, "org/student", "v1.0.0")
    assert [c.message for c in hub.repo("org/student").user_commits()] == [
        "labtax release v1.0.0",
        "labtax release v1.1.0",
    ]


def test_a_lost_commit_response_is_resolved_from_the_remote_state_without_a_second_commit(
    hub: HubServer, release_folder: Path
) -> None:
    # The commit lands, its response is an error; huggingface_hub retries it with the same parent,
    # which the Hub refuses (412), and the push accepts the head that already holds its files.
    hub.fail("commit", after_apply=True)
    result = push_release(plan_push(release_folder, "org/student", "v1.0.0"), token=TOKEN)

    repo = hub.repo("org/student")
    assert len(repo.user_commits()) == 1
    assert repo.tags == {"v1.0.0": result.commit}
    assert hub.operations().count("commit") == 2
    assert released_files(hub, "org/student", "v1.0.0") == local_files(release_folder)


def test_a_failed_tag_completes_on_rerun_without_a_second_commit(hub: HubServer, release_folder: Path) -> None:
    hub.fail("tag", status=400)
    plan = plan_push(release_folder, "org/student", "v1.0.0")
    with pytest.raises(HubError, match="re-run the same command"):
        push_release(plan, token=TOKEN)
    assert hub.repo("org/student").tags == {}

    result = push_release(plan, token=TOKEN)

    repo = hub.repo("org/student")
    assert len(repo.user_commits()) == 1
    assert (result.created_commit, result.created_tag) == (False, True)
    assert repo.tags == {"v1.0.0": repo.branches["main"]}


def test_a_push_killed_midway_completes_when_rerun(hub: HubServer, release_folder: Path) -> None:
    release_tag = hub.hang("tag")
    code = (
        "import sys; from pathlib import Path; from labtax.release.hub import plan_push, push_release, hub_token;"
        "push_release(plan_push(Path(sys.argv[1]), 'org/student', 'v1.0.0'), token=hub_token())"
    )
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"} | {"HF_TOKEN": TOKEN}
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(release_folder)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        for _ in range(600):  # the commit is done once the tag request arrives
            if "tag" in hub.operations() or process.poll() is not None:
                break
            time.sleep(0.05)
        assert "tag" in hub.operations(), process.communicate()
        process.kill()
        process.wait()
    finally:
        release_tag.set()
    assert hub.repo("org/student").tags == {} and len(hub.repo("org/student").user_commits()) == 1

    result = push_release(plan_push(release_folder, "org/student", "v1.0.0"), token=TOKEN)

    repo = hub.repo("org/student")
    assert len(repo.user_commits()) == 1 and result.created_commit is False
    assert repo.tags == {"v1.0.0": repo.branches["main"]}


def test_an_existing_tag_on_other_files_is_never_moved(hub: HubServer, release_folder: Path) -> None:
    push_release(plan_push(release_folder, "org/student", "v1.0.0"), token=TOKEN)
    (release_folder / "model.safetensors").write_bytes(b"other weights")

    with pytest.raises(HubError, match="never moved"):
        push_release(plan_push(release_folder, "org/student", "v1.0.0"), token=TOKEN)
    assert len(hub.repo("org/student").user_commits()) == 1


def test_datasets_go_to_a_dataset_repository(hub: HubServer, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "phase1_knowledge.jsonl").write_text('{"messages": []}\n')
    result = push_release(plan_push(data, "org/student-data", "v1.0.0", repo_type="dataset"), token=TOKEN)

    assert released_files(hub, "org/student-data", "v1.0.0", "dataset") == local_files(data)
    assert result.repo_type == "dataset" and ("model", "org/student-data") not in hub.state.repos


def test_private_repositories_need_the_token_to_be_read(hub: HubServer, release_folder: Path) -> None:
    push_release(plan_push(release_folder, "org/secret", "v1.0.0", private=True), token=TOKEN)
    create = next(json.loads(r.body) for r in hub.state.requests if r.operation == "create")
    assert create["visibility"] == "private" and hub.repo("org/secret").private
    with pytest.raises(HubError):
        push_release(plan_push(release_folder, "org/secret", "v1.0.0"), token="hf_other")


def test_the_token_never_appears_in_output_logs_or_errors(
    hub: HubServer, release_folder: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("huggingface_hub").setLevel(logging.DEBUG)
    hub.fail("commit", after_apply=True)
    push_release(plan_push(release_folder, "org/student", "v1.0.0"), token=TOKEN)
    hub.fail("tag", status=400)
    with pytest.raises(HubError) as failed:
        push_release(plan_push(release_folder, "org/student", "v2.0.0"), token=TOKEN)
    with pytest.raises(HubError) as refused:
        push_release(plan_push(release_folder, "org/student", "v2.0.0"), token="hf_wrong")

    captured = capfd.readouterr()
    everything = captured.out + captured.err + caplog.text + str(failed.value) + str(refused.value)
    assert caplog.records and "401" in str(refused.value)
    assert TOKEN not in everything and TOKEN[3:20] not in everything


def test_an_error_body_that_echoes_the_request_is_scrubbed_before_it_is_shown(
    hub: HubServer, release_folder: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A proxy or debug page that repeats the request (Authorization header included) in its error body:
    the message keeps what went wrong and loses every credential."""
    caplog.set_level(logging.DEBUG)
    hub.fail("commit", echo=True, status=400)
    with pytest.raises(HubError) as failed:
        push_release(plan_push(release_folder, "org/student", "v1.0.0"), token=TOKEN)

    message = str(failed.value)
    assert "push to org/student failed (400: " in message and "injected failure of commit" in message
    assert "authorization: ***" in message.lower() and "\n" not in message
    captured = capfd.readouterr()
    everything = message + captured.out + captured.err + caplog.text
    assert TOKEN not in everything and TOKEN[3:20] not in everything and "Bearer hf_" not in everything


def test_the_token_comes_from_hf_token_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from labtax.errors import UsageError
    from labtax.release.hub import hub_token

    with pytest.raises(UsageError, match="HF_TOKEN is not set"):
        hub_token()
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert hub_token() == TOKEN


def test_bad_repository_ids_are_rejected_before_any_request(release_folder: Path) -> None:
    with pytest.raises(HubError, match="owner/name"):
        plan_push(release_folder, "student", "v1.0.0")


def test_the_previous_release_is_read_from_the_hub_at_its_tag(
    hub: HubServer, release_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labtax.errors import LabtaxError
    from labtax.release.stages import download_release_files

    (release_folder / "eval.json").write_text('{"format": "labtax-eval/1"}\n')
    push_release(plan_push(release_folder, "org/student", "v1.0.0"), token=TOKEN)
    monkeypatch.setenv("HF_TOKEN", TOKEN)

    assert download_release_files("org/student", "v1.0.0", tmp_path / "found")
    assert (tmp_path / "found" / "release.json").read_bytes() == (release_folder / "release.json").read_bytes()
    assert (tmp_path / "found" / "eval.json").is_file()
    assert not download_release_files("org/student", "v0.9.0", tmp_path / "no-tag")  # e.g. nothing changed then
    assert not download_release_files("org/nothing-yet", "v1.0.0", tmp_path / "no-repo")
    hub.fail("resolve", status=403)  # any other answer stops the release instead of rebuilding everything
    with pytest.raises(
        LabtaxError, match=r"cannot read release v1\.0\.0 .*check HF_TOKEN and that the Hub is reachable"
    ):
        download_release_files("org/student", "v1.0.0", tmp_path / "refused")
