"""What a release computes about its inputs: versions, content hashes and fingerprints, and which leaves
changed since the previous release. The manifest itself (`release.json`) is the record
`labtax.records.release.ReleaseManifest`, read and written only through that module.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labtax.errors import LabtaxError
from labtax.fileio import file_sha256
from labtax.records.release import DataFile

VERSION_PATTERN = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?$")


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
