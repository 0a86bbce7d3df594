"""How phases are cut into optimizer steps, and the learning-rate schedule: pure functions, no model."""

from __future__ import annotations

from typing import Any

import pytest

from labtax.errors import UsageError
from labtax.train.config import load_hyperparameters
from labtax.train.data import IGNORE_INDEX, EncodedDataset, EncodedSample
from labtax.train.plan import derived_batch, lr_factor, plan_phase


def dataset(*lengths: int) -> EncodedDataset:
    """Samples of the given lengths whose second half is trained (as an assistant answer would be)."""
    samples = [
        EncodedSample(tuple(range(n)), tuple([IGNORE_INDEX] * (n // 2) + list(range(n - n // 2))), "leaf")
        for n in lengths
    ]
    return EncodedDataset(samples=samples, rows=len(samples))


def plan(data: EncodedDataset, number: int = 1, processes: int = 1, **overrides: Any) -> Any:
    return plan_phase(data, load_hyperparameters(None, overrides), number, processes=processes, packing=True)


def test_a_small_phase_gets_small_batches_and_min_steps() -> None:
    # 400 samples of ~250 tokens x 3 epochs: LAB's fixed 131k-token batch gives it 3 steps
    small = dataset(*[200 + (i * 37) % 100 for i in range(400)])
    lab = plan(small, gradient_accumulation_steps=16)
    assert lab.plan.steps == 3 and lab.plan.batch == "fixed"
    assert any("only 3 optimizer steps" in warning for warning in lab.plan.warnings)

    derived = plan(small)
    assert derived.plan.batch == "derived" and derived.plan.steps >= 40
    assert derived.plan.warmup_steps == int(0.1 * derived.plan.steps) >= 1
    assert derived.plan.warnings == ()
    # every sample is trained once per epoch, in micro-batches within the budget
    first_epoch = [i for step in derived.steps if step.epoch == 0 for batch in step.micro_batches for i in batch]
    assert sorted(first_epoch) == list(range(400))
    assert all(
        sum(small.samples[i].length for i in batch) <= derived.plan.micro_batch_tokens
        for step in derived.steps
        for batch in step.micro_batches
    )


def test_a_large_phase_keeps_labs_batch() -> None:
    budget, per_step = derived_batch(
        50_000_000, micro_batch_tokens=8192, max_tokens_per_step=131_072, min_steps=40, processes=1
    )
    assert (budget, per_step) == (8192, 16)
    budget, per_step = derived_batch(
        50_000_000, micro_batch_tokens=8192, max_tokens_per_step=131_072, min_steps=40, processes=8
    )
    assert (budget, per_step) == (8192, 16)  # 2 micro-batches on each of 8 processes
    # a phase too small for one micro-batch per process per step: the micro-batch shrinks instead
    assert derived_batch(40_000, micro_batch_tokens=8192, max_tokens_per_step=131_072, min_steps=40, processes=2) == (
        500,
        2,
    )


def test_the_step_plan_is_the_same_for_the_same_inputs() -> None:
    data = dataset(*[30 + i % 50 for i in range(120)])
    first, again = plan(data, number=2), plan(data, number=2)
    assert [s.micro_batches for s in first.steps] == [s.micro_batches for s in again.steps]
    assert plan(data, number=2, processes=2).plan.micro_batches_per_step == 2


def test_warmup_starts_above_zero_peaks_then_decays_without_reaching_zero() -> None:
    factors = [lr_factor(step, steps=40, warmup=4, scheduler="cosine") for step in range(40)]
    assert factors[0] == pytest.approx(0.2) and factors[:4] == sorted(factors[:4])
    assert factors[4] == 1.0 and max(factors) == 1.0
    assert factors[4:] == sorted(factors[4:], reverse=True) and factors[-1] > 0
    assert [lr_factor(s, steps=1, warmup=0, scheduler="linear") for s in range(1)] == [1.0]
    assert lr_factor(10, steps=20, warmup=2, scheduler="constant") == 1.0


def test_a_phase_that_would_never_reach_its_peak_is_warned_about() -> None:
    data = dataset(*[40] * 10)
    fixed = plan(data, warmup_steps=25, **{"phase1.epochs": 1})
    assert fixed.plan.steps == 10 and fixed.plan.warmup_steps == 25
    assert any("never reaches its peak learning rate" in warning for warning in fixed.plan.warnings)
    ratio = plan(data, **{"phase1.epochs": 1})
    assert ratio.plan.warmup_steps == 1 and not any("never reaches" in w for w in ratio.plan.warnings)
    assert any("too few samples" in warning for warning in ratio.plan.warnings)  # 10 samples: 10 steps at most
    cut = plan(dataset(*[40] * 100), **{"phase1.max_steps": 5})
    assert cut.plan.steps == 5 and any("max_steps = 5 cuts it short" in w for w in cut.plan.warnings)


def test_lora_trains_at_its_own_reference_learning_rate() -> None:
    data = dataset(*[40] * 50)
    assert plan(data).plan.learning_rate == 2e-5  # LAB's full fine-tuning rate
    lora = plan(data, method="lora")
    assert (lora.plan.learning_rate, lora.plan.learning_rate_key) == (2e-4, "lora_learning_rate")
    own = plan(data, number=2, method="lora", **{"phase2.learning_rate": 1e-4})
    assert (own.plan.learning_rate, own.plan.learning_rate_key) == (1e-4, "phase2.learning_rate")


def test_batch_options_are_checked() -> None:
    from pathlib import Path

    from labtax.train.config import TrainConfig, check_config

    hyper = load_hyperparameters(None, {"warmup_ratio": 1.5, "min_steps": 0, "gradient_accumulation_steps": -1})
    with pytest.raises(UsageError) as raised:
        check_config(TrainConfig("model", Path("/nonexistent"), Path("/nonexistent/out"), hyper))
    for expected in ("warmup_ratio must be in [0, 1)", "min_steps must be at least 1", "gradient_accumulation_steps"):
        assert expected in str(raised.value)
