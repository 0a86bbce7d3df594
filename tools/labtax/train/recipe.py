"""The training recipe: phase 1 (knowledge), then phase 2 (skills + replay) from phase 1's weights.

It reads top to bottom like a torchtune recipe or nanoGPT's train.py:

    run_training      check the config, resolve the base model, load the tokenizer and encode the data,
                      load the first model and verify packing, plan every phase (reported before it
                      starts), then open the run directory, train each phase, write training.json
      train_phase     setup (plan, optimizer, schedule, resume) -> train loop -> save model -> cleanup
        train_step    one optimizer step over its micro-batches, loss normalised by trained tokens
        save_checkpoint / save_model

Everything that can fail on a user's mistake (options, data, the base model, its tokenizer and
weights) fails before the run directory is written. A run that failed before finishing anything
leaves a directory the same command starts over in; one with a checkpoint or a finished phase is
continued with --resume.

One code path for one CPU, one GPU and many GPUs: `accelerate.Accelerator` places the model, wraps it for
DDP or FSDP when launched with `accelerate launch` / `torchrun`, and saves and restores complete state
(model, optimizer, scheduler, RNG of every process). Which samples form which step is a pure function
of (data, seed, epoch, batch settings) (`labtax.train.plan`), so the data position is just the step number.

Run directory (docs/architecture.md, "Trained model"):
    RUN/training.json    hyper-parameters, data hashes, base model, the plan, per-phase results, status
    RUN/metrics.jsonl    one line per logged optimizer step
    RUN/checkpoints/phase<N>-step<S>/   accelerate state + labtax_state.json
    RUN/phase1/          phase 1's model (the starting point of phase 2)
    RUN/final/           the trained model (phase 2's result), what evaluation and release use
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labtax.errors import LabtaxError, UsageError
from labtax.fileio import (
    DiskFullError,
    StaleOutputError,
    append_bytes,
    check_hashes,
    file_sha256,
    space_for,
    tree_sha256,
    write_json_atomic,
    write_text_atomic,
)
from labtax.records.base import NewerFormatError, RecordError
from labtax.records.curation import check_curated_data
from labtax.records.training import (
    BaseModelRef,
    DataFileRef,
    PackingChoice,
    PhaseResult,
    RunPlan,
    RunRecord,
    TrainingEnvironment,
    read_run_record,
    training_json,
)
from labtax.train.base_model import ResolvedModel, resolve_model
from labtax.train.config import (
    PHASE_FILES,
    RESUME_FREE_KEYS,
    Hyperparameters,
    TrainConfig,
    check_config,
    inspect_run_directory,
)
from labtax.train.data import (
    IGNORE_INDEX,
    EncodedDataset,
    PackingProbe,
    collate,
    encode_rows,
    probe_packing,
    read_sample_rows,
)
from labtax.train.plan import PhasePlan, PhaseSchedule, StepPlan, lr_factor, plan_phase

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator

STATE_FILE = "labtax_state.json"
PHASE_DIRS = {1: "phase1", 2: "final"}


@dataclass
class TrainResult:
    output_dir: Path
    completed: bool
    final_model: Path | None
    phases: list[PhaseResult]
    training_json: Path
    main_process: bool = True  # False on the other ranks of a multi-process run: they stay quiet


@dataclass(frozen=True)
class PackingDecision:
    """Packed rows or padded batches for the whole run, and why (the probe's measurement when it ran)."""

    packed: bool
    reason: str
    probe: PackingProbe | None = None

    @property
    def failed_probe(self) -> bool:
        return self.probe is not None and not self.probe.separated


def overlength_warning(number: int, dataset: EncodedDataset, max_length: int) -> str:
    """A phase's samples longer than `max_length`, said before training ('' when there are none)."""
    count = sum(o.count for o in dataset.overlength.values())
    if not count:
        return ""
    longest = max(o.longest for o in dataset.overlength.values())
    done = {"skip": "skipped", "truncate": "truncated"}.get(dataset.policy, dataset.policy)
    empty = " and the phase has nothing left to train" if not dataset.samples else ""
    return (
        f"phase {number}: {count} of {dataset.rows} samples are longer than max_length={max_length} tokens"
        f" (the longest {longest:,}) and are {done}{empty}; raise max_length to train on them"
    )


@dataclass(frozen=True)
class TrainingPlan:
    """Everything decided before the first step, for the caller to show (`labtax train` prints it)."""

    base_model: ResolvedModel
    packing: PackingDecision
    phases: list[PhasePlan]  # the phases still to train (a resumed run leaves out the finished ones)
    resuming: bool
    data_warnings: tuple[str, ...] = ()  # what the data lost before planning (over-length samples)

    @property
    def warnings(self) -> list[str]:
        found = [*self.data_warnings, *(warning for phase in self.phases for warning in phase.warnings)]
        if self.packing.failed_probe:
            found.insert(0, f"packing is off: {self.packing.reason}")
        return found


@dataclass(frozen=True)
class BatchLayout:
    """How micro-batches are built and scored: packed or padded, the pad id, logits only where trained."""

    packing: bool
    pad_id: int
    trained_logits_only: bool


@dataclass
class RunState:
    """What persists across phases in one invocation: the run record and the halt budget."""

    config: TrainConfig
    record: RunRecord
    resuming: bool = False
    steps_this_invocation: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def root(self) -> Path:
        return self.config.output_dir

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def phase_dir(self, number: int) -> Path:
        return self.root / PHASE_DIRS[number]

    def halting(self) -> bool:
        budget = self.config.hyper.halt_after_steps
        return bool(budget) and self.steps_this_invocation >= budget

    def finished(self, number: int) -> PhaseResult | None:
        return self.record.finished_phase(number)


# === the run ======================================================================================


def run_training(config: TrainConfig, on_plan: Callable[[TrainingPlan], None] | None = None) -> TrainResult:
    """Train phase 1 then phase 2 (see the module docstring); resumable with `config.resume`.

    `on_plan` is called once on the main process with the plan (steps, warm-up, peak learning rate
    and warnings of each phase, the packing decision) after every check passed and before anything
    is written or trained.
    """
    check_config(config)  # options, data files and --output, before anything loads
    check_curated_data(config.data_dir)  # a half-written or changed curation output is never trained on
    base = resolve_model(config.base_model)  # a mistyped path stops here, not after an hour of work
    h = config.hyper
    with transformers_progress_bars(config.progress):  # their loading/saving bars follow ours
        tokenizer = load_tokenizer(base.location)
        datasets = {number: encode_phase(config, tokenizer, number) for number in (1, 2)}
        if not any(dataset.samples for dataset in datasets.values()):
            raise LabtaxError(
                f"{config.data_dir}: no trainable samples in either phase; check `labtax curate`'s output"
            )
        accelerator = make_accelerator(h)
        # --resume of a run that finished nothing (it failed early) starts over, as a new run would
        resuming = config.resume and bool(inspect_run_directory(config.output_dir).progress)
        state = RunState(config, open_record(config, base, resuming=resuming), resuming=resuming)
        pending = [n for n in (1, 2) if datasets[n].samples and state.finished(n) is None]
        model: Any = None
        packing = PackingDecision(False, "nothing left to train")
        if pending:
            model = setup_model(start_model(state, base, pending[0]), h, accelerator, seed=h.seed + pending[0])
            packing = decide_packing(model, tokenizer, accelerator, h.packing)
        schedules = {
            n: plan_phase(datasets[n], h, n, processes=accelerator.num_processes, packing=packing.packed)
            for n in pending
        }
        lost = tuple(overlength_warning(n, datasets[n], h.max_length) for n in (1, 2) if state.finished(n) is None)
        plan = TrainingPlan(base, packing, [schedules[n].plan for n in pending], resuming, tuple(w for w in lost if w))
        if on_plan is not None and accelerator.is_main_process:
            on_plan(plan)

        accelerator.wait_for_everyone()  # every process has checked --output before it is written
        if accelerator.is_main_process and not resuming and config.output_dir.is_dir():
            clear_unfinished_run(config.output_dir)
        kept = state.record.plan.phases if state.record.plan else {}  # a resumed run keeps its finished phases'
        phase_plans = {**kept, **{str(p.phase): p.as_json() for p in plan.phases}}
        state.record = replace(state.record, plan=RunPlan(PackingChoice(packing.packed, packing.reason), phase_plans))
        write_record(state, accelerator, status="running")  # from here on, --resume finds the run
        prepared = [model] if model is not None else []
        del model  # train_phases holds the only reference, so phase 1's model is freed before phase 2 loads
        try:
            return train_phases(state, base, datasets, schedules, prepared, packing, tokenizer, accelerator)
        except BaseException as exc:
            if accelerator.is_main_process:  # no barrier: the other processes may not have failed
                status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                state.record = replace(state.record, status=status, error=f"{type(exc).__name__}: {exc}"[:2000])
                with suppress(DiskFullError):  # a full disk that stopped the run may refuse this too: say the first
                    write_text_atomic(state.root / "training.json", training_json(state.record))
            raise


def train_phases(
    state: RunState,
    base: ResolvedModel,
    datasets: dict[int, EncodedDataset],
    schedules: dict[int, PhaseSchedule],
    prepared: list[Any],
    packing: PackingDecision,
    tokenizer: Any,
    accelerator: Accelerator,
) -> TrainResult:
    """Each phase in turn; `prepared` holds the first pending phase's model, already loaded and probed."""
    config = state.config
    results: list[PhaseResult] = []
    wrote_model = False
    for number in (1, 2):
        finished = state.finished(number)
        if finished is not None:
            result = finished
        elif not datasets[number].samples:
            result = phase_result(number, config, datasets[number], status="skipped")
        elif state.halting():  # the step budget ran out exactly at the previous phase's end
            result = phase_result(number, config, datasets[number], status="halted")
        else:
            model = (
                prepared.pop()
                if prepared
                else setup_model(
                    start_model(state, base, number), config.hyper, accelerator, seed=config.hyper.seed + number
                )
            )
            schedule = schedules[number]
            result = train_phase(number, model, datasets[number], schedule, packing, tokenizer, accelerator, state)
            wrote_model = True
            del model
        results.append(result)
        state.record = state.record.with_phase(result)
        write_record(state, accelerator, status="halted" if result.status == "halted" else "running")
        if result.status == "halted":
            record_path, main = config.output_dir / "training.json", accelerator.is_main_process
            return TrainResult(config.output_dir, False, None, results, record_path, main)
    final = state.phase_dir(2)
    if results[1].status == "skipped" and accelerator.is_main_process and not final.exists():
        copy_atomically(state.phase_dir(1), final)  # phase 2 had no data: phase 1's model is the result
        wrote_model = True
    accelerator.wait_for_everyone()
    state.record = replace(state.record, error=None)
    if accelerator.is_main_process and (wrote_model or state.record.outputs is None):
        # The manifest of the model directory, written with status "done" (last): evaluation and release
        # refuse a final/ that does not match it (check_trained_model).
        outputs = {f"{PHASE_DIRS[2]}/{name}": digest for name, digest in tree_sha256(final).items()}
        state.record = replace(state.record, outputs=outputs)
    write_record(state, accelerator, status="done")
    return TrainResult(
        config.output_dir, True, final, results, config.output_dir / "training.json", accelerator.is_main_process
    )


def start_model(state: RunState, base: ResolvedModel, number: int) -> str:
    """Phase 1 starts from the base model; phase 2 from phase 1's model when phase 1 trained one."""
    if number == 2:
        phase1 = state.finished(1)
        if phase1 is not None and phase1.model_dir:
            return str(state.root / phase1.model_dir)
    return base.location


def encode_phase(config: TrainConfig, tokenizer: Any, number: int) -> EncodedDataset:
    path = config.phase_file(number)
    if not path.is_file():
        return EncodedDataset(policy=config.hyper.overlength)
    h = config.hyper
    return encode_rows(
        tokenizer,
        read_sample_rows(path),
        max_length=h.max_length,
        assistant_only_loss=h.assistant_only_loss,
        overlength=h.overlength,
        source=str(path),
    )


# === one phase ====================================================================================


def train_phase(
    number: int,
    model: Any,
    dataset: EncodedDataset,
    schedule: PhaseSchedule,
    packing: PackingDecision,
    tokenizer: Any,
    accelerator: Accelerator,
    state: RunState,
) -> PhaseResult:
    import torch
    from tqdm.auto import tqdm

    h = state.config.hyper
    result = phase_result(number, state.config, dataset, status="done")

    # --- setup ------------------------------------------------------------------------------------
    steps, plan = schedule.steps, schedule.plan
    result.packing = ("packed: " if packing.packed else "padding: ") + packing.reason
    result.steps, result.warmup_steps, result.peak_learning_rate = plan.steps, plan.warmup_steps, plan.learning_rate
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable,
        lr=plan.learning_rate,
        betas=(h.adam_beta1, h.adam_beta2),
        eps=h.adam_epsilon,
        weight_decay=h.weight_decay,
        fused=True if torch.cuda.is_available() else None,  # one kernel for the whole update on GPU
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(step, steps=plan.steps, warmup=plan.warmup_steps, scheduler=plan.lr_scheduler),
    )
    optimizer, scheduler = accelerator.prepare(optimizer, scheduler)
    start = 0
    checkpoint = latest_checkpoint(state.checkpoints, number) if state.resuming else None
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        start = json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))["step"]
    if accelerator.is_main_process:
        truncate_metrics(state.metrics, number, start)  # lines past the checkpoint belong to a lost future
    accelerator.wait_for_everyone()
    carry_over(result, state.metrics, number, steps[:start], dataset)

    # --- train ------------------------------------------------------------------------------------
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    layout = BatchLayout(
        packing.packed,
        pad_id,
        trained_logits_only=packing.packed and accepts_logits_to_keep(accelerator.unwrap_model(model)),
    )
    began = time.monotonic()
    bar = tqdm(
        total=len(steps),
        initial=start,
        desc=f"phase {number}",
        unit="step",
        disable=not (state.config.progress and accelerator.is_main_process),
    )
    for index in range(start, len(steps)):
        step = steps[index]
        learning_rate = scheduler.get_last_lr()[0]  # the rate this step uses
        loss, grad_norm, input_tokens = train_step(model, optimizer, scheduler, accelerator, dataset, step, layout, h)
        result.steps_done = index + 1
        result.trained_tokens += step.trained_tokens
        result.input_tokens += input_tokens
        result.first_loss = loss if result.first_loss is None else result.first_loss
        result.last_loss = loss
        state.steps_this_invocation += 1
        elapsed = time.monotonic() - began
        tokens_per_s = result.input_tokens / elapsed if elapsed > 0 else 0.0
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_s:,.0f}")
        if (index + 1) % h.log_every == 0 or index + 1 == len(steps):
            log_metrics(state, accelerator, {
                "phase": number, "step": index + 1, "steps": len(steps), "epoch": step.epoch, "loss": loss,
                "learning_rate": learning_rate, "grad_norm": grad_norm,
                "trained_tokens": step.trained_tokens, "input_tokens": input_tokens,
                "tokens_per_s": round(tokens_per_s, 1), "elapsed_s": round(time.monotonic() - state.started, 3),
            })  # fmt: skip
        halt = state.halting() and index + 1 < len(steps)
        if halt or (h.checkpoint_every and (index + 1) % h.checkpoint_every == 0 and index + 1 < len(steps)):
            save_checkpoint(accelerator, state, number, index + 1, checkpoint_bytes(accelerator.unwrap_model(model)))
        if halt:
            result.status = "halted"
            break
    bar.close()
    result.seconds = round(time.monotonic() - began, 3)

    # --- save -------------------------------------------------------------------------------------
    if result.status == "done":
        save_model(model, tokenizer, accelerator, state.phase_dir(number), h, number)
        result.model_dir = PHASE_DIRS[number]
        if accelerator.is_main_process:  # the model directory supersedes them; optimizer state is 2x the model
            for old in list_checkpoints(state.checkpoints, number):
                shutil.rmtree(old, ignore_errors=True)

    # --- cleanup ----------------------------------------------------------------------------------
    accelerator.free_memory()
    del optimizer, scheduler
    return result


def carry_over(result: PhaseResult, metrics: Path, number: int, done: list[StepPlan], dataset: EncodedDataset) -> None:
    """On resume, the phase's totals so far: steps and tokens from the plan, first and last loss from the log."""
    result.steps_done = len(done)
    result.trained_tokens = sum(step.trained_tokens for step in done)
    result.input_tokens = sum(dataset.samples[i].length for step in done for batch in step.micro_batches for i in batch)
    if not done or not metrics.is_file():
        return
    lines = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
    earlier = [line for line in lines if line["phase"] == number]
    result.first_loss = earlier[0]["loss"] if earlier else None
    result.last_loss = earlier[-1]["loss"] if earlier else None


def train_step(
    model: Any,
    optimizer: Any,
    scheduler: Any,
    accelerator: Accelerator,
    dataset: EncodedDataset,
    step: StepPlan,
    layout: BatchLayout,
    h: Hyperparameters,
) -> tuple[float, float | None, int]:
    """One optimizer step. Returns (mean loss per trained token, gradient norm, tokens read by all processes).

    Each micro-batch contributes sum(token losses) / (trained tokens of the whole step), so the step's
    loss is the mean over its trained tokens whatever the packing, padding or accumulation. The factor
    `world` undoes the gradient averaging of DDP/FSDP. Every process runs the same number of
    micro-batches (surplus ranks repeat one with weight 0) so their collective calls stay in step.
    """
    import torch

    rank, world = accelerator.process_index, accelerator.num_processes
    mine = step.micro_batches[rank::world]
    rounds = math.ceil(len(step.micro_batches) / world)
    loss_sum = torch.zeros((), device=accelerator.device)
    input_tokens = 0
    model.train()
    for round_index in range(rounds):
        indices, weight = (mine[round_index], 1.0) if round_index < len(mine) else (step.micro_batches[0], 0.0)
        batch = {
            k: v.to(accelerator.device)
            for k, v in collate(
                [dataset.samples[i] for i in indices], packing=layout.packing, pad_token_id=layout.pad_id
            ).items()
        }
        synchronise = round_index == rounds - 1
        with nullcontext() if synchronise else accelerator.no_sync(model):
            token_loss = summed_token_loss(model, batch, trained_logits_only=layout.trained_logits_only)
            accelerator.backward(token_loss * (weight * world / step.trained_tokens))
        loss_sum += token_loss.detach() * weight
        input_tokens += int(weight) * sum(dataset.samples[i].length for i in indices)
    grad_norm = None
    if h.max_grad_norm > 0:
        grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), h.max_grad_norm))
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    totals = accelerator.reduce(
        torch.stack([loss_sum, torch.tensor(float(input_tokens), device=loss_sum.device)]), "sum"
    )
    return float(totals[0]) / step.trained_tokens, grad_norm, int(totals[1])


def summed_token_loss(model: Any, batch: dict[str, torch.Tensor], *, trained_logits_only: bool = False) -> torch.Tensor:
    """Sum of cross-entropy over the trained positions (targets are already shifted per sample).

    `trained_logits_only` (one packed row, a model whose forward takes `logits_to_keep`): the output
    projection runs only where a target exists. With loss on assistant tokens only, that skips the
    vocabulary-sized matmul and its fp32 logits for every prompt token: less memory and compute, same loss.
    """
    import torch.nn.functional as F

    targets = batch["targets"]
    extra: dict[str, Any] = {}
    if trained_logits_only and targets.shape[0] == 1:
        positions = (targets[0] != IGNORE_INDEX).nonzero().squeeze(-1)
        extra["logits_to_keep"] = positions
        targets = targets[:, positions]
    outputs = model(
        input_ids=batch["input_ids"],
        position_ids=batch["position_ids"],
        attention_mask=batch.get("attention_mask"),
        use_cache=False,
        **extra,
    )
    logits = outputs.logits.float()
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )


def accepts_logits_to_keep(model: Any) -> bool:
    import inspect

    base = getattr(model, "get_base_model", lambda: model)()
    return "logits_to_keep" in inspect.signature(base.forward).parameters


# === setup helpers ================================================================================


@contextmanager
def transformers_progress_bars(enabled: bool) -> Iterator[None]:
    """Show or hide transformers' own progress bars (loading, saving) for a while, then restore them."""
    from transformers.utils import logging as transformers_logging

    were_disabled = transformers_logging.is_progress_bar_enabled() is False
    if enabled:
        transformers_logging.enable_progress_bar()
    else:
        transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if were_disabled:
            transformers_logging.disable_progress_bar()
        else:
            transformers_logging.enable_progress_bar()


def make_accelerator(h: Hyperparameters) -> Accelerator:
    import torch
    from accelerate import Accelerator

    cuda = torch.cuda.is_available()
    bf16 = h.precision == "bf16" or (h.precision == "auto" and cuda)
    # step_scheduler_with_optimizer=False: our scheduler counts optimizer steps, not steps x processes.
    # cpu=True without a GPU: that is what lets torchrun/accelerate launch run several CPU processes (gloo).
    return Accelerator(mixed_precision="bf16" if bf16 else "no", step_scheduler_with_optimizer=False, cpu=not cuda)


def load_tokenizer(base_model: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model)
    except (OSError, ValueError) as exc:
        raise LabtaxError(
            f"cannot load the tokenizer of {base_model!r} ({exc}); pass a model directory or Hub id"
        ) from None
    if not getattr(tokenizer, "chat_template", None):
        raise UsageError(
            f"{base_model} has no chat template; use an instruct/chat model or add a chat_template to its tokenizer"
        )
    return tokenizer


def load_model(start_from: str, h: Hyperparameters) -> Any:
    """The model in fp32 (the master weights; bf16 comes from mixed precision), LoRA-wrapped if asked."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model: Any = AutoModelForCausalLM.from_pretrained(
            start_from, dtype=torch.float32, attn_implementation=h.attn_implementation
        )
    except (OSError, ValueError, ImportError) as exc:
        raise LabtaxError(f"cannot load the model {start_from!r} ({exc}); pass a model directory or Hub id") from None
    model.config.use_cache = False
    if h.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if h.method == "lora":
        from peft import LoraConfig, get_peft_model

        targets: str | list[str] = "all-linear" if h.lora_target_modules == ["all-linear"] else h.lora_target_modules
        lora = LoraConfig(
            task_type="CAUSAL_LM",
            r=h.lora_rank,
            lora_alpha=h.lora_alpha,
            lora_dropout=h.lora_dropout,
            target_modules=targets,
        )
        if h.gradient_checkpointing:
            model.enable_input_require_grads()
        model = get_peft_model(model, lora)
    return model


def setup_model(start_from: str, h: Hyperparameters, accelerator: Accelerator, *, seed: int) -> Any:
    """Load (and LoRA-wrap) the phase's starting model and hand it to accelerate (device, DDP or FSDP)."""
    from accelerate.utils import set_seed

    set_seed(seed)  # LoRA initialisation and dropout; the data order has its own seed
    return accelerator.prepare(load_model(start_from, h))


def decide_packing(model: Any, tokenizer: Any, accelerator: Accelerator, wanted: bool) -> PackingDecision:
    """Packed rows when asked for and the probe shows that this model and kernel keep samples apart.

    Every process runs the probe (FSDP needs all of them for a forward pass); packing is used only
    when it passed on all of them.
    """
    import torch

    if not wanted:
        return PackingDecision(False, "packing = false")
    unwrapped = accelerator.unwrap_model(model)
    config = getattr(unwrapped, "config", None)
    vocab_size = min(int(getattr(config, "vocab_size", 0) or len(tokenizer)), len(tokenizer))
    probe = probe_packing(model, vocab_size=vocab_size, device=accelerator.device, autocast=accelerator.autocast())
    passed = accelerator.reduce(torch.tensor(float(probe.separated), device=accelerator.device), "min")
    if bool(passed):
        return PackingDecision(True, probe.describe(), probe)
    failed = PackingProbe(False, probe.packed_difference, probe.leak_difference, probe.attention)
    return PackingDecision(
        False,
        f"{failed.describe()}: this model and kernel do not keep packed samples apart, so batches are padded"
        ' instead (slower, same result); use attn_implementation = "sdpa" or a kernel transformers masks',
        failed,
    )


def phase_result(number: int, config: TrainConfig, dataset: EncodedDataset, *, status: str) -> PhaseResult:
    return PhaseResult(
        phase=number,
        status=status,
        data_file=str(config.phase_file(number)),
        rows=dataset.rows,
        samples=len(dataset.samples),
        overlength=dataset.overlength_report(),
        overlength_policy=dataset.policy,
        without_trained_tokens=dataset.without_trained_tokens,
    )


# === checkpoints and outputs ======================================================================


def save_checkpoint(accelerator: Accelerator, state: RunState, number: int, step: int, size: int | None = None) -> Path:
    """Model, optimizer, scheduler and every process's RNG (accelerate), plus the data position (the step)."""
    name = f"phase{number}-step{step:08d}"
    target = state.checkpoints / name
    partial = state.checkpoints / f".{name}.partial"
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    with space_for(partial, size):
        accelerator.save_state(str(partial))
    # Every process writes its own RNG state into `partial`: none may still be writing when it is renamed.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json_atomic(partial / STATE_FILE, {"phase": number, "step": step})
        if target.exists():
            shutil.rmtree(target)
        os.replace(partial, target)
        for old in list_checkpoints(state.checkpoints, number)[: -state.config.hyper.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return target


def list_checkpoints(directory: Path, number: int) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob(f"phase{number}-step*") if (p / STATE_FILE).is_file())


def latest_checkpoint(directory: Path, number: int) -> Path | None:
    found = list_checkpoints(directory, number)
    return found[-1] if found else None


def save_model(
    model: Any, tokenizer: Any, accelerator: Accelerator, target: Path, h: Hyperparameters, number: int
) -> None:
    """A Hugging Face model directory (weights, tokenizer; LoRA merged), written aside then renamed into place."""
    partial = target.with_name(f".{target.name}.partial")
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    with space_for(partial, parameter_bytes(unwrapped)):
        if h.method == "lora":
            merged = unwrapped.merge_and_unload()
            merged.save_pretrained(partial, is_main_process=accelerator.is_main_process)
            config = merged.config
        else:
            state_dict = accelerator.get_state_dict(model)  # gathers FSDP shards on the main process
            unwrapped.save_pretrained(
                partial,
                is_main_process=accelerator.is_main_process,
                save_function=accelerator.save,
                state_dict=state_dict,
            )
            config = unwrapped.config
    # save_pretrained runs on every process (it lists and prunes the directory even where it writes
    # nothing): none may still be inside `partial` when the main process renames it.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with space_for(partial):
            config.use_cache = True
            config.save_pretrained(partial)
            tokenizer.save_pretrained(partial)
        write_json_atomic(partial / "labtax_phase.json", {"phase": number, "method": h.method})
        if target.exists():
            shutil.rmtree(target)
        os.replace(partial, target)
    accelerator.wait_for_everyone()


def parameter_bytes(model: Any) -> int:
    """What a model's weights take on disk, as saved (its parameters at their dtype)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


def checkpoint_bytes(model: Any) -> int:
    """A checkpoint holds the weights and AdamW's two moments for each trainable parameter (fp32)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return parameter_bytes(model) + 2 * 4 * trainable


def copy_atomically(source: Path, target: Path) -> None:
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    with space_for(partial, sum(p.stat().st_size for p in source.rglob("*") if p.is_file())):
        shutil.copytree(source, partial)
    os.replace(partial, target)


def log_metrics(state: RunState, accelerator: Accelerator, line: dict[str, Any]) -> None:
    if not accelerator.is_main_process:
        return
    append_bytes(state.metrics, (json.dumps(line) + "\n").encode("utf-8"))


def truncate_metrics(path: Path, number: int, step: int) -> None:
    """Keep the lines up to (phase, step): a resumed run re-logs the steps after its checkpoint."""
    if not path.is_file():
        return
    kept = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and (lambda r: (r["phase"], r["step"]) <= (number, step))(json.loads(line))
    ]
    write_text_atomic(path, "".join(f"{line}\n" for line in kept))


# === the run record ===============================================================================


def clear_unfinished_run(root: Path) -> None:
    """Remove what a run that finished nothing left behind (its log, partial saves), before starting over.

    Only called when `inspect_run_directory` found no finished phase and no checkpoint, and nothing
    but run files: nothing of value is deleted.
    """
    for name in ("metrics.jsonl", "training.json"):
        (root / name).unlink(missing_ok=True)
    for name in ("checkpoints", ".phase1.partial", ".final.partial"):
        shutil.rmtree(root / name, ignore_errors=True)


def open_record(config: TrainConfig, base: ResolvedModel, *, resuming: bool) -> RunRecord:
    """training.json for a new run, or the existing one (checked against this config) when resuming."""
    data = {
        f"phase{n}": DataFileRef(str(path), _sha256_if_present(path))
        for n, path in ((1, config.phase_file(1)), (2, config.phase_file(2)))
    }
    record = RunRecord(
        status="running",
        base_model=config.base_model,
        base_model_resolved=BaseModelRef(**base.as_json()),
        data=data,
        hyperparameters=config.hyper.as_dict(),
        environment=environment(),
        phases={},
        final_model=PHASE_DIRS[2],
    )
    path = config.output_dir / "training.json"
    if not resuming:
        return record
    try:
        previous = read_run_record(path)
    except NewerFormatError:
        raise
    except RecordError as exc:
        raise UsageError(f"--resume: {exc}") from None
    if previous is None:
        raise UsageError(f"--resume: {path} is not a labtax training record; start a new run in another --output")
    differences = [
        key
        for key in sorted(set(previous.hyperparameters) | set(record.hyperparameters))
        if key not in RESUME_FREE_KEYS and previous.hyperparameters.get(key) != record.hyperparameters.get(key)
    ]
    if previous.base_model != config.base_model:
        differences.append("base_model")
    if previous.environment.processes != record.environment.processes:
        differences.append("number of processes (the step plan depends on it)")
    differences += [name for name in data if (previous.data.get(name) or DataFileRef("")).sha256 != data[name].sha256]
    if differences:
        raise UsageError(
            f"--resume: this run was started with different settings or data ({', '.join(differences)}); "
            f"resume with the same ones (see {path}) or start a new run in another --output"
        )
    return replace(
        record,
        phases={key: phase for key, phase in previous.phases.items() if phase.finished},
        plan=previous.plan,
        # a finished run's manifest stays what it was when it was written
        outputs=previous.outputs if previous.status == "done" else None,
    )


def check_trained_model(model_dir: Path) -> None:
    """Refuse a model directory of a labtax training run that did not finish, or changed since it did.

    `RUN/final` (or `RUN/phase1`) is trusted only when `RUN/training.json` says the run is done and
    every file of `final/` has the SHA-256 it recorded (labtax.fileio.check_hashes). A directory that
    is not inside a training run (a Hub model, an imported one) is not checked here.
    """
    root = model_dir.parent
    record_path = root / "training.json"
    if model_dir.name not in PHASE_DIRS.values() or not record_path.is_file():
        return
    remedy = f"run the same `labtax train --resume` (or release) command again to finish it ({record_path})"
    try:
        # A damaged record cannot be resumed: the run is trained again from the start.
        record = read_run_record(record_path, f"remove {root} (or train into another --output) and run again")
    except NewerFormatError:
        raise
    except RecordError as exc:
        raise StaleOutputError(str(exc)) from None
    if record is None:
        return  # not ours
    if record.status != "done":
        raise StaleOutputError(
            f"{model_dir} belongs to a training run that has not finished (status {record.status!r}); {remedy}"
        )
    if model_dir.name != PHASE_DIRS[2] or record.outputs is None:
        return  # a run written before training.json carried its outputs
    expected = {
        name.removeprefix(f"{PHASE_DIRS[2]}/"): digest
        for name, digest in record.outputs.items()
        if name.startswith(f"{PHASE_DIRS[2]}/")
    }
    check_hashes(model_dir, expected, manifest=record_path, remedy=remedy)


def write_record(state: RunState, accelerator: Accelerator, *, status: str) -> None:
    state.record = replace(state.record, status=status)
    if accelerator.is_main_process:
        write_text_atomic(state.root / "training.json", training_json(state.record))
    accelerator.wait_for_everyone()


def environment() -> TrainingEnvironment:
    import torch
    import transformers

    return TrainingEnvironment(
        torch=str(torch.__version__),
        transformers=transformers.__version__,
        cuda=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        processes=int(os.environ.get("WORLD_SIZE", "1")),
    )


def _sha256_if_present(path: Path) -> str | None:
    return file_sha256(path) if path.is_file() else None


__all__ = ["PHASE_FILES", "PhaseResult", "TrainConfig", "TrainResult", "run_training"]
