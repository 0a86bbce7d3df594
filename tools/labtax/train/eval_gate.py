"""The regression gate: the new model against the base model, the previous release and the general set.

A release must be at least as good as what it replaces, and as what it was trained from: without a
previous release (the first one) the base model is the reference, so nothing passes by default. Each
comparison runs over what both sides have (the leaves, the questions) and fails on:
- held-out loss: a rise over all compared leaves beyond `max_loss_increase`, or on one leaf beyond
  `max_leaf_loss_increase` (relative);
- knowledge exact match and token F1: a drop beyond `max_exact_match_drop` / `max_f1_drop` (absolute);
- multiple-choice accuracy and judge score: an overall drop beyond `max_mcq_drop` / `max_judge_drop`, or
  on one leaf a drop beyond `max_leaf_mcq_drop` / `max_leaf_judge_drop` whose 95 % interval (paired over
  the leaf's questions) lies wholly below zero: a handful of questions must show a clear drop;
- the general set (`--general`): its loss, F1 and multiple-choice accuracy, with the overall thresholds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from labtax.errors import UsageError
from labtax.records.evaluation import GateVerdict, GeneralEvaluation, LeafEvaluation, Scores
from labtax.train.eval_stats import clearly_below, paired_difference


@dataclass(frozen=True)
class GateThresholds:
    """How much worse than a reference (the base model, the previous release) the new model may be."""

    max_loss_increase: float = 0.05  # relative rise of the held-out loss over all compared leaves
    max_leaf_loss_increase: float = 0.25  # relative rise of one leaf's held-out loss
    max_exact_match_drop: float = 0.05  # absolute drop of the knowledge exact-match rate (0..1)
    max_f1_drop: float = 0.05  # absolute drop of the mean knowledge token F1 (0..1)
    max_mcq_drop: float = 0.05  # absolute drop of the multiple-choice accuracy over all knowledge leaves
    max_judge_drop: float = 0.5  # drop of the mean judge score (1-10) over all skill leaves
    max_leaf_mcq_drop: float = 0.2  # one leaf's accuracy drop, when its 95 % interval is below zero
    max_leaf_judge_drop: float = 1.5  # one leaf's judge-score drop, when its 95 % interval is below zero


def check_thresholds(thresholds: GateThresholds) -> None:
    negative = [name for name, value in asdict(thresholds).items() if value < 0]
    if negative:
        raise UsageError(f"gate thresholds must be 0 or more: {', '.join(negative)}")


def apply_gate(
    leaves: Sequence[LeafEvaluation],
    general: GeneralEvaluation | None,
    thresholds: GateThresholds,
    previous_source: str | None,
) -> GateVerdict:
    failures = compare_leaves(leaves, "baseline", "the base model", thresholds)
    compared_with = ["base model"]
    with_previous = [leaf for leaf in leaves if leaf.previous is not None]
    if with_previous:
        failures += compare_leaves(with_previous, "previous", "the previous release", thresholds)
        compared_with.append("previous release")
    if general is not None:
        failures += compare_general(general, "baseline", "the base model", thresholds)
        if general.previous is not None:
            failures += compare_general(general, "previous", "the previous release", thresholds)
        compared_with.append("general set")
    note = ""
    if previous_source is None:
        note = "no previous release: compared with the base model"
    elif not with_previous:
        note = "no leaf is comparable with the previous release (its held-out questions all changed)"
    return GateVerdict(
        "fail" if failures else "pass",
        previous_source,
        len(with_previous),
        failures,
        note=note,
        thresholds={k: float(v) for k, v in asdict(thresholds).items()},
        compared_with=compared_with,
    )


def relative_rise(now: float | None, then: float | None) -> float | None:
    if now is None or then is None or then <= 0:
        return None
    return (now - then) / then


def _totals(leaves: Sequence[LeafEvaluation], role: str, present: Callable[[Scores], int]) -> tuple[Scores, Scores]:
    """The new model's and the reference's sums over the leaves where both have the component."""
    now, then = Scores(), Scores()
    for leaf in leaves:
        reference = getattr(leaf, role)
        if reference is not None and present(leaf.model) and present(reference):
            now.add(leaf.model)
            then.add(reference)
    return now, then


def compare_leaves(
    leaves: Sequence[LeafEvaluation], role: str, label: str, t: GateThresholds
) -> list[str]:  # fmt: skip
    failures: list[str] = []
    now, then = _totals(leaves, role, lambda s: s.tokens)
    rise = relative_rise(now.loss, then.loss)
    if rise is not None and rise > t.max_loss_increase:
        failures.append(
            f"held-out loss rose {rise:.1%} over {label} ({then.loss:.4f} -> {now.loss:.4f}), "
            f"more than the allowed {t.max_loss_increase:.1%}"
        )
    for leaf in leaves:
        reference = getattr(leaf, role)
        if reference is None:
            continue
        rise = relative_rise(leaf.model.loss, reference.loss)
        if rise is not None and rise > t.max_leaf_loss_increase:
            failures.append(
                f"{leaf.leaf}: held-out loss rose {rise:.1%} over {label} ({reference.loss:.4f} -> "
                f"{leaf.model.loss:.4f}), more than the allowed {t.max_leaf_loss_increase:.1%}"
            )
    now, then = _totals(leaves, role, lambda s: s.answers)
    for name, now_rate, then_rate, allowed in (
        ("exact match", now.exact_match, then.exact_match, t.max_exact_match_drop),
        ("token F1", now.f1, then.f1, t.max_f1_drop),
    ):
        if now_rate is not None and then_rate is not None and then_rate - now_rate > allowed:
            failures.append(
                f"knowledge {name} fell {then_rate - now_rate:.3f} below {label} ({then_rate:.3f} -> {now_rate:.3f}),"
                f" more than the allowed {allowed:.3f}"
            )
    now, then = _totals(leaves, role, lambda s: s.mcq_questions)
    if now.mcq_accuracy is not None and then.mcq_accuracy is not None:
        if then.mcq_accuracy - now.mcq_accuracy > t.max_mcq_drop:
            failures.append(
                f"multiple-choice accuracy fell {then.mcq_accuracy - now.mcq_accuracy:.3f} below {label} "
                f"({then.mcq_accuracy:.3f} -> {now.mcq_accuracy:.3f}), more than the allowed {t.max_mcq_drop:.3f}"
            )
    now, then = _totals(leaves, role, lambda s: s.judged)
    if now.judge_score is not None and then.judge_score is not None:
        if then.judge_score - now.judge_score > t.max_judge_drop:
            failures.append(
                f"judge score fell {then.judge_score - now.judge_score:.2f} below {label} "
                f"({then.judge_score:.2f} -> {now.judge_score:.2f}), more than the allowed {t.max_judge_drop:.2f}"
            )
    for leaf in leaves:
        failures += _leaf_drops(leaf, role, label, t)
    return failures


def mcq_pairs(leaf: LeafEvaluation, role: str) -> tuple[list[float], list[float]]:
    """Per question, 1.0 where the model chose right, for the new model and `role`, where both answered."""
    new, reference = [], []
    for result in leaf.mcq:
        theirs = getattr(result, role)
        if result.model is not None and theirs is not None:
            new.append(float(result.model == result.question.answer))
            reference.append(float(theirs == result.question.answer))
    return new, reference


def judge_pairs(leaf: LeafEvaluation, role: str) -> tuple[list[float], list[float]]:
    """Per question, the new model's and `role`'s ratings, where the judge rated both."""
    new, reference = [], []
    for question in leaf.judged:
        mine, theirs = question.model, getattr(question, role)
        if mine is not None and theirs is not None and mine.rating is not None and theirs.rating is not None:
            new.append(float(mine.rating))
            reference.append(float(theirs.rating))
    return new, reference


def _leaf_drops(leaf: LeafEvaluation, role: str, label: str, t: GateThresholds) -> list[str]:
    failures = []
    for name, pairs, allowed, digits in (
        ("multiple-choice accuracy", mcq_pairs(leaf, role), t.max_leaf_mcq_drop, 3),
        ("judge score", judge_pairs(leaf, role), t.max_leaf_judge_drop, 2),
    ):
        difference = paired_difference(*pairs)
        if clearly_below(difference, allowed):
            assert difference is not None
            failures.append(
                f"{leaf.leaf}: {name} fell {-difference.mean:.{digits}f} below {label} over {difference.n} questions "
                f"(95% interval of the change {difference.low:+.{digits}f} to {difference.high:+.{digits}f}), "
                f"more than the allowed {allowed:.{digits}f}"
            )
    return failures


def compare_general(general: GeneralEvaluation, role: str, label: str, t: GateThresholds) -> list[str]:
    reference: Scores | None = getattr(general, role)
    if reference is None:
        return []
    now, failures = general.model, []
    rise = relative_rise(now.loss, reference.loss)
    if rise is not None and rise > t.max_loss_increase:
        failures.append(
            f"general set: loss rose {rise:.1%} over {label} ({reference.loss:.4f} -> {now.loss:.4f}), "
            f"more than the allowed {t.max_loss_increase:.1%}: the model is forgetting"
        )
    for name, now_rate, then_rate, allowed in (
        ("token F1", now.f1, reference.f1, t.max_f1_drop),
        ("multiple-choice accuracy", now.mcq_accuracy, reference.mcq_accuracy, t.max_mcq_drop),
    ):
        if now_rate is not None and then_rate is not None and then_rate - now_rate > allowed:
            failures.append(
                f"general set: {name} fell {then_rate - now_rate:.3f} below {label} ({then_rate:.3f} -> "
                f"{now_rate:.3f}), more than the allowed {allowed:.3f}: the model is forgetting"
            )
    return failures
