"""RUN/training.json: what a training run was asked to do, what each phase did, and its model's manifest.

One writer, `labtax.train.recipe`, which rewrites the file atomically when the run starts, after each
phase and at the end (status `done`, last). Two readers: the same recipe on `--resume` (the run goes on
only with the settings and data it started with) and `check_trained_model` (evaluation and release
trust `RUN/final` only when the record says `done` and every file matches `outputs`).

The file's shape is that of the dataclasses below, fields in order, with the top-level fields that are
None (`plan` before planning, `outputs` before the end, `error` unless the run failed) left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from labtax.records.base import RecordError, RecordFormat, decode, dumps_json, to_json

TRAINING = RecordFormat("labtax-training", 1, "training record (training.json)", "start a new run in another --output")


@dataclass
class PhaseResult:
    phase: int
    status: str  # "done" | "skipped" (no samples) | "halted" (stopped by halt_after_steps; resume it)
    data_file: str
    rows: int = 0
    samples: int = 0
    overlength: dict[str, dict[str, int]] = field(default_factory=dict)
    overlength_policy: str = "skip"
    without_trained_tokens: int = 0
    steps: int = 0
    steps_done: int = 0
    warmup_steps: int = 0
    peak_learning_rate: float = 0.0
    trained_tokens: int = 0
    input_tokens: int = 0
    first_loss: float | None = None
    last_loss: float | None = None
    seconds: float = 0.0
    packing: str = ""
    model_dir: str | None = None

    @property
    def finished(self) -> bool:
        """Done or skipped: a resumed run keeps it and does not train it again."""
        return self.status in ("done", "skipped")


@dataclass(frozen=True)
class DataFileRef:
    """A phase's data file as the run read it: its path and SHA-256 (None when it was absent)."""

    file: str
    sha256: str | None = None


@dataclass(frozen=True)
class BaseModelRef:
    """The base model as resolved (labtax.train.base_model.ResolvedModel)."""

    source: str  # local | hub | hub-cache
    location: str
    revision: str | None = None
    type: str = ""


@dataclass(frozen=True)
class TrainingEnvironment:
    torch: str
    transformers: str
    cuda: str | None = None  # the first GPU's name
    processes: int = 1  # the step plan depends on it: a resumed run must have as many


@dataclass(frozen=True)
class PackingChoice:
    packed: bool
    reason: str


@dataclass(frozen=True)
class RunPlan:
    """What was decided before the first step: packing, and each phase's plan (PhasePlan.as_json, kept
    for the record: steps, warm-up, peak learning rate, batch; a resumed run keeps its finished phases')."""

    packing: PackingChoice
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class RunRecord:
    status: str  # running | done | halted | failed | interrupted
    base_model: str  # as the user gave it
    base_model_resolved: BaseModelRef | None  # None in records written before it was kept
    data: dict[str, DataFileRef]  # "phase1", "phase2"
    hyperparameters: dict[str, Any]  # Hyperparameters.as_dict(): compared key by key on --resume
    environment: TrainingEnvironment
    phases: dict[str, PhaseResult]  # "1", "2": the phases that ended (done, skipped, halted)
    final_model: str  # the model directory inside RUN
    plan: RunPlan | None = None
    outputs: dict[str, str] | None = None  # "final/<file>" -> SHA-256, written with status done
    error: str | None = None  # why a failed or interrupted run stopped

    def finished_phase(self, number: int) -> PhaseResult | None:
        found = self.phases.get(str(number))
        return found if found is not None and found.finished else None

    def with_phase(self, result: PhaseResult) -> RunRecord:
        return replace(self, phases={**self.phases, str(result.phase): replace(result)})


def training_json(record: RunRecord) -> str:
    body = {key: value for key, value in to_json(record).items() if value is not None}
    return dumps_json({"format": TRAINING.tag, **body})


def read_run_record(path: Path, remedy: str = TRAINING.remedy) -> RunRecord | None:
    """The record in `path`; None when the file is not a labtax training record at all (another tool's,
    or an empty object). A damaged one, or one of a newer labtax, is a RecordError naming the file and,
    for a damaged one, `remedy`."""
    try:
        raw = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path} is not a readable {TRAINING.what} ({exc}); {remedy}") from None
    found = raw.get("format") if isinstance(raw, dict) else None
    if not isinstance(found, str) or not found.startswith(f"{TRAINING.name}/"):
        return None
    TRAINING.check(raw.pop("format"), str(path))
    raw.setdefault("base_model_resolved", None)  # written since labtax-training/1 began: older records lack it
    return decode(RunRecord, raw, str(path), remedy)


__all__ = [
    "TRAINING",
    "BaseModelRef",
    "DataFileRef",
    "PackingChoice",
    "PhaseResult",
    "RunPlan",
    "RunRecord",
    "TrainingEnvironment",
    "read_run_record",
    "training_json",
]
