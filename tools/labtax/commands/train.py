"""`labtax train`: phase 1 (knowledge) then phase 2 (skills) on curated data; see docs/training.md."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from labtax.cli_utils import QuietOption, echo, entry
from labtax.extras import needs_extra

if TYPE_CHECKING:
    from labtax.train.recipe import TrainingPlan


@entry
@needs_extra("train")
def command(
    base_model: Annotated[
        str,
        typer.Option(
            "--base-model",
            help="Model to start from: a local directory (an existing path) or a Hugging Face Hub id, checked first.",
        ),
    ],
    data: Annotated[
        Path,
        typer.Option(
            "--data", help="Directory with phase1_knowledge.jsonl and/or phase2_skills.jsonl (labtax curate --output)."
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", help="Run directory: final/ (the model), phase1/, checkpoints/, training.json, metrics.jsonl."
        ),
    ],
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="TOML file overriding any of the defaults (labtax/train/default_config.toml).",
            show_default=False,
        ),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override one option, TOML value: --set learning_rate=1e-5 --set phase1.epochs=2 (repeatable).",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue the run in --output from its last checkpoint (same settings and data)."
        ),
    ] = False,
    quiet: QuietOption = False,
) -> int:
    """Fine-tune a model in two phases (LAB): knowledge first, then skills with replay, from phase 1's weights.

    Before the first step it prints, per phase, the optimizer steps, batch, warm-up and peak learning
    rate, and warns when a phase would hardly train. A run that failed before finishing anything is
    started over by the same command; one with a checkpoint or a finished phase continues with --resume.

    Exit code 0 when both phases finished, 1 when the run stopped early (halt_after_steps; continue
    with --resume), 2 for usage errors (bad options, data or base model are refused before anything
    is written).
    """
    from labtax.train.config import TrainConfig, load_hyperparameters, parse_override
    from labtax.train.recipe import run_training

    hyper = load_hyperparameters(config_file, dict(parse_override(item) for item in overrides or []))
    config = TrainConfig(
        base_model=base_model, data_dir=data, output_dir=output, hyper=hyper, resume=resume, progress=not quiet
    )

    from labtax.fileio import DiskFullError

    try:
        result = run_training(config, on_plan=lambda plan: show_plan(plan, quiet=quiet))
    except DiskFullError as exc:
        if resume or not (output / "training.json").is_file():
            raise
        raise DiskFullError(f"{exc} (with --resume, to continue this run)") from None
    if not result.main_process:
        return 0 if result.completed else 1
    for phase in result.phases:
        if not quiet:
            losses = (
                f", loss {phase.first_loss:.4f} -> {phase.last_loss:.4f}"
                if phase.first_loss is not None and phase.last_loss is not None
                else ""
            )
            echo(
                f"phase {phase.phase}: {phase.status}, {phase.steps_done}/{phase.steps} steps,"
                f" {phase.samples} samples{losses}",
                err=True,
            )
        for leaf, report in phase.overlength.items():
            action = {"skip": "skipped", "truncate": "truncated"}.get(phase.overlength_policy, phase.overlength_policy)
            echo(
                f"warning: {leaf}: {report['count']} samples over max_length"
                f" ({action}; longest {report['longest']} tokens)",
                err=True,
            )
    if not result.completed:
        echo(f"stopped early; continue with: labtax train ... --output {output} --resume", err=True)
        return 1
    echo(str(result.final_model))
    return 0


def show_plan(plan: TrainingPlan, *, quiet: bool) -> None:
    """Before the first step: what each phase will do, and what would make it train badly."""
    if not quiet:
        echo(f"base model: {plan.base_model.describe()}", err=True)
        if plan.phases:
            echo(f"batches: {'packed' if plan.packing.packed else 'padded'} ({plan.packing.reason})", err=True)
        for phase in plan.phases:
            echo(phase.describe(), err=True)
    for warning in plan.warnings:
        echo(f"warning: {warning}", err=True)
