"""`release.json` (`labtax release`): one file that explains where a model came from.

It records the git tag, the taxonomy commit, every leaf's hash, the hashes of the data files the model
was trained on (content only: identical data, identical hashes), the teacher, the base model, the
hyper-parameters, the evaluation summary and the Hub repository and revision. `labtax release` reads
the previous release's manifest to decide whether anything changed (`inputs_fingerprint`), which
leaves a model card lists, and which cached generation results to trust (`generation`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labtax.fileio import write_text_atomic
from labtax.records.base import RecordFormat, decode, dumps_json, read_json_file, to_json
from labtax.records.evaluation import LeafComparison

MANIFEST_FORMAT = RecordFormat(
    "labtax-release", 1, "release manifest (release.json)", "delete it or restore it from the release"
)
MANIFEST_FILE = "release.json"


@dataclass(frozen=True)
class LeafAttribution:
    """The attribution.txt a leaf was released under, as its contributor wrote it (URL credentials removed)."""

    title: str
    link: str  # "Link to work": a URL, or a path in this repository
    revision: str
    license: str  # "License of the work", as written
    license_id: str | None  # its SPDX id, when labtax recognises the spelling (labtax.validate.licenses)
    creators: str


@dataclass(frozen=True)
class LeafRecord:
    """A leaf as a release saw it: its path under the taxonomy root, its content hash and its attribution."""

    path: str
    leaf_hash: str
    branch: str = ""
    kind: str = ""
    attribution: LeafAttribution | None = None  # added in labtax 0.x without a format bump (older files: None)


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
    evaluation: ReleaseEvaluation
    hub: HubTarget | None
    previous_version: str | None = None
    inputs_fingerprint: str = ""
    created_at: str = ""
    changes: dict[str, list[str]] = field(default_factory=dict)
    # generation cache key -> SHA-256 of its samples.jsonl: what a later release may reuse from a cache
    generation: dict[str, str] = field(default_factory=dict)
    # What generation and curation did for this release (added without a format bump: older files None)
    data_summary: DataSummary | None = None

    @property
    def leaf_hashes(self) -> dict[str, str]:
        return {leaf.path: leaf.leaf_hash for leaf in self.leaves}


@dataclass(frozen=True)
class DataSummary:
    """What happened to the data of a release, as opposed to what the planner announced beforehand.

    Counts are of the data the release was trained on, so a re-run of the same release (or the real
    release after its dry run) records the same numbers: requests are summed over every generation run
    that produced the current data of a leaf (a fresh start and its resumes), read from generation's run
    summaries (`labtax.records.generation.RunSummary`).
    """

    leaves_generated: int  # leaves whose data is new in this release (not in the previous release's cache)
    leaves_reused: int  # leaves whose data the previous release already had: no request
    planned_requests: int  # the planner's estimate for the generated leaves (what the review report announces)
    requests_sent: int  # HTTP requests the teacher got for them (retries, hedges), over every run that made their data
    requests_failed: int
    samples_generated: int  # samples generation kept, over every leaf of the release
    samples_target: int  # what generation aimed for, over every leaf
    samples_trained: int  # samples curation kept for training (phase-1 and phase-2, replay not counted twice)
    phase1_rows: int
    phase2_rows: int


@dataclass(frozen=True)
class ReleaseGate:
    passed: bool
    status: str  # "pass" | "fail" | "skipped"
    reason: str
    previous: str | None


@dataclass(frozen=True)
class ReleaseEvaluation:
    """The evaluation as a release records it: overall metrics of the model and of its base, and the gate."""

    overall: dict[str, float]  # heldout_loss, heldout_perplexity, exact_match, token_f1
    baseline: dict[str, float]
    gate: ReleaseGate | None = None
    # Per leaf: the base model's, the previous release's and the new model's main score, sorted by change
    # (eval.json's comparison table, which the notes and the model card show). Older files: empty.
    leaves: tuple[LeafComparison, ...] = ()


def write_manifest(path: Path, manifest: ReleaseManifest) -> None:
    write_text_atomic(path, dumps_json({"format": MANIFEST_FORMAT.tag, **to_json(manifest)}))


def read_manifest(path: Path) -> ReleaseManifest:
    """Load a `release.json`; a damaged, foreign or newer file is a RecordError that names the file."""
    return decode(ReleaseManifest, read_json_file(path, MANIFEST_FORMAT), str(path), MANIFEST_FORMAT.remedy)
