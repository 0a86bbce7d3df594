"""The two training datasets (the LAB recipe's phases) and the replay buffer.

Phase 1 is knowledge, ordered short answers first (a curriculum: facts before explanations), rendered
with its documents by `labtax.curate.knowledge` (document-grounded rows, then RAFT rows, then plain).
Phase 2 is skills plus a replay buffer so the student does not forget phase 1: a share of the
phase-1 rows (of every form, as InstructLab's phase 1.0 mixes both), optionally rows from a pinned
external JSONL file, shuffled with the seed. Phase-1 replay is raised until knowledge makes up at least
`min_knowledge_share` of phase 2. When that needs more rows than phase 1 has, rows are repeated only if
`allow_repeats` is set; every repeated row is marked (`metadata.repeat`) and counted, never hidden.
"""

from __future__ import annotations

import copy
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labtax.curate.samples import Candidate
from labtax.curate.settings import MixSettings
from labtax.errors import UsageError
from labtax.records.curation import MixCounts
from labtax.records.sample import Sample, sample_to_json
from labtax.text import words


@dataclass(frozen=True)
class ExternalRow:
    """A row of the pinned external replay file: foreign data, written as it came, marked as replay."""

    row: dict[str, Any]  # as read: chat `messages` and whatever metadata the file had
    source: str  # the file's name
    source_row: int  # 1-based line

    def as_json(self) -> dict[str, Any]:
        row = copy.deepcopy(self.row)
        metadata: dict[str, Any] = row["metadata"] if isinstance(row.get("metadata"), dict) else {}
        extra = {"replay": "external", "source": self.source, "source_row": self.source_row}
        return {"messages": row["messages"], "metadata": {**metadata, **extra}}


PhaseRow = Sample | ExternalRow


def phase_row_json(row: PhaseRow) -> dict[str, Any]:
    """A phase file's line: a sample (with curation's marks) or an external replay row."""
    return row.as_json() if isinstance(row, ExternalRow) else sample_to_json(row)


@dataclass
class MixResult:
    phase1: list[Sample]
    phase2: list[PhaseRow]
    counts: MixCounts
    notes: list[str] = field(default_factory=list)


def output_row(candidate: Candidate, replay: str | None = None, repeat: int | None = None) -> Sample:
    """The sample as written to a phase file: with its `sample_id` (and replay marks) in its metadata."""
    return candidate.sample.with_curation(sample_id=candidate.sample_id, replay=replay, repeat=repeat)


def phase1_order(knowledge: Sequence[Candidate]) -> list[Candidate]:
    """Short answers before long ones (words, then characters); the sample id breaks ties."""
    return sorted(knowledge, key=lambda c: (len(words(c.answer)), len(c.answer), c.sample_id))


def read_replay_file(path: Path, expected_sha256: str, actual_sha256: str) -> list[dict[str, Any]]:
    """The pinned external replay rows; a hash mismatch means the file changed under the pin."""
    if actual_sha256 != expected_sha256.lower():
        raise UsageError(
            f"[mix] replay_file {path} has sha256 {actual_sha256}, but replay_file_sha256 pins {expected_sha256}; "
            "restore the pinned file or update the pin on purpose"
        )
    rows = []
    with path.open("r", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}:{number}: not JSON ({exc.msg}); the replay file must be JSONL") from None
            if not isinstance(row, dict) or not isinstance(row.get("messages"), list):
                raise UsageError(f"{path}:{number}: each replay row needs a 'messages' list (chat format)")
            rows.append(row)
    return rows


def build_phases(
    phase1: Sequence[Sample],
    skills: Sequence[Candidate],
    external: Sequence[dict[str, Any]],
    settings: MixSettings,
    seed: int,
    external_name: str = "",
) -> MixResult:
    """Phase 1 is `phase1` as given (the knowledge rows, rendered and ordered); phase 2 the skills and replay."""
    rng = random.Random(seed)
    phase1 = list(phase1)

    external_rows: list[PhaseRow] = list(_external_sample(external, settings.replay_file_rows, rng, external_name))
    skill_rows: list[PhaseRow] = [output_row(c) for c in sorted(skills, key=lambda c: (c.leaf, c.line, c.sample_id))]
    base_share = round(settings.replay_share * len(phase1))
    others = len(skill_rows) + len(external_rows)
    # knowledge / (knowledge + others) >= share  <=>  knowledge >= share * others / (1 - share)
    needed_for_share = math.ceil(settings.min_knowledge_share * others / (1.0 - settings.min_knowledge_share) - 1e-9)
    wanted = max(base_share, needed_for_share) if phase1 else 0
    replay, repeated = _replay_rows(phase1, wanted, settings.allow_repeats, rng)

    notes = []
    if wanted > len(phase1) and not settings.allow_repeats:
        notes.append(
            f"phase-2 knowledge share below min_knowledge_share: {len(replay)} replay rows, {wanted} needed "
            "(phase 1 is too small and allow_repeats is off)"
        )
    if repeated:
        notes.append(f"{repeated} phase-1 rows were repeated in phase 2 to reach min_knowledge_share")
    if not phase1 and needed_for_share:
        notes.append("no knowledge samples: phase 2 has no knowledge replay")

    phase2: list[PhaseRow] = [*skill_rows, *replay, *external_rows]
    rng.shuffle(phase2)
    knowledge_rows = len(replay)
    counts = MixCounts(
        phase1_rows=len(phase1),
        phase2_rows=len(phase2),
        phase2_skill_rows=len(skill_rows),
        phase2_replay_phase1_rows=knowledge_rows,
        phase2_replay_phase1_unique_rows=knowledge_rows - repeated,
        phase2_replay_phase1_repeated_rows=repeated,
        phase2_replay_external_rows=len(external_rows),
        phase2_replay_from_share=base_share if phase1 else 0,
        phase2_replay_for_min_share=needed_for_share if phase1 else 0,
        phase2_knowledge_share=round(knowledge_rows / len(phase2), 6) if phase2 else 0.0,
    )
    return MixResult(phase1, phase2, counts, notes)


def _replay_rows(
    phase1: Sequence[Sample], wanted: int, allow_repeats: bool, rng: random.Random
) -> tuple[list[Sample], int]:
    """`wanted` phase-1 rows without replacement; further passes (marked `repeat`: 1, 2, ...) only if allowed."""
    if not phase1 or wanted <= 0:
        return [], 0
    rows: list[Sample] = []
    repeat = 0
    while len(rows) < wanted:
        order = list(phase1)
        rng.shuffle(order)
        take = order[: wanted - len(rows)]
        rows.extend(row.with_curation(replay="phase1", repeat=repeat or None) for row in take)
        repeat += 1
        if not allow_repeats:
            break
    unique = min(len(phase1), len(rows))
    return rows, len(rows) - unique


def _external_sample(
    rows: Sequence[dict[str, Any]], limit: int | None, rng: random.Random, name: str
) -> list[ExternalRow]:
    """Up to `limit` external rows, sampled without replacement (kept in file order), marked as replay."""
    indices = list(range(len(rows)))
    if limit is not None and limit < len(rows):
        indices = sorted(rng.sample(indices, limit))
    return [ExternalRow(rows[index], name, index + 1) for index in indices]
