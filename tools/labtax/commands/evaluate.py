"""`labtax evaluate`: the new model against its base model and the previous release, per leaf (docs/evaluation.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from labtax.cli_utils import QuietOption, RootOption, echo, entry
from labtax.extras import needs_extra

# GateThresholds' defaults, repeated here so --help needs no import (a test holds them equal).
DEFAULTS = {
    "max_loss_increase": 0.05,
    "max_leaf_loss_increase": 0.25,
    "max_exact_match_drop": 0.05,
    "max_f1_drop": 0.05,
    "max_mcq_drop": 0.05,
    "max_judge_drop": 0.5,
    "max_leaf_mcq_drop": 0.2,
    "max_leaf_judge_drop": 1.5,
}


def _gate(name: str, text: str) -> object:
    return typer.Option("--" + name.replace("_", "-"), help=f"Gate: {text}", rich_help_panel="Regression gate")


@entry
@needs_extra("train")
def command(
    model: Annotated[str, typer.Option("--model", help="The trained model: a directory (RUN/final) or Hub id.")],
    baseline: Annotated[str, typer.Option("--baseline", help="The model it was trained from: a directory or Hub id.")],
    root: RootOption = None,
    previous: Annotated[
        Path | None,
        typer.Option(
            "--previous",
            help="The previous release's eval.json: its scores where the questions are the same.",
            show_default=False,
        ),
    ] = None,
    previous_model: Annotated[
        str | None,
        typer.Option(
            "--previous-model",
            help="The previous release's model (directory or Hub id): scored here on every "
            "question, instead of taking --previous's recorded scores.",
            show_default=False,
        ),
    ] = None,
    teacher_model: Annotated[
        str | None,
        typer.Option(
            "--teacher-model",
            help="The teacher that writes multiple-choice questions from the knowledge documents "
            "and rates skill answers: a served model's name, or a local model directory.",
            show_default=False,
        ),
    ] = None,
    teacher_url: Annotated[
        str | None,
        typer.Option(
            "--teacher-url",
            help="OpenAI-compatible API root of the teacher (key: $LABTAX_TEACHER_API_KEY).",
            show_default=False,
        ),
    ] = None,
    general: Annotated[
        Path | None,
        typer.Option(
            "--general",
            help='General set (JSONL of {"question", "answer"} or {"question", "choices", "answer"}) '
            "the new model must not do worse on than the base model: a guard against forgetting.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", help="Where to write eval.json (eval.md and mcq.json are written next to it).")
    ] = Path("eval.json"),
    max_loss_increase: Annotated[float, _gate("max_loss_increase", "allowed relative rise of the held-out loss.")] = (
        DEFAULTS["max_loss_increase"]
    ),
    max_leaf_loss_increase: Annotated[
        float, _gate("max_leaf_loss_increase", "allowed relative rise of one leaf's held-out loss.")
    ] = DEFAULTS["max_leaf_loss_increase"],
    max_exact_match_drop: Annotated[
        float, _gate("max_exact_match_drop", "allowed absolute drop of the knowledge exact-match rate.")
    ] = DEFAULTS["max_exact_match_drop"],
    max_f1_drop: Annotated[float, _gate("max_f1_drop", "allowed absolute drop of the knowledge token F1.")] = DEFAULTS[
        "max_f1_drop"
    ],
    max_mcq_drop: Annotated[
        float, _gate("max_mcq_drop", "allowed absolute drop of the multiple-choice accuracy, all leaves.")
    ] = DEFAULTS["max_mcq_drop"],
    max_judge_drop: Annotated[
        float, _gate("max_judge_drop", "allowed drop of the mean judge score (1-10), all skill leaves.")
    ] = DEFAULTS["max_judge_drop"],
    max_leaf_mcq_drop: Annotated[
        float, _gate("max_leaf_mcq_drop", "allowed accuracy drop of one leaf (when its 95% interval is below 0).")
    ] = DEFAULTS["max_leaf_mcq_drop"],
    max_leaf_judge_drop: Annotated[
        float, _gate("max_leaf_judge_drop", "allowed judge-score drop of one leaf (when its 95% interval is below 0).")
    ] = DEFAULTS["max_leaf_judge_drop"],
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", help="Longest knowledge or general answer, in tokens.", min=1)
    ] = 64,
    answer_tokens: Annotated[
        int, typer.Option("--answer-tokens", help="Longest skill answer the judge rates, in tokens.", min=1)
    ] = 256,
    mcq_per_leaf: Annotated[
        int, typer.Option("--mcq-per-leaf", help="Multiple-choice questions per knowledge leaf.", min=1)
    ] = 20,
    mcq_format: Annotated[
        str,
        typer.Option(
            "--mcq-format",
            help="How a model answers them: 'cloze' (each choice scored as the answer, per "
            "character; for models under a few billion parameters) or 'mmlu' (the choices listed).",
        ),
    ] = "cloze",
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="The training DATA directory: also check that no held-out question occurs in it.",
            show_default=False,
        ),
    ] = None,
    quiet: QuietOption = False,
) -> int:
    """Score the new model, its base model and the previous release on every leaf; gate against both.

    Exit code 0 when the gate passes, 1 when it fails, 2 for usage errors.
    """
    from labtax.sdg.teacher_spec import TeacherSpec
    from labtax.train.eval_compare import comparison_markdown
    from labtax.train.evaluate import EvalConfig, GateThresholds, run_evaluation

    thresholds = GateThresholds(
        max_loss_increase, max_leaf_loss_increase, max_exact_match_drop, max_f1_drop,
        max_mcq_drop, max_judge_drop, max_leaf_mcq_drop, max_leaf_judge_drop,
    )  # fmt: skip
    teacher = TeacherSpec(model=teacher_model, url=teacher_url) if teacher_model else None
    if teacher_url and not teacher_model:
        echo("error: --teacher-url needs --teacher-model (the model the server serves)", err=True)
        return 2
    config = EvalConfig(
        model=model, baseline=baseline, output=output, taxonomy_root=root, previous=previous,
        previous_model=previous_model, teacher=teacher, general=general, thresholds=thresholds,
        max_new_tokens=max_new_tokens, answer_tokens=answer_tokens, mcq_per_leaf=mcq_per_leaf, mcq_format=mcq_format,
        training_data=data, progress=not quiet,
    )  # fmt: skip
    result = run_evaluation(config)
    for leaf in result.leaves:
        for question in leaf.contaminated:
            echo(f"warning: {leaf.leaf}: held-out question found in the training data: {question}", err=True)
    if not quiet:
        assert result.report is not None
        echo(comparison_markdown(result.report.comparison), err=True)
        for note in result.notes:
            echo(f"note: {note}", err=True)
        echo(f"wrote {result.eval_json} and {result.eval_md}", err=True)
    gate = result.gate
    if gate.status == "fail":
        echo(f"error: regression gate failed (compared with {', '.join(gate.compared_with)}):", err=True)
        for failure in gate.failures:
            echo(f"  - {failure}", err=True)
        echo("fix the regression, or loosen the thresholds (--max-loss-increase, ...) if it is intended", err=True)
        return 1
    if not quiet:
        echo(f"regression gate: {gate.status}" + (f" ({gate.note})" if gate.note else ""), err=True)
    return 0
