"""The curation stage's files (`labtax curate --output DATA`), each with its one reader and writer.

    DATA/phase1_knowledge.jsonl, phase2_skills.jsonl   Samples (labtax.records.sample) plus replay rows
    DATA/curation.json                                 CurationReport: counts per stage, reason and leaf
    DATA/dropped.jsonl                                 DropDecision per dropped sample
    DATA/preference_pairs.jsonl                        PreferencePair per teacher prompt (with --influence)

curation.json covers content only (inputs and outputs by hash, counts, settings, seed): identical
inputs and settings give a byte-identical file, so a release's data hash changes only with the data.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labtax.fileio import check_hashes, write_bytes_atomic, write_text_atomic
from labtax.records.base import RecordFormat, decode, dumps_json, read_json_file, to_json
from labtax.records.sample import Message

CURATE = "re-run `labtax curate`"
CURATION_FORMAT = RecordFormat("labtax-curation", 2, "curation report (curation.json)", CURATE)
PAIR_FORMAT = RecordFormat("labtax-preference-pair", 1, "preference pair", CURATE)

PHASE1_FILE = "phase1_knowledge.jsonl"
PHASE2_FILE = "phase2_skills.jsonl"
REPORT_FILE = "curation.json"
PAIRS_FILE = "preference_pairs.jsonl"
DROPPED_FILE = "dropped.jsonl"
# Drop stages, in the order curation applies them ("malformed" lines are dropped while reading).
STAGES = ("filter", "decontamination", "exact-duplicate", "near-duplicate", "selection", "influence")


@dataclass(frozen=True)
class OutputFile:
    rows: int
    sha256: str | None = None  # None: no rows, so no file (an empty file does not load as a dataset)


@dataclass(frozen=True)
class DropExample:
    """One of the first few samples dropped for a reason; text is left out when it may hold PII."""

    leaf: str
    line: int
    sample_id: str | None = None
    question: str | None = None
    answer: str | None = None
    text: str | None = None  # a malformed line's text
    detail: str | None = None


@dataclass(frozen=True)
class ReasonDrops:
    count: int
    examples: tuple[DropExample, ...]


@dataclass(frozen=True)
class StageDrops:
    dropped: int
    reasons: dict[str, ReasonDrops]


@dataclass(frozen=True)
class LeafCuration:
    """One leaf's samples through curation."""

    read: int
    malformed: int
    dropped: dict[str, int]  # "stage/reason" -> count
    kept: int
    phase1_rows: int
    phase2_rows: int
    kind: str
    status: str  # the leaf's generation status (generation.json), or "not-generated"
    target: int
    flagged: dict[str, int] = field(default_factory=dict)  # kept samples flagged for a look, "flag" -> count
    seeds: int = 0  # the leaf's training seeds added to its phase ([mix] seeds); its rows count them too


@dataclass(frozen=True)
class CurationTotals:
    read: int
    malformed: int
    dropped_filter: int
    dropped_decontamination: int
    dropped_exact_duplicate: int
    dropped_near_duplicate: int
    dropped_selection: int
    dropped_influence: int
    kept: int
    knowledge_kept: int
    skills_kept: int
    seeds_added: int = 0  # the leaves' training seeds added to the mix ([mix] seeds), not counted in `kept`


@dataclass(frozen=True)
class MixCounts:
    phase1_rows: int
    phase2_rows: int
    phase2_skill_rows: int
    phase2_replay_phase1_rows: int
    phase2_replay_phase1_unique_rows: int
    phase2_replay_phase1_repeated_rows: int
    phase2_replay_external_rows: int
    phase2_replay_from_share: int
    phase2_replay_for_min_share: int
    phase2_knowledge_share: float


@dataclass(frozen=True)
class KnowledgeMixCounts:
    """The knowledge rows curation wrote, by form (InstructLab's knowledge data mixing, docs/curation.md)."""

    samples: int  # knowledge samples kept
    grounded_rows: int  # document-grounded: chunk + question + answer, every token trained
    raft_rows: int  # question among distractor chunks (the right chunk in `raft_with_oracle_rows` of them)
    raft_with_oracle_rows: int
    plain_rows: int  # the bare question and answer
    without_chunk: int  # samples whose document chunk could not be found (rendered plain instead)
    chunks: int  # document chunks of the knowledge leaves


@dataclass(frozen=True)
class InfluenceSummary:
    enabled: bool
    reference_examples: int | None = None
    reference_loss: float | None = None
    candidates_scored: int | None = None
    candidates_unscored: int | None = None
    kept: int | None = None
    preference_pairs: int | None = None
    trainable_parameters: int | None = None


@dataclass(frozen=True)
class CurationReport:
    seed: int
    teacher: str
    settings: dict[str, dict[str, Any]]  # the curation settings, section by section, as given
    inputs: dict[str, str]  # file (relative to GEN, or "replay:<name>") -> SHA-256
    outputs: dict[str, OutputFile]
    totals: CurationTotals
    drops: dict[str, StageDrops]
    mix: MixCounts
    influence: InfluenceSummary
    leaves: dict[str, LeafCuration]
    notes: tuple[str, ...] = ()
    # Kept samples worth a look, by flag (e.g. "looks-truncated"): counted and exemplified, never dropped.
    flags: dict[str, ReasonDrops] = field(default_factory=dict)
    knowledge: KnowledgeMixCounts | None = None  # how phase-1 knowledge was rendered (docs/curation.md)


def write_curation_report(data_dir: Path, report: CurationReport) -> Path:
    path = data_dir / REPORT_FILE
    write_text_atomic(path, dumps_json({"format": CURATION_FORMAT.tag, **to_json(report, drop_none=True)}))
    return path


def read_curation_report(data_dir: Path) -> CurationReport:
    path = data_dir / REPORT_FILE
    return decode(CurationReport, read_json_file(path, CURATION_FORMAT), str(path), CURATE)


@dataclass(frozen=True)
class DropDecision:
    """Why one sample (or malformed line) was dropped: one line of dropped.jsonl."""

    sample_id: str | None  # None for a malformed line
    leaf: str
    line: int
    stage: str
    reason: str
    detail: str


def drop_decisions_bytes(decisions: Iterable[DropDecision]) -> bytes:
    return "".join(json.dumps(to_json(d), ensure_ascii=False) + "\n" for d in decisions).encode("utf-8")


def read_drop_decisions(path: Path) -> list[DropDecision]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [decode(DropDecision, json.loads(t), f"{path}:{n}", CURATE) for n, t in enumerate(lines, 1) if t.strip()]


@dataclass(frozen=True)
class PairMetadata:
    leaf: str
    group: str  # "<leaf>#<request id>": the teacher request whose prompt this pair is about
    prompt_stage: str  # its prompt template, e.g. "freeform_instructions"
    chosen_sample_id: str
    rejected_sample_id: str
    chosen_influence: float
    rejected_influence: float


@dataclass(frozen=True)
class PreferencePair:
    """A Montessori-Instruct pair for tuning the teacher (TRL's DPO format): the real prompt the teacher
    was sent, and two of its answers to it, the one that helped the student most and one that did not."""

    prompt: tuple[Message, ...]
    chosen: tuple[Message, ...]
    rejected: tuple[Message, ...]
    metadata: PairMetadata


def preference_pairs_bytes(pairs: Iterable[PreferencePair]) -> bytes:
    rows = []
    for pair in pairs:
        row = to_json(pair)
        row["metadata"] = {"format": PAIR_FORMAT.tag, **row["metadata"]}
        rows.append(json.dumps(row, ensure_ascii=False) + "\n")
    return "".join(rows).encode("utf-8")


def read_preference_pairs(path: Path) -> list[PreferencePair]:
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        raw = json.loads(line)
        where = f"{path}:{number}"
        metadata = dict(raw.get("metadata") or {})
        PAIR_FORMAT.check(metadata.pop("format", None), where)
        pairs.append(decode(PreferencePair, {**raw, "metadata": metadata}, where, CURATE))
    return pairs


def write_jsonl_bytes(path: Path, data: bytes) -> None:
    """A JSONL output of curation; with no rows the file is removed, so a stale one cannot be trained on."""
    if data:
        write_bytes_atomic(path, data)
    else:
        path.unlink(missing_ok=True)


def check_curated_data(data_dir: Path) -> None:
    """Refuse DATA unless its files are exactly what curation.json (written last) records.

    Curation writes the phase files, then curation.json with each output's SHA-256; a run killed in
    between, or a file edited afterwards, leaves files that do not match it, and training on them would
    train on data no report describes. A directory without curation.json is not curation's output (data
    prepared by other means) and is not checked.
    """
    if not (data_dir / REPORT_FILE).is_file():
        return
    report = read_curation_report(data_dir)
    expected = {name: output.sha256 for name, output in report.outputs.items()}
    remedy = f"run `labtax curate` with --output {data_dir} again (it rewrites the directory)"
    check_hashes(data_dir, expected, manifest=data_dir / REPORT_FILE, remedy=remedy)
