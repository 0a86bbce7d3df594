"""The per-leaf comparison table: for every leaf, the base model's, the previous release's and the new
model's main score side by side, sorted by change with the leaves that regressed first.

`labtax evaluate` stores the rows in eval.json (`EvalReport.comparison`) and shows them first in eval.md;
the release notes and the model card carry the same table through `comparison_markdown`, so the three
never disagree. As InstructLab's `ilab model evaluate` lists a branch's regressions, improvements and
unchanged leaves (instructlab/instructlab `model/evaluate.py`, `display_branch_eval_summary`), but with
the three models in one row.

A leaf's main score: knowledge, the multiple-choice accuracy on questions from its documents (else the
token F1 of its held-out answers); skills, the teacher's 1-10 rating of the answers to its seed questions
(else the held-out loss, lower is better). The change is over the previous release when its score is
comparable (same questions), else over the base model; positive means better.

Pure functions over the records; nothing heavy is imported, so the release stage and the card can call them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from labtax.markdown import text
from labtax.records.evaluation import LeafComparison, LeafEvaluation, Scores

METRICS: dict[str, tuple[str, bool, Callable[[Scores], float | None]]] = {
    "mcq_accuracy": ("multiple-choice accuracy", True, lambda s: s.mcq_accuracy),
    "token_f1": ("token F1", True, lambda s: s.f1),
    "judge_score": ("judge score (1-10)", True, lambda s: s.judge_score),
    "heldout_loss": ("held-out loss", False, lambda s: s.loss),
}
# Below this a change is noise of the arithmetic, not a regression.
EPSILON = 1e-9


def main_metric(leaf: LeafEvaluation) -> str:
    model = leaf.model
    if leaf.kind == "knowledge":
        if model.mcq_questions:
            return "mcq_accuracy"
        if model.answers:
            return "token_f1"
    elif model.judged:
        return "judge_score"
    return "heldout_loss"


def comparison_row(leaf: LeafEvaluation) -> LeafComparison:
    metric = main_metric(leaf)
    _, higher, value = METRICS[metric]
    base, new = value(leaf.baseline), value(leaf.model)
    previous = value(leaf.previous) if leaf.previous is not None else None
    reference, versus = (previous, "previous") if previous is not None else (base, "base")
    change = None
    if new is not None and reference is not None:
        change = new - reference if higher else reference - new
    regressed = change is not None and change < -EPSILON
    return LeafComparison(leaf.leaf, leaf.kind, metric, higher, base, previous, new, change, versus, regressed)


def comparison_table(leaves: Sequence[LeafEvaluation]) -> tuple[LeafComparison, ...]:
    """One row per leaf, sorted by change (largest drop first, so regressions lead); no change last."""
    rows = [comparison_row(leaf) for leaf in leaves]
    return tuple(sorted(rows, key=lambda r: (r.change is None, r.change if r.change is not None else 0.0, r.leaf)))


def comparison_markdown(rows: Sequence[LeafComparison]) -> str:
    """The table as GitHub markdown (eval.md, release notes, model card). Leaf paths are escaped."""
    if not rows:
        return "No leaf was evaluated.\n"
    lines = [
        "| leaf | score | base model | previous release | new model | change |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for row in rows:
        label, _, _ = METRICS[row.metric]
        change = "–" if row.change is None else f"{row.change:+.3f} vs {row.versus}"
        if row.regressed:
            change = f"**{change}** ▼"
        lines.append(
            f"| {text(row.leaf)} | {label} | {_number(row.base)} | {_number(row.previous)} "
            f"| {_number(row.new)} | {change} |"
        )
    regressed = sum(row.regressed for row in rows)
    lines += ["", f"{regressed} of {len(rows)} leaves regressed; positive changes are improvements."]
    return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"
