"""`eval.json` (`labtax evaluate`): per-leaf and overall scores of the new model, its base model and the
previous release, the per-leaf comparison table, and the regression gate's verdict. `labtax evaluate
--previous` reads the previous release's file for the gate, and `labtax release` reads it for the
manifest, the release notes and the model card: all through `read_eval_report`. `mcq.json` beside it
holds the multiple-choice questions the teacher wrote from the knowledge documents (`McqSet`), reused
while the leaf and the teacher are unchanged so that every model answers the same questions.

Scores are stored as sums (tokens, summed negative log-likelihood, answers, exact matches, summed F1,
multiple-choice questions and correct choices, judged answers and summed ratings), so leaves add up
exactly; the derived rates (loss, perplexity, exact_match, f1, mcq_accuracy, judge_score) are written
beside them for readers of the file and recomputed, never trusted, when it is read. Fields added after
`labtax-eval/1` was first written have defaults, so older files still read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labtax.fileio import write_text_atomic
from labtax.records.base import RecordFormat, decode, dumps_json, read_json_file, to_json

EVAL_FORMAT = RecordFormat("labtax-eval", 1, "eval.json", "re-run `labtax evaluate`")
MCQ_FORMAT = RecordFormat("labtax-eval-mcq", 1, "mcq.json", "delete it and re-run `labtax evaluate`")
MCQ_FILE = "mcq.json"
RATINGS_FORMAT = RecordFormat("labtax-eval-ratings", 1, "ratings.json", "delete it and re-run `labtax evaluate`")
RATINGS_FILE = "ratings.json"
ROLES = ("model", "baseline", "previous")  # the new model, its base model, the previous release's model


@dataclass
class Scores:
    """One model on one leaf (or overall): summed negative log-likelihood over answer tokens, and answers."""

    tokens: int = 0
    nll_sum: float = 0.0
    answers: int = 0
    exact_matches: int = 0
    f1_sum: float = 0.0
    mcq_questions: int = 0  # multiple-choice questions from the leaf's documents (MMLU-Branch style)
    mcq_correct: int = 0
    judged: int = 0  # answers the teacher rated 1-10 (MT-Bench-Branch style)
    judge_sum: float = 0.0

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

    @property
    def mcq_accuracy(self) -> float | None:
        return self.mcq_correct / self.mcq_questions if self.mcq_questions else None

    @property
    def judge_score(self) -> float | None:
        return self.judge_sum / self.judged if self.judged else None

    def add(self, other: Scores) -> None:
        self.tokens += other.tokens
        self.nll_sum += other.nll_sum
        self.answers += other.answers
        self.exact_matches += other.exact_matches
        self.f1_sum += other.f1_sum
        self.mcq_questions += other.mcq_questions
        self.mcq_correct += other.mcq_correct
        self.judged += other.judged
        self.judge_sum += other.judge_sum

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
            "mcq_questions": self.mcq_questions,
            "mcq_correct": self.mcq_correct,
            "mcq_accuracy": self.mcq_accuracy,
            "judged": self.judged,
            "judge_sum": self.judge_sum,
            "judge_score": self.judge_score,
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
    previous: AnswerScore | None = None


@dataclass(frozen=True)
class ChoiceQuestion:
    """A multiple-choice question the teacher wrote from one chunk of a knowledge leaf's documents."""

    id: str  # hash of the question and its choices: the same question across runs and releases
    question: str
    choices: tuple[str, ...]  # four, shuffled (seeded by the question) so the right one's place is not a cue
    answer: int  # index of the right choice
    source: str  # "<document path>#<chunk index>"


@dataclass
class ChoiceResult:
    """Which choice each model picked (highest log-likelihood), by index; None: not asked."""

    question: ChoiceQuestion
    model: int | None = None
    baseline: int | None = None
    previous: int | None = None


@dataclass(frozen=True)
class Judgment:
    """A model's answer and the teacher's 1-10 rating of it against the reference (None: the judge failed)."""

    answer: str
    rating: int | None
    explanation: str = ""


@dataclass
class JudgedQuestion:
    """A skill leaf's seed question, asked of every model and rated by the teacher (MT-Bench-Branch)."""

    question: str  # as asked: a grounded seed's context, a blank line, its question
    reference: str  # the seed's answer
    held_out: bool  # one of `heldout_pairs` (never shown to the teacher); the others were its examples
    model: Judgment | None = None
    baseline: Judgment | None = None
    previous: Judgment | None = None


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
    previous: Scores | None = None  # the previous release's model, where comparable (`previous_source`)
    previous_source: str | None = None  # "model" (scored in this run) | "eval.json" (its recorded scores)
    mcq_hash: str = ""  # identity of the multiple-choice set: compared across releases only while equal
    mcq: list[ChoiceResult] = field(default_factory=list)  # knowledge leaves, with a teacher
    judge_hash: str = ""  # identity of the judged questions and the judge
    judged: list[JudgedQuestion] = field(default_factory=list)  # skill leaves, with a teacher


@dataclass
class GateVerdict:
    status: str  # "pass" | "fail" | "skipped" (nothing at all to compare)
    previous: str | None  # the previous release's eval.json (or model) compared against, if any
    compared_leaves: int = 0  # leaves compared with the previous release
    failures: list[str] = field(default_factory=list)
    note: str = ""
    thresholds: dict[str, float] = field(default_factory=dict)
    compared_with: list[str] = field(default_factory=list)  # "base model", "previous release", "general set"

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
    previous: Scores | None = None  # over the leaves where the previous release is comparable


@dataclass
class GeneralEvaluation:
    """The release manager's general set (`--general FILE`): what the model must not forget."""

    file: str
    sha256: str
    questions: int
    model: Scores
    baseline: Scores
    previous: Scores | None = None
    mcq: list[ChoiceResult] = field(default_factory=list)
    answers: list[HeldOutAnswer] = field(default_factory=list)


@dataclass(frozen=True)
class LeafComparison:
    """One row of the per-leaf table (eval.md, the release notes, the model card): a leaf's main score for
    the base model, the previous release and the new model, and the change (positive: better)."""

    leaf: str
    kind: str
    metric: str  # "mcq_accuracy" | "token_f1" | "judge_score" | "heldout_loss"
    higher_is_better: bool
    base: float | None
    previous: float | None
    new: float | None
    change: float | None  # improvement over the previous release, else over the base model
    versus: str  # "previous" | "base"
    regressed: bool


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
    teacher: str | None = None  # who wrote the multiple-choice questions and judged the answers
    previous_model: str | None = None  # the previous release's model, when it was scored in this run
    general: GeneralEvaluation | None = None
    comparison: tuple[LeafComparison, ...] = ()  # sorted by change, regressions first
    notes: tuple[str, ...] = ()


def eval_report_json(report: EvalReport) -> dict[str, Any]:
    raw = {"format": EVAL_FORMAT.tag, **to_json(report)}
    for written, holder in (
        (raw["overall"], report.overall),
        *zip(raw["leaves"], report.leaves, strict=True),
        *([(raw["general"], report.general)] if report.general else []),
    ):
        for role in ROLES:
            scores = getattr(holder, role)
            if scores is not None:
                written[role] = scores.as_json()
    return raw


def write_eval_report(path: Path, report: EvalReport) -> None:
    write_text_atomic(path, dumps_json(eval_report_json(report)))


def read_eval_report(path: Path) -> EvalReport:
    return decode(EvalReport, read_json_file(path, EVAL_FORMAT), str(path), EVAL_FORMAT.remedy)


@dataclass(frozen=True)
class McqLeaf:
    key: str  # hash of what made the questions: leaf hash, teacher, prompt, counts, chunking
    questions: tuple[ChoiceQuestion, ...]


@dataclass(frozen=True)
class McqSet:
    """mcq.json: the multiple-choice questions of every knowledge leaf, as the teacher wrote them."""

    leaves: dict[str, McqLeaf]


def write_mcq_set(path: Path, questions: McqSet) -> None:
    write_text_atomic(path, dumps_json({"format": MCQ_FORMAT.tag, **to_json(questions)}))


def read_mcq_set(path: Path) -> McqSet:
    return decode(McqSet, read_json_file(path, MCQ_FORMAT), str(path), MCQ_FORMAT.remedy)


@dataclass(frozen=True)
class Rating:
    rating: int
    explanation: str


@dataclass(frozen=True)
class RatingSet:
    """ratings.json: the judge's ratings by request (the teacher, the prompt with the question, the reference
    and the rated answer): an answer rated once, such as the base model's in every release, is not rated again."""

    ratings: dict[str, Rating]


def write_rating_set(path: Path, ratings: RatingSet) -> None:
    write_text_atomic(path, dumps_json({"format": RATINGS_FORMAT.tag, **to_json(ratings)}))


def read_rating_set(path: Path) -> RatingSet:
    return decode(RatingSet, read_json_file(path, RATINGS_FORMAT), str(path), RATINGS_FORMAT.remedy)
