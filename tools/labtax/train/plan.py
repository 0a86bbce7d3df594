"""How a phase is cut into optimizer steps, and its learning-rate schedule: pure functions of data and settings.

The effective batch follows the phase's data (docs/training.md, "Steps fit the data"). LAB's large
batch (~131k tokens per optimizer step) suits LAB's phases of millions of tokens; a taxonomy's phase
of a few hundred samples would get 3 steps from it, all inside warm-up. So unless a fixed
`gradient_accumulation_steps` is set, a phase takes the largest batch, up to `max_tokens_per_step`,
that still gives it `min_steps` optimizer steps over its epochs:

    tokens per step = min(max_tokens_per_step, tokens of all epochs / min_steps)

split into micro-batches of at most `micro_batch_tokens` per process. Warm-up is a share of the
phase's steps (`warmup_ratio`), and starts above zero: step s of a W-step warm-up uses (s+1)/(W+1) of
the peak, so no step is wasted at learning rate 0 and step W is the first at the peak.

Which samples form which step is a pure function of (data, seed, epoch, settings, processes), so a
resumed run rebuilds the same plan and the data position is just the step number. Nothing here
imports torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from labtax.train.config import Hyperparameters
from labtax.train.data import EncodedDataset, plan_micro_batches


@dataclass(frozen=True)
class StepPlan:
    """One optimizer step: its epoch, its micro-batches (sample indices) and its trained-token count."""

    epoch: int
    micro_batches: list[list[int]]
    trained_tokens: int


@dataclass(frozen=True)
class PhasePlan:
    """What a phase will do, decided before it starts; printed by `labtax train` and kept in training.json."""

    phase: int
    samples: int
    epochs: int
    tokens_per_epoch: int  # input tokens of one pass over the phase's samples
    steps: int
    micro_batch_tokens: int  # token budget of one micro-batch
    micro_batches_per_step: int  # gradient accumulation x processes
    tokens_per_step: int  # mean input tokens of an optimizer step
    batch: str  # "derived" from the data, or "fixed" by gradient_accumulation_steps
    warmup_steps: int
    learning_rate: float  # the peak
    learning_rate_key: str  # the option that set it
    lr_scheduler: str
    warnings: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "warnings": list(self.warnings)}

    def describe(self) -> str:
        batch = "derived from the data" if self.batch == "derived" else "fixed by gradient_accumulation_steps"
        decay = {"constant": "then constant", "linear": "then linear decay", "cosine": "then cosine decay"}
        warmup = f"warm-up {_count(self.warmup_steps, 'step')}" if self.warmup_steps else "no warm-up"
        micro = _count(self.micro_batches_per_step, "micro-batch", "micro-batches")
        return (
            f"phase {self.phase}: {_count(self.samples, 'sample')} ({self.tokens_per_epoch:,} tokens)"
            f" x {_count(self.epochs, 'epoch')} -> {_count(self.steps, 'optimizer step')}"
            f" of ~{self.tokens_per_step:,} tokens ({micro}"
            f" of <= {self.micro_batch_tokens:,} tokens; batch {batch}); {warmup},"
            f" peak learning rate {self.learning_rate:g} ({self.learning_rate_key}),"
            f" {decay.get(self.lr_scheduler, self.lr_scheduler)}"
        )


def _count(number: int, noun: str, plural: str = "") -> str:
    return f"{number:,} {noun if number == 1 else plural or noun + 's'}"


@dataclass
class PhaseSchedule:
    plan: PhasePlan
    steps: list[StepPlan] = field(default_factory=list)


def plan_phase(
    dataset: EncodedDataset, h: Hyperparameters, number: int, *, processes: int, packing: bool
) -> PhaseSchedule:
    """The phase's steps in order and its summary (batch, warm-up, peak rate, warnings)."""
    lengths = [s.length for s in dataset.samples]
    phase = h.phase(number)
    fixed = h.accumulation_of(number)
    if fixed:
        budget, per_step = h.micro_batch_tokens, fixed * processes
    else:
        budget, per_step = derived_batch(
            sum(lengths) * phase.epochs,
            micro_batch_tokens=h.micro_batch_tokens,
            max_tokens_per_step=h.max_tokens_per_step,
            min_steps=h.min_steps,
            processes=processes,
        )
    steps: list[StepPlan] = []
    for epoch in range(phase.epochs):
        micro = plan_micro_batches(
            lengths, seed=h.seed + number, epoch=epoch, token_budget=budget, packing=packing, shuffle=phase.shuffle
        )
        for start in range(0, len(micro), per_step):
            group = micro[start : start + per_step]
            tokens = sum(dataset.samples[i].trained_tokens for batch in group for i in batch)
            steps.append(StepPlan(epoch, group, tokens))
    uncut = len(steps)
    if phase.max_steps:
        steps = steps[: phase.max_steps]
    warmup = warmup_steps(len(steps), h)
    total_tokens = sum(lengths[i] for step in steps for batch in step.micro_batches for i in batch)
    plan = PhasePlan(
        phase=number,
        samples=len(lengths),
        epochs=phase.epochs,
        tokens_per_epoch=sum(lengths),
        steps=len(steps),
        micro_batch_tokens=budget,
        micro_batches_per_step=per_step,
        tokens_per_step=round(total_tokens / len(steps)) if steps else 0,
        batch="fixed" if fixed else "derived",
        warmup_steps=warmup,
        learning_rate=h.learning_rate_of(number),
        learning_rate_key=h.learning_rate_key(number),
        lr_scheduler=h.lr_scheduler,
    )
    return PhaseSchedule(_with_warnings(plan, h, uncut), steps)


def derived_batch(
    total_tokens: int, *, micro_batch_tokens: int, max_tokens_per_step: int, min_steps: int, processes: int
) -> tuple[int, int]:
    """(micro-batch token budget, micro-batches per optimizer step) for a phase of `total_tokens` (all epochs).

    The target is the largest batch that still leaves `min_steps` steps, capped at `max_tokens_per_step`.
    Below one micro-batch per process, the micro-batch itself shrinks (a sample longer than the budget
    still forms a micro-batch of its own, so the smallest batch is one sample per process).
    """
    target = min(max_tokens_per_step, total_tokens / min_steps)
    per_process = target / processes
    if per_process <= micro_batch_tokens:
        return max(1, math.floor(per_process)), processes
    return micro_batch_tokens, max(1, math.floor(per_process / micro_batch_tokens)) * processes


def warmup_steps(steps: int, h: Hyperparameters) -> int:
    """A phase's warm-up steps: `warmup_steps` when set, else the share `warmup_ratio` of `steps`, rounded down."""
    return h.warmup_steps if h.warmup_steps else math.floor(h.warmup_ratio * steps)


def lr_factor(step: int, *, steps: int, warmup: int, scheduler: str) -> float:
    """Share of the peak learning rate that optimizer step `step` (0-based) of `steps` uses.

    Warm-up rises linearly from 1/(W+1) to W/(W+1); step W is at the peak; then the schedule decays over
    the remaining steps without reaching 0 at the last one (every step trains).
    """
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, steps - warmup)
    if scheduler == "linear":
        return 1.0 - progress
    if scheduler == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def _with_warnings(plan: PhasePlan, h: Hyperparameters, uncut: int) -> PhasePlan:
    warnings: list[str] = []
    name = f"phase {plan.phase}"
    if plan.steps and plan.warmup_steps >= plan.steps:
        warnings.append(
            f"{name} never reaches its peak learning rate {plan.learning_rate:g}: warm-up is {plan.warmup_steps} steps"
            f" and the phase has {plan.steps}; lower warmup_steps, or set it to 0 to use warmup_ratio"
        )
    if plan.steps < h.min_steps:
        if plan.steps < uncut:
            why = f"phase{plan.phase}.max_steps = {plan.steps} cuts it short"
        elif plan.batch == "fixed":
            why = (
                f"gradient_accumulation_steps fixes ~{plan.tokens_per_step:,} tokens per step; set it to 0 to derive"
                " the batch from the data"
            )
        else:
            why = "there are too few samples for more (each step already holds as few as it can); add data or epochs"
        warnings.append(
            f"{name} has only {plan.steps} optimizer steps (min_steps = {h.min_steps}): {why};"
            " the model may hardly move"
        )
    return PhasePlan(**{**asdict(plan), "warnings": tuple(warnings)})
