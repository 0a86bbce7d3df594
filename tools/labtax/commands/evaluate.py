"""`labtax evaluate`: per-leaf held-out evaluation of a trained model against its base; see docs/evaluation.md."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from labtax.cli_utils import QuietOption, RootOption, echo, entry
from labtax.extras import needs_extra

_DEFAULTS = (0.05, 0.25, 0.05, 0.05)  # GateThresholds' defaults, repeated here so --help needs no import


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
            help="The previous release's eval.json: the regression gate compares against it.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", help="Where to write eval.json (eval.md is written next to it).")
    ] = Path("eval.json"),
    max_loss_increase: Annotated[
        float, typer.Option("--max-loss-increase", help="Gate: allowed relative rise of the overall held-out loss.")
    ] = _DEFAULTS[0],
    max_leaf_loss_increase: Annotated[
        float, typer.Option("--max-leaf-loss-increase", help="Gate: allowed relative rise of one leaf's held-out loss.")
    ] = _DEFAULTS[1],
    max_exact_match_drop: Annotated[
        float,
        typer.Option("--max-exact-match-drop", help="Gate: allowed absolute drop of the knowledge exact-match rate."),
    ] = _DEFAULTS[2],
    max_f1_drop: Annotated[
        float, typer.Option("--max-f1-drop", help="Gate: allowed absolute drop of the knowledge token F1.")
    ] = _DEFAULTS[3],
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", help="Longest generated answer, in tokens.", min=1)
    ] = 64,
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
    """Score the model and the baseline on every leaf's held-out seed examples; gate against --previous.

    Exit code 0 when the gate passes (or there is nothing to compare), 1 when it fails, 2 for usage errors.
    """
    from labtax.train.evaluate import EvalConfig, GateThresholds, run_evaluation

    thresholds = GateThresholds(max_loss_increase, max_leaf_loss_increase, max_exact_match_drop, max_f1_drop)
    config = EvalConfig(
        model=model, baseline=baseline, output=output, taxonomy_root=root, previous=previous,
        thresholds=thresholds, max_new_tokens=max_new_tokens, training_data=data, progress=not quiet,
    )  # fmt: skip
    result = run_evaluation(config)
    for leaf in result.leaves:
        for question in leaf.contaminated:
            echo(f"warning: {leaf.leaf}: held-out question found in the training data: {question}", err=True)
    if not quiet:

        def show(value: float | None) -> str:
            return "–" if value is None else f"{value:.4f}"

        echo(
            f"{len(result.leaves)} leaves: held-out loss {show(result.baseline.loss)} (baseline)"
            f" -> {show(result.model.loss)} (model)",
            err=True,
        )
        echo(f"wrote {result.eval_json} and {result.eval_md}", err=True)
    if result.gate.status == "fail":
        echo(f"error: regression gate failed against {result.gate.previous}:", err=True)
        for failure in result.gate.failures:
            echo(f"  - {failure}", err=True)
        echo("fix the regression, or loosen the thresholds (--max-loss-increase, ...) if it is intended", err=True)
        return 1
    if not quiet:
        echo(
            f"regression gate: {result.gate.status}" + (f" ({result.gate.note})" if result.gate.note else ""), err=True
        )
    return 0
