"""Training configuration: the shipped defaults file, user config files, `--set` overrides, and the
checks that refuse incompatible options before any model loads.

`default_config.toml` (next to this module) is the one source of default values; a user file and
`--set key=value` overrides are layered on top, key by key. Everything here is pure Python: no torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labtax.errors import UsageError
from labtax.train.data import OVERLENGTH_POLICIES

DEFAULT_CONFIG_FILE = Path(__file__).with_name("default_config.toml")
PHASE_FILES = {1: "phase1_knowledge.jsonl", 2: "phase2_skills.jsonl"}
SCHEDULERS = ("cosine", "linear", "constant")
PRECISIONS = ("auto", "bf16", "fp32")
METHODS = ("full", "lora")
# Keys that may differ between a run and its --resume: they change how the run is driven, not what it computes.
RESUME_FREE_KEYS = ("halt_after_steps", "log_every", "checkpoint_every", "keep_checkpoints")


@dataclass(frozen=True)
class PhaseSettings:
    epochs: int
    max_steps: int
    learning_rate: float
    gradient_accumulation_steps: int
    shuffle: bool


@dataclass(frozen=True)
class Hyperparameters:
    seed: int
    max_length: int
    overlength: str
    assistant_only_loss: bool
    packing: bool
    micro_batch_tokens: int
    max_tokens_per_step: int
    min_steps: int
    gradient_accumulation_steps: int
    learning_rate: float
    lora_learning_rate: float
    lr_scheduler: str
    warmup_ratio: float
    warmup_steps: int
    weight_decay: float
    adam_beta1: float
    adam_beta2: float
    adam_epsilon: float
    max_grad_norm: float
    precision: str
    method: str
    lora_rank: int
    lora_alpha: int
    lora_dropout: float
    lora_target_modules: list[str]
    gradient_checkpointing: bool
    attn_implementation: str
    checkpoint_every: int
    keep_checkpoints: int
    log_every: int
    halt_after_steps: int
    phase1: PhaseSettings
    phase2: PhaseSettings

    def phase(self, number: int) -> PhaseSettings:
        return self.phase1 if number == 1 else self.phase2

    def learning_rate_of(self, number: int) -> float:
        """The phase's peak learning rate: its own, else its method's (learning_rate or lora_learning_rate)."""
        return self.phase(number).learning_rate or self.method_learning_rate

    @property
    def method_learning_rate(self) -> float:
        return self.lora_learning_rate if self.method == "lora" else self.learning_rate

    def learning_rate_key(self, number: int) -> str:
        """Which option set the phase's peak learning rate (for the plan `labtax train` prints)."""
        if self.phase(number).learning_rate:
            return f"phase{number}.learning_rate"
        return "lora_learning_rate" if self.method == "lora" else "learning_rate"

    def accumulation_of(self, number: int) -> int:
        """A fixed gradient accumulation for the phase, or 0: derive the batch from the phase's data."""
        return self.phase(number).gradient_accumulation_steps or self.gradient_accumulation_steps

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """Everything `run_training` needs. `base_model` is a local directory or a Hub id."""

    base_model: str
    data_dir: Path
    output_dir: Path
    hyper: Hyperparameters
    resume: bool = False
    progress: bool = False
    data_files: dict[int, Path] = field(default_factory=dict)

    def phase_file(self, number: int) -> Path:
        return self.data_files.get(number) or self.data_dir / PHASE_FILES[number]


# --- loading ---------------------------------------------------------------------------------------


def load_hyperparameters(config_file: Path | None = None, overrides: dict[str, Any] | None = None) -> Hyperparameters:
    """Defaults, then `config_file`, then `overrides` (dotted keys for phases); validated and typed."""
    values = _read_toml(DEFAULT_CONFIG_FILE)
    if config_file is not None:
        _merge(values, _read_toml(config_file), str(config_file))
    for key, value in (overrides or {}).items():
        _merge(values, _nest(key, value), "--set")
    return _build(values)


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` with a TOML value (bare words are taken as strings: `lr_scheduler=linear`)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--set {text!r}: expected KEY=VALUE, e.g. --set learning_rate=1e-5")
    try:
        value = tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.strip(), value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the training config ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc}); see {DEFAULT_CONFIG_FILE.name} for the format") from None


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    head, _, rest = dotted.partition(".")
    return {head: _nest(rest, value) if rest else value}


def _merge(into: dict[str, Any], update: dict[str, Any], origin: str, prefix: str = "") -> None:
    for key, value in update.items():
        name = f"{prefix}{key}"
        if key not in into:
            known = [f"{prefix}{k}" for k in into]
            hint = difflib.get_close_matches(name, known, n=1)
            suggestion = f" (did you mean {hint[0]}?)" if hint else f"; known keys: {', '.join(sorted(known))}"
            raise UsageError(f"{origin}: unknown training option {name!r}{suggestion}")
        if isinstance(into[key], dict):
            if not isinstance(value, dict):
                raise UsageError(f"{origin}: {name} is a table of options; set its keys, e.g. {name}.epochs=1")
            _merge(into[key], value, origin, f"{name}.")
        else:
            into[key] = value


def _typed(name: str, value: Any, kind: Any) -> Any:
    if kind in ("int", int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"training option {name} must be an integer, got {value!r}")
        return value
    if kind in ("float", float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UsageError(f"training option {name} must be a number, got {value!r}")
        return float(value)
    if kind in ("bool", bool):
        if not isinstance(value, bool):
            raise UsageError(f"training option {name} must be true or false, got {value!r}")
        return value
    if kind in ("str", str):
        if not isinstance(value, str):
            raise UsageError(f"training option {name} must be a string, got {value!r}")
        return value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"training option {name} must be a list of strings, got {value!r}")
    return list(value)


def _build(values: dict[str, Any]) -> Hyperparameters:
    fields: dict[str, Any] = {}
    for spec in dataclasses.fields(Hyperparameters):
        if spec.name in ("phase1", "phase2"):
            table = values[spec.name]
            fields[spec.name] = PhaseSettings(
                **{
                    p.name: _typed(f"{spec.name}.{p.name}", table[p.name], p.type)
                    for p in dataclasses.fields(PhaseSettings)
                }
            )
        else:
            fields[spec.name] = _typed(spec.name, values[spec.name], spec.type)
    return Hyperparameters(**fields)


# --- checks ----------------------------------------------------------------------------------------


def check_config(config: TrainConfig, *, cuda_available: bool | None = None) -> None:
    """Refuse impossible or incompatible settings, all at once, before anything expensive happens."""
    h = config.hyper
    problems: list[str] = []

    def need(condition: bool, message: str) -> None:
        if not condition:
            problems.append(message)

    need(h.max_length >= 8, "max_length must be at least 8 tokens")
    need(h.overlength in OVERLENGTH_POLICIES, f"overlength must be one of {', '.join(OVERLENGTH_POLICIES)}")
    need(
        h.micro_batch_tokens >= h.max_length,
        f"micro_batch_tokens ({h.micro_batch_tokens}) must be at least max_length ({h.max_length}), "
        "or the longest samples fit in no micro-batch",
    )
    need(h.max_tokens_per_step >= 1, "max_tokens_per_step must be at least 1")
    need(h.min_steps >= 1, "min_steps must be at least 1")
    need(
        h.gradient_accumulation_steps >= 0,
        "gradient_accumulation_steps must be 0 (derive the batch from the data) or positive",
    )
    need(h.learning_rate > 0, "learning_rate must be positive")
    need(h.lora_learning_rate > 0, "lora_learning_rate must be positive")
    need(h.lr_scheduler in SCHEDULERS, f"lr_scheduler must be one of {', '.join(SCHEDULERS)}")
    need(0 <= h.warmup_ratio < 1, "warmup_ratio must be in [0, 1): the share of a phase's steps spent warming up")
    need(h.warmup_steps >= 0, "warmup_steps must be 0 (use warmup_ratio) or positive")
    need(0 <= h.adam_beta1 < 1 and 0 <= h.adam_beta2 < 1, "adam_beta1 and adam_beta2 must be in [0, 1)")
    need(h.max_grad_norm >= 0, "max_grad_norm must be 0 (off) or positive")
    need(h.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}")
    need(h.method in METHODS, f"method must be one of {', '.join(METHODS)}")
    need(bool(h.attn_implementation.strip()), "attn_implementation must name a kernel, e.g. sdpa")
    if h.attn_implementation == "flash_attention_2":
        need(
            importlib.util.find_spec("flash_attn") is not None,
            "attn_implementation=flash_attention_2 needs the flash-attn package (pip install flash-attn); or use sdpa",
        )
    need(h.checkpoint_every >= 0 and h.keep_checkpoints >= 1, "checkpoint_every must be >= 0 and keep_checkpoints >= 1")
    need(h.log_every >= 1 and h.halt_after_steps >= 0, "log_every must be >= 1 and halt_after_steps >= 0")
    for number in (1, 2):
        phase = h.phase(number)
        need(phase.epochs >= 1, f"phase{number}.epochs must be at least 1")
        need(phase.max_steps >= 0, f"phase{number}.max_steps must be 0 (all epochs) or positive")
        need(phase.learning_rate >= 0, f"phase{number}.learning_rate must be 0 (use learning_rate) or positive")
        need(phase.gradient_accumulation_steps >= 0, f"phase{number}.gradient_accumulation_steps must be 0 or positive")
    if h.method == "lora":
        need(h.lora_rank >= 1 and h.lora_alpha >= 1, "method=lora needs lora_rank >= 1 and lora_alpha >= 1")
        need(0 <= h.lora_dropout < 1, "lora_dropout must be in [0, 1)")
        need(bool(h.lora_target_modules), 'method=lora needs lora_target_modules (e.g. ["all-linear"])')
        # Merging an adapter needs the full weights in one place; FSDP shards them (docs/training.md).
        need(
            os.environ.get("ACCELERATE_USE_FSDP", "").lower() not in ("1", "true"),
            "method=lora cannot be combined with FSDP (the adapter is merged on unsharded weights); "
            "use method=full with FSDP, or LoRA with plain data parallelism",
        )
    if h.precision == "bf16":
        if cuda_available is None:
            cuda_available = _cuda_available()
        need(cuda_available, "precision=bf16 needs a CUDA GPU; use precision=auto (fp32 on CPU)")

    files = {number: config.phase_file(number) for number in (1, 2)}
    present = [number for number, path in files.items() if path.is_file()]
    if not present:
        problems.append(
            f"no training data in {config.data_dir}: expected {PHASE_FILES[1]} and/or {PHASE_FILES[2]} "
            "(run `labtax curate --output DIR` first)"
        )
    problems += output_problems(config)
    if problems:
        raise UsageError("invalid training configuration:\n  - " + "\n  - ".join(problems))


def output_problems(config: TrainConfig) -> list[str]:
    """Whether --output can hold this run: empty, a run to --resume, or an unfinished run with nothing to lose."""
    run = inspect_run_directory(config.output_dir)
    if run.is_file:
        return [f"--output {config.output_dir} is a file; pass a directory"]
    if run.foreign:
        shown = ", ".join(run.foreign[:5]) + (", ..." if len(run.foreign) > 5 else "")
        return [
            f"{config.output_dir} already holds files that are not a labtax training run ({shown}); "
            "choose an empty or new --output"
        ]
    if config.resume and not run.has_record:
        return [f"--resume: {config.output_dir} holds no training run to resume; drop --resume to start one"]
    if not config.resume and run.progress:
        return [
            f"{config.output_dir} holds a training run with finished work ({'; '.join(run.progress)}); "
            "pass --resume to continue it, or choose another --output"
        ]
    return []


# Everything a run directory may hold (recipe.py writes these); anything else is someone else's file.
RUN_FILES = ("training.json", "metrics.jsonl", "checkpoints", "phase1", "final", ".phase1.partial", ".final.partial")


@dataclass(frozen=True)
class RunDirectory:
    """What an --output directory holds, as far as starting or resuming a run is concerned."""

    is_file: bool = False
    has_record: bool = False  # training.json
    progress: tuple[str, ...] = ()  # finished work a new run would lose: phase models, checkpoints
    foreign: tuple[str, ...] = ()  # entries no training run writes

    @property
    def restartable(self) -> bool:
        """A run that stopped before finishing anything: starting it over loses nothing."""
        return self.has_record and not self.progress and not self.foreign


def inspect_run_directory(path: Path) -> RunDirectory:
    if not path.exists():
        return RunDirectory()
    if not path.is_dir():
        return RunDirectory(is_file=True)
    names = sorted(entry.name for entry in path.iterdir())
    progress = [f"{name}/ (a phase's model)" for name in ("phase1", "final") if (path / name).is_dir()]
    checkpoints = path / "checkpoints"
    if checkpoints.is_dir():
        progress += [
            f"checkpoints/{entry.name}"
            for entry in sorted(checkpoints.iterdir())
            if entry.is_dir() and (entry / "labtax_state.json").is_file()
        ]
    return RunDirectory(
        has_record=(path / "training.json").is_file(),
        progress=tuple(progress),
        foreign=tuple(name for name in names if name not in RUN_FILES),
    )


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
