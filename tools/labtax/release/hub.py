"""Pushing a release to the Hugging Face Hub: idempotent, resumable, and silent about the token.

`push_release` makes the repository hold exactly the release folder at a commit tagged with the
version. Every step first reads the remote state, so a push interrupted anywhere (a failed commit,
a lost response, a killed process, a failed tag) completes when re-run, without a second commit:

1. `create_repo(exist_ok=True)`.
2. The tag already exists: its files must equal the local ones (done, nothing to do) or the push
   stops (a version is never moved to different content).
3. The branch head already holds exactly the local files (an earlier run committed and then died):
   no commit. Otherwise `upload_folder` commits with `parent_commit` = the head we read, so a commit
   retried after a lost response fails instead of landing twice; after any failure the head is read
   again and accepted when it holds our files.
4. `create_tag` at that commit.

Files compare by what the Hub reports: the git blob id (SHA-1) for regular files, the SHA-256 for
LFS/Xet files. The token comes from `HF_TOKEN`; it is passed to huggingface_hub and nowhere else, and
error messages are scrubbed of it before they reach the user.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labtax.errors import LabtaxError, UsageError

if TYPE_CHECKING:
    from huggingface_hub import HfApi

DEFAULT_ENDPOINT = "https://huggingface.co"
# The Hub creates this file in every new repository; it is theirs, not part of a release.
HUB_OWNED_FILES = frozenset({".gitattributes"})


@dataclass(frozen=True)
class LocalFile:
    path: str  # POSIX path inside the repository
    size: int
    git_sha1: str
    sha256: str


@dataclass(frozen=True)
class PushPlan:
    """What a push will make the repository hold (also what `--dry-run` prints)."""

    repo_id: str
    repo_type: str  # "model" | "dataset"
    folder: Path
    tag: str
    files: list[LocalFile]
    private: bool = False
    commit_message: str = ""

    def describe(self) -> list[str]:
        kind = "dataset " if self.repo_type == "dataset" else ""
        lines = [f"{kind}repository {self.repo_id}: {len(self.files)} files, tag {self.tag}"]
        lines += [f"  {item.path} ({item.size:,} bytes, sha256 {item.sha256[:12]})" for item in self.files]
        return lines


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    repo_type: str
    tag: str
    commit: str
    url: str
    created_commit: bool
    created_tag: bool
    notes: list[str] = field(default_factory=list)


class HubError(LabtaxError):
    """A push that could not complete; the message says whether re-running will finish it (exit code 1)."""

    exit_code = 1


def hub_token(environ: dict[str, str] | None = None) -> str:
    token = (environ if environ is not None else os.environ).get("HF_TOKEN", "").strip()
    if not token:
        raise UsageError(
            "HF_TOKEN is not set: export a Hugging Face token with write access to the target repository "
            "(in CI: the HF_TOKEN secret of the 'release' environment), or use --dry-run"
        )
    return token


def hub_endpoint(environ: dict[str, str] | None = None) -> str:
    return ((environ if environ is not None else os.environ).get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def git_blob_sha1(path: Path) -> tuple[str, str]:
    """(git blob id, SHA-256) of a file, in one read."""
    size = path.stat().st_size
    sha1 = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    sha256 = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha1.update(block)
            sha256.update(block)
    return sha1.hexdigest(), sha256.hexdigest()


def plan_push(folder: Path, repo_id: str, tag: str, *, repo_type: str = "model", private: bool = False) -> PushPlan:
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise HubError(f"{repo_id!r} is not a Hub repository id; use owner/name (e.g. my-org/labtax-student)")
    if not folder.is_dir():
        raise HubError(f"{folder}: nothing to push (the release folder does not exist)")
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative.startswith(".") or "/." in relative:
            continue  # huggingface_hub ignores hidden files (.git, .cache) too
        sha1, sha256 = git_blob_sha1(path)
        files.append(LocalFile(relative, path.stat().st_size, sha1, sha256))
    if not files:
        raise HubError(f"{folder}: the release folder is empty")
    message = f"labtax release {tag}" if repo_type == "model" else f"labtax release {tag}: curated data"
    return PushPlan(repo_id, repo_type, folder, tag, files, private, message)


def push_release(plan: PushPlan, *, token: str, endpoint: str | None = None) -> PushResult:
    """Make `plan.repo_id` hold exactly `plan.files` at a commit tagged `plan.tag` (see module doc)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    api = HfApi(endpoint=endpoint or hub_endpoint(), token=token, library_name="labtax")
    try:
        return _push(api, plan, token)
    except OfflineModeIsEnabled:
        raise HubError("HF_HUB_OFFLINE is set, so nothing can be pushed; unset it (or use --dry-run)") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        hint = {
            401: "the token was refused: check HF_TOKEN",
            403: "the token may not write to this repository: give it write access to the namespace",
        }.get(status or 0, "re-run the same command: it resumes where this one stopped")
        raise HubError(_scrub(f"push to {plan.repo_id} failed ({status}: {exc}); {hint}", token)) from None
    except OSError as exc:
        raise HubError(
            _scrub(f"push to {plan.repo_id} failed ({exc}); re-run the same command to resume", token)
        ) from None


def _push(api: HfApi, plan: PushPlan, token: str) -> PushResult:
    from huggingface_hub.errors import HfHubHTTPError

    # private=None leaves the visibility to the namespace's default (an organisation may make repos private).
    repo_url = api.create_repo(plan.repo_id, repo_type=plan.repo_type, private=plan.private or None, exist_ok=True)
    notes: list[str] = []
    tagged = _tag_target(api, plan)
    if tagged is not None:
        if not _holds_exactly(api, plan, tagged):
            raise HubError(
                f"{plan.repo_id} already has tag {plan.tag} on different files; a released version is never moved: "
                "release a new version instead"
            )
        notes.append(f"tag {plan.tag} already holds these files: nothing to push")
        return PushResult(plan.repo_id, plan.repo_type, plan.tag, tagged, str(repo_url), False, False, notes)

    head = _branch_head(api, plan)
    created_commit = False
    if head is not None and _holds_exactly(api, plan, head):
        commit = head
        notes.append(
            "the branch head already holds exactly these files (an earlier push committed them): no new commit"
        )
    else:
        try:
            info = api.upload_folder(
                repo_id=plan.repo_id,
                repo_type=plan.repo_type,
                folder_path=plan.folder,
                commit_message=plan.commit_message,
                commit_description=f"Pushed by `labtax release {plan.tag}`; see release.json.",
                parent_commit=head,
                delete_patterns="*",  # the repository holds this release, not leftovers of older ones
                ignore_patterns=[".*", "*/.*"],
            )
            commit = str(info.oid)
            created_commit = True
        except HfHubHTTPError:
            # A lost response to a commit that landed looks like a failure; the remote decides.
            head = _branch_head(api, plan)
            if head is None or not _holds_exactly(api, plan, head):
                raise
            commit = head
            created_commit = True
            notes.append("the commit landed although its response was lost")
    api.create_tag(
        plan.repo_id,
        repo_type=plan.repo_type,
        tag=plan.tag,
        revision=commit,
        tag_message=plan.commit_message,
        exist_ok=True,
    )
    if _tag_target(api, plan) != commit:
        raise HubError(
            f"{plan.repo_id}: tag {plan.tag} was created by someone else at another commit; check the repository"
        )
    return PushResult(plan.repo_id, plan.repo_type, plan.tag, commit, str(repo_url), created_commit, True, notes)


def _refs(api: HfApi, plan: PushPlan) -> Any:
    return api.list_repo_refs(plan.repo_id, repo_type=plan.repo_type)


def _tag_target(api: HfApi, plan: PushPlan) -> str | None:
    return next((ref.target_commit for ref in _refs(api, plan).tags if ref.name == plan.tag), None)


def _branch_head(api: HfApi, plan: PushPlan, branch: str = "main") -> str | None:
    return next((ref.target_commit for ref in _refs(api, plan).branches if ref.name == branch), None)


def remote_files(api: HfApi, plan: PushPlan, revision: str) -> dict[str, tuple[str, str | None]]:
    """path -> (git blob id, LFS SHA-256 or None) of every file at `revision`."""
    from huggingface_hub.hf_api import RepoFile

    files: dict[str, tuple[str, str | None]] = {}
    for entry in api.list_repo_tree(plan.repo_id, repo_type=plan.repo_type, revision=revision, recursive=True):
        if isinstance(entry, RepoFile):
            lfs_sha = entry.lfs.sha256 if entry.lfs is not None else None
            files[entry.path] = (entry.blob_id, lfs_sha)
    return files


def _holds_exactly(api: HfApi, plan: PushPlan, revision: str) -> bool:
    remote = {path: ids for path, ids in remote_files(api, plan, revision).items() if path not in HUB_OWNED_FILES}
    if set(remote) != {item.path for item in plan.files}:
        return False
    for item in plan.files:
        blob_id, lfs_sha = remote[item.path]
        if (lfs_sha or None) != item.sha256 and blob_id != item.git_sha1:
            return False
    return True


def _scrub(message: str, token: str) -> str:
    """An error as the Hub (or a proxy before it) worded it, made safe to print and store: the token, an
    echoed Authorization header and anything else shaped like a credential removed, one line."""
    from labtax.output import neutralise, scrub_secrets

    return neutralise(" ".join(scrub_secrets(message, [token]).split()))
