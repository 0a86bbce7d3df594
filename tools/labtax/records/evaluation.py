"""`eval.json` (`labtax evaluate`): per-leaf and overall held-out scores of a model and its baseline, and
the regression gate's verdict. `labtax evaluate --previous` reads the previous release's file for the
gate, and `labtax release` reads it for the manifest and the model card: all through `read_eval_report`.

Scores are stored as sums (tokens, summed negative log-likelihood, answers, exact matches, summed F1),
so leaves add up exactly; the derived rates (loss, perplexity, exact_match, f1) are written beside
them for readers of the file and recomputed, never trusted, when it is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labtax.fileio import write_text_atomic
from labtax.records.base import RecordFormat, decode, dumps_json, read_json_file, to_json

EVAL_FORMAT = RecordFormat("labtax-eval", 1, "eval.json", "re-run `labtax evaluate`")


@dataclass
class Scores:
    """One model on one leaf (or overall): summed negative log-likelihood over answer tokens, and answers."""

    tokens: int = 0
    nll_sum: float = 0.0
    answers: int = 0
    exact_matches: int = 0
    f1_sum: float = 0.0

    @property
    def loss(self) -> float | None:
        return self.nll_sum / self.tokens if self.tokens else None

    @property
    def perplexity(self) -> float | None:
        loss = self.loss
        return math.exp(min(loss, 700.0)) if loss is not None else None

    @property
    def exact_match(self) -> float | None:
        return self.exact_matches / self.answers if self.answers else None

    @property
    def f1(self) -> float | None:
        return self.f1_sum / self.answers if self.answers else None

    def add(self, other: Scores) -> None:
        self.tokens += other.tokens
        self.nll_sum += other.nll_sum
        self.answers += other.answers
        self.exact_matches += other.exact_matches
        self.f1_sum += other.f1_sum

    def as_json(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "nll_sum": self.nll_sum,
            "loss": self.loss,
            "perplexity": self.perplexity,
            "answers": self.answers,
            "exact_matches": self.exact_matches,
            "f1_sum": self.f1_sum,
            "exact_match": self.exact_match,
            "f1": self.f1,
        }


@dataclass(frozen=True)
class AnswerScore:
    """A model's greedy answer to a held-out question, scored against the reference."""

    answer: str
    exact_match: bool
    f1: float


@dataclass
class HeldOutAnswer:
    question: str
    reference: str
    model: AnswerScore | None = None
    baseline: AnswerScore | None = None


@dataclass
class LeafEvaluation:
    leaf: str
    kind: str
    leaf_hash: str
    heldout_hash: str  # identity of the held-out pairs: the gate compares a leaf only while it is equal
    pairs: int
    model: Scores = field(default_factory=Scores)
    baseline: Scores = field(default_factory=Scores)
    answers: list[HeldOutAnswer] = field(default_factory=list)  # knowledge leaves
    contaminated: list[str] = field(default_factory=list)  # held-out questions found in the training data


@dataclass
class GateVerdict:
    status: str  # "pass" | "fail" | "skipped" (no previous eval.json, or nothing comparable)
    previous: str | None
    compared_leaves: int = 0
    failures: list[str] = field(default_factory=list)
    note: str = ""
    thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status != "fail"

    @property
    def reason(self) -> str:
        return "; ".join(self.failures) or self.note or self.status


@dataclass(frozen=True)
class Decoding:
    decoding: str  # "greedy"
    max_new_tokens: int


@dataclass(frozen=True)
class ModelAndBaseline:
    model: Scores
    baseline: Scores


@dataclass(frozen=True)
class EvalReport:
    model: str
    baseline: str
    split: str  # which pairs were scored (labtax.taxonomy.leaf.heldout_pairs)
    generation: Decoding
    training_data: str | None  # the DATA directory searched for held-out questions, if any
    overall: ModelAndBaseline
    leaves: tuple[LeafEvaluation, ...]
    gate: GateVerdict


def eval_report_json(report: EvalReport) -> dict[str, Any]:
    raw = {"format": EVAL_FORMAT.tag, **to_json(report)}
    raw["overall"] = {"model": report.overall.model.as_json(), "baseline": report.overall.baseline.as_json()}
    for written, leaf in zip(raw["leaves"], report.leaves, strict=True):
        written["model"], written["baseline"] = leaf.model.as_json(), leaf.baseline.as_json()
    return raw


def write_eval_report(path: Path, report: EvalReport) -> None:
    write_text_atomic(path, dumps_json(eval_report_json(report)))


def read_eval_report(path: Path) -> EvalReport:
    return decode(EvalReport, read_json_file(path, EVAL_FORMAT), str(path), EVAL_FORMAT.remedy)
