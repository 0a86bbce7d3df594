"""`release.json`: one file that explains where a model came from.

It records the git tag, the taxonomy commit, every leaf's hash, the hashes of the data files the
model was trained on, the teacher, the base model, the hyper-parameters, the evaluation results and
the Hub repository and revision. `labtax release` also reads the previous release's manifest to
decide whether anything changed (`inputs_fingerprint`) and which leaves a model card should list.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labtax.errors import LabtaxError
from labtax.fileio import file_sha256, write_json_atomic

MANIFEST_FORMAT = "labtax-release/1"
MANIFEST_FILE = "release.json"
VERSION_PATTERN = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?$")


@dataclass(frozen=True)
class LeafRecord:
    """A leaf as a release saw it: its path under the taxonomy root and its content hash."""

    path: str
    leaf_hash: str
    branch: str = ""
    kind: str = ""


@dataclass(frozen=True)
class DataFile:
    """A file the model was built from (curated data, generation summary), by content."""

    path: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class HubTarget:
    """Where the model went: repository, tag and the commit the tag points at (None until pushed)."""

    repo_id: str
    tag: str
    revision: str | None = None
    dataset_repo_id: str | None = None
    dataset_revision: str | None = None
    url: str | None = None


@dataclass
class ReleaseManifest:
    version: str
    taxonomy_commit: str
    leaves: list[LeafRecord]
    data_files: list[DataFile]
    teacher: str
    base_model: str
    hyperparameters: dict[str, Any]
    evaluation: dict[str, Any]
    hub: HubTarget | None
    previous_version: str | None = None
    inputs_fingerprint: str = ""
    created_at: str = ""
    changes: dict[str, list[str]] = field(default_factory=dict)
    # generation cache key -> SHA-256 of its samples.jsonl: what a later release may reuse from a cache
    generation: dict[str, str] = field(default_factory=dict)
    format: str = MANIFEST_FORMAT

    @property
    def leaf_hashes(self) -> dict[str, str]:
        return {leaf.path: leaf.leaf_hash for leaf in self.leaves}

    def as_json(self) -> dict[str, Any]:
        record = asdict(self)
        # The format marker first, so a reader can tell what it holds before parsing the rest.
        return {"format": record.pop("format"), **record}


def check_version(version: str) -> str:
    """A release version is a `v`-prefixed semantic version (the tag the workflow runs on)."""
    if not VERSION_PATTERN.match(version):
        raise LabtaxError(
            f"{version!r} is not a release version; use a tag like v1.2.3 (semantic version with a leading v)"
        )
    return version


def version_key(version: str) -> tuple[int, int, int, int, str]:
    """Sort key for versions: numeric parts, and a pre-release sorts before its release."""
    match = VERSION_PATTERN.match(version)
    if not match:
        return (-1, -1, -1, -1, version)
    pre = version.partition("-")[2]
    return (int(match.group(1)), int(match.group(2)), int(match.group(3)), 0 if pre else 1, pre)


def hash_data_files(root: Path, paths: list[Path]) -> list[DataFile]:
    """Content hashes of `paths`, recorded relative to `root` (sorted, so manifests diff cleanly)."""
    records = []
    for path in sorted(paths):
        relative = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        records.append(DataFile(relative, file_sha256(path), path.stat().st_size))
    return records


def fingerprint(payload: Any) -> str:
    """A stable SHA-256 of a JSON-able value (keys sorted): for cache keys and change detection."""
    encoded = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def leaves_fingerprint(leaf_hashes: dict[str, str]) -> str:
    """One hash over every leaf's path and content hash: the workflow's generation-cache key."""
    return fingerprint(sorted(leaf_hashes.items()))


def write_manifest(path: Path, manifest: ReleaseManifest) -> None:
    write_json_atomic(path, manifest.as_json())


def read_manifest(path: Path) -> ReleaseManifest:
    """Load a `release.json`; a damaged or foreign file is a LabtaxError that names the file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LabtaxError(f"{path}: no release manifest here") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabtaxError(
            f"{path}: not a readable release manifest ({exc}); delete it or restore it from the release"
        ) from None
    if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else None
        raise LabtaxError(f"{path}: not a {MANIFEST_FORMAT} manifest (format {found!r})")
    try:
        hub = raw.get("hub")
        return ReleaseManifest(
            version=raw["version"],
            taxonomy_commit=raw["taxonomy_commit"],
            leaves=[LeafRecord(**leaf) for leaf in raw["leaves"]],
            data_files=[DataFile(**item) for item in raw["data_files"]],
            teacher=raw["teacher"],
            base_model=raw["base_model"],
            hyperparameters=dict(raw.get("hyperparameters") or {}),
            evaluation=dict(raw.get("evaluation") or {}),
            hub=HubTarget(**hub) if isinstance(hub, dict) else None,
            previous_version=raw.get("previous_version"),
            inputs_fingerprint=raw.get("inputs_fingerprint", ""),
            created_at=raw.get("created_at", ""),
            changes={key: list(value) for key, value in (raw.get("changes") or {}).items()},
            generation={str(key): str(value) for key, value in (raw.get("generation") or {}).items()},
        )
    except (KeyError, TypeError) as exc:
        raise LabtaxError(f"{path}: release manifest is missing or has a wrong field ({exc})") from None


@dataclass(frozen=True)
class LeafChanges:
    """What changed between two releases, by leaf path (from leaf hashes alone, no git needed)."""

    added: list[str]
    modified: list[str]
    renamed: list[tuple[str, str]]
    deleted: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.modified or self.renamed or self.deleted)

    def as_json(self) -> dict[str, list[str]]:
        return {
            "added": self.added,
            "modified": self.modified,
            "renamed": [f"{old} -> {new}" for old, new in self.renamed],
            "deleted": self.deleted,
        }


def compare_leaves(previous: dict[str, str], current: dict[str, str]) -> LeafChanges:
    """Added, modified, renamed (same hash, new path) and deleted leaves between two hash maps."""
    gone = {path: digest for path, digest in previous.items() if path not in current}
    new = {path: digest for path, digest in current.items() if path not in previous}
    modified = sorted(path for path in current.keys() & previous.keys() if current[path] != previous[path])
    by_hash: dict[str, str] = {}
    for path, digest in sorted(gone.items()):
        by_hash.setdefault(digest, path)
    renamed = []
    for path, digest in sorted(new.items()):
        old = by_hash.pop(digest, None)
        if old is not None:
            renamed.append((old, path))
    renamed_old = {old for old, _ in renamed}
    renamed_new = {new_path for _, new_path in renamed}
    return LeafChanges(
        added=sorted(path for path in new if path not in renamed_new),
        modified=modified,
        renamed=renamed,
        deleted=sorted(path for path in gone if path not in renamed_old),
    )
