"""Turning curated chat samples into training tensors: chat template, loss mask, length limits, packing.

Owns four decisions, each documented in docs/training.md:
- the conversation is rendered with the model's own chat template, and the tokens the loss covers are
  found by rendering each prefix of the conversation (so any prefix-stable template works, not only
  templates with `{% generation %}` markers);
- samples longer than `max_length` are never dropped silently: they are skipped, truncated or refused,
  and counted per leaf;
- targets are shifted per sample (`targets[t]` is the token predicted at position `t`), so a packed row
  never trains one sample's first token from the previous sample's last one;
- a micro-batch is either one packed row with `position_ids` restarting at 0 for every sample (the
  attention kernel then keeps samples apart, which `probe_packing` verifies on the actual model at
  start-up) or a padded batch with an attention mask.

Nothing here imports torch at module level; `collate` imports it when it builds tensors.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labtax.errors import LabtaxError, UsageError

if TYPE_CHECKING:
    import torch

IGNORE_INDEX = -100
OVERLENGTH_POLICIES = ("skip", "truncate", "error")


@dataclass(frozen=True)
class EncodedSample:
    """One conversation as token ids and per-position targets (IGNORE_INDEX where no loss is taken)."""

    input_ids: tuple[int, ...]
    targets: tuple[int, ...]
    leaf: str

    @property
    def length(self) -> int:
        return len(self.input_ids)

    @property
    def trained_tokens(self) -> int:
        return sum(1 for t in self.targets if t != IGNORE_INDEX)


@dataclass
class OverlengthLeaf:
    """How many of a leaf's samples exceeded the maximum length, and the longest one (in tokens)."""

    count: int = 0
    longest: int = 0


@dataclass
class EncodedDataset:
    samples: list[EncodedSample] = field(default_factory=list)
    rows: int = 0
    overlength: dict[str, OverlengthLeaf] = field(default_factory=dict)
    without_trained_tokens: int = 0
    policy: str = "skip"

    @property
    def trained_tokens(self) -> int:
        return sum(s.trained_tokens for s in self.samples)

    def overlength_report(self) -> dict[str, dict[str, int]]:
        return {leaf: {"count": o.count, "longest": o.longest} for leaf, o in sorted(self.overlength.items())}


# --- reading ---------------------------------------------------------------------------------------


def read_sample_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a curated JSONL file (the Sample format of docs/architecture.md); bad lines stop with file:line."""
    rows: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise LabtaxError(
            f"{path}: cannot read the training data ({exc.strerror}); run `labtax curate` first"
        ) from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LabtaxError(
                f"{path}:{number}: not valid JSON ({exc.msg}); regenerate it with `labtax curate`"
            ) from None
        messages = row.get("messages") if isinstance(row, dict) else None
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages
        ):
            raise LabtaxError(
                f'{path}:{number}: expected {{"messages": [{{"role": ..., "content": ...}}, ...]}}; '
                "regenerate it with `labtax curate`"
            )
        rows.append(row)
    return rows


def trains_all_tokens(row: dict[str, Any]) -> bool:
    """A row curation marked `train_all_tokens` (a document-grounded knowledge sample): its loss covers
    every token, the document and question included, whatever `assistant_only_loss` says."""
    metadata = row.get("metadata")
    return isinstance(metadata, dict) and metadata.get("train_all_tokens") is True


def leaf_of(row: dict[str, Any]) -> str:
    metadata = row.get("metadata")
    leaf = metadata.get("leaf") if isinstance(metadata, dict) else None
    return leaf if isinstance(leaf, str) and leaf else "(no leaf)"


# --- encoding --------------------------------------------------------------------------------------


def render_with_assistant_spans(
    tokenizer: Any, messages: Sequence[dict[str, str]]
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of what each assistant turn adds.

    An assistant span starts after the generation prompt (`<|im_start|>assistant\\n` in ChatML) and
    ends where the next message starts, so it includes the end-of-turn marker: the model learns to stop.
    """
    text = tokenizer.apply_chat_template(list(messages), tokenize=False)
    spans: list[tuple[int, int]] = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = tokenizer.apply_chat_template(list(messages[:index]), tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(list(messages[: index + 1]), tokenize=False)
        if not (text.startswith(through) and through.startswith(prompt)):
            raise UsageError(
                "the model's chat template does not render a conversation's prefixes as prefixes of the whole, "
                "so the assistant tokens cannot be located; set assistant_only_loss = false"
            )
        spans.append((len(prompt), len(through)))
    return text, spans


def encode_conversation(
    tokenizer: Any, messages: Sequence[dict[str, str]], *, assistant_only_loss: bool
) -> tuple[list[int], list[int]]:
    """Token ids and shifted targets for one conversation (no length limit applied)."""
    text, spans = render_with_assistant_spans(tokenizer, messages)
    # The template already holds every special token the model expects (BOS included where it has one).
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    input_ids: list[int] = list(encoding["input_ids"])
    if assistant_only_loss:
        trained = [any(start <= begin < end for start, end in spans) for begin, _ in encoding["offset_mapping"]]
    else:
        trained = [True] * len(input_ids)
    targets = [input_ids[t + 1] if trained[t + 1] else IGNORE_INDEX for t in range(len(input_ids) - 1)]
    targets.append(IGNORE_INDEX)
    return input_ids, targets


def encode_rows(
    tokenizer: Any,
    rows: Iterable[dict[str, Any]],
    *,
    max_length: int,
    assistant_only_loss: bool,
    overlength: str,
    source: str = "",
) -> EncodedDataset:
    """Encode every row; samples over `max_length` are handled by the `overlength` policy and counted per leaf."""
    if not getattr(tokenizer, "is_fast", False):
        raise UsageError("training needs a fast (Rust) tokenizer for the model, to locate assistant tokens by offset")
    dataset = EncodedDataset(policy=overlength)
    for row in rows:
        dataset.rows += 1
        leaf = leaf_of(row)
        only_assistant = assistant_only_loss and not trains_all_tokens(row)
        input_ids, targets = encode_conversation(tokenizer, row["messages"], assistant_only_loss=only_assistant)
        if len(input_ids) > max_length:
            report = dataset.overlength.setdefault(leaf, OverlengthLeaf())
            report.count += 1
            report.longest = max(report.longest, len(input_ids))
            if overlength == "skip":
                continue
            if overlength == "truncate":
                input_ids, targets = input_ids[:max_length], targets[:max_length]
                targets[-1] = IGNORE_INDEX
        sample = EncodedSample(tuple(input_ids), tuple(targets), leaf)
        if sample.trained_tokens == 0:
            dataset.without_trained_tokens += 1
            continue
        dataset.samples.append(sample)
    if overlength == "error" and dataset.overlength:
        worst = ", ".join(
            f"{leaf} ({o.count}, longest {o.longest} tokens)" for leaf, o in sorted(dataset.overlength.items())
        )
        raise LabtaxError(
            f"{source or 'training data'}: samples longer than max_length={max_length} tokens: {worst}; "
            'raise max_length or set overlength = "skip" or "truncate"'
        )
    return dataset


# --- batching --------------------------------------------------------------------------------------


def plan_micro_batches(
    lengths: Sequence[int], *, seed: int, epoch: int, token_budget: int, packing: bool, shuffle: bool = True
) -> list[list[int]]:
    """Sample indices of each micro-batch of one epoch, in training order.

    The order is a seeded shuffle (a pure function of seed and epoch, so a resumed run rebuilds the
    same plan), or the file's order with `shuffle=False`. Samples fill micro-batches in that order: a
    packed row holds samples whose lengths sum to at most `token_budget`; a padded batch holds samples
    while count × longest stays within it.
    """
    order = list(range(len(lengths)))
    if shuffle:
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
    batches: list[list[int]] = []
    current: list[int] = []
    used = 0
    longest = 0
    for index in order:
        length = lengths[index]
        if packing:
            fits = used + length <= token_budget
        else:
            fits = (len(current) + 1) * max(longest, length) <= token_budget
        if current and not fits:
            batches.append(current)
            current, used, longest = [], 0, 0
        current.append(index)
        used += length
        longest = max(longest, length)
    if current:
        batches.append(current)
    return batches


def collate(samples: Sequence[EncodedSample], *, packing: bool, pad_token_id: int) -> dict[str, torch.Tensor]:
    """Tensors for one micro-batch: `input_ids`, `position_ids`, `targets` and, when padded, `attention_mask`.

    Packed: one row, `position_ids` restart at 0 at every sample and no attention mask is passed;
    transformers (>= 4.54) then derives a block-diagonal causal mask from the position ids for the
    eager and SDPA kernels, and calls the variable-length kernel for FlashAttention-2. It does so only
    when no KV cache is built, so the forward pass must get `use_cache=False` (the recipe's does).
    """
    import torch

    if packing:
        input_ids = [t for s in samples for t in s.input_ids]
        targets = [t for s in samples for t in s.targets]
        positions = [p for s in samples for p in range(s.length)]
        return {
            "input_ids": torch.tensor([input_ids], dtype=torch.long),
            "position_ids": torch.tensor([positions], dtype=torch.long),
            "targets": torch.tensor([targets], dtype=torch.long),
        }
    width = max(s.length for s in samples)
    pad = [width - s.length for s in samples]
    return {
        "input_ids": torch.tensor([list(s.input_ids) + [pad_token_id] * p for s, p in zip(samples, pad, strict=True)]),
        "attention_mask": torch.tensor([[1] * s.length + [0] * p for s, p in zip(samples, pad, strict=True)]),
        "position_ids": torch.tensor([list(range(s.length)) + [0] * p for s, p in zip(samples, pad, strict=True)]),
        "targets": torch.tensor([list(s.targets) + [IGNORE_INDEX] * p for s, p in zip(samples, pad, strict=True)]),
    }


@dataclass(frozen=True)
class PackingProbe:
    """The start-up check that packed rows keep their samples apart, on the actual model and attention kernel.

    `packed_difference`: mean |logit difference| between samples run packed in one row and each run
    alone, over every sample but the first (the first sees nothing before it either way).
    `leak_difference`: the same for the row run with one causal mask over all of it, i.e. what the
    difference looks like when samples do attend to each other.
    """

    separated: bool
    packed_difference: float
    leak_difference: float
    attention: str

    def describe(self) -> str:
        return (
            f"packed logits {'match' if self.separated else 'do not match'} single-sample logits with {self.attention}"
            f" attention (mean difference {self.packed_difference:.2g}; samples attending to each other:"
            f" {self.leak_difference:.2g})"
        )


# Samples of the probe: lengths in tokens. Three, so that a sample after the second is checked too.
PROBE_LENGTHS = (23, 17, 11)
# Packed rows pass when they differ from single samples by less than this share of a leak's difference:
# scale-free, so it holds for fp32 on CPU (~1e-7 vs ~1e-1) and bf16 kernels on GPU alike.
PROBE_TOLERANCE = 0.05


def probe_packing(model: Any, *, vocab_size: int, device: Any = None, autocast: Any = None) -> PackingProbe:
    """Run a few random-token samples packed, alone, and leaking into each other, and compare the logits.

    transformers derives a block-diagonal mask from restarting `position_ids` only for attention
    kernels with a mask function (eager, SDPA, flex) or the varlen FlashAttention path, and only on
    versions that have it (>= 4.54; on 4.5x with torch < 2.6 the mask was skipped while everything
    else looked packed). A custom or hub kernel, an older version or a model outside `create_causal_mask`
    may silently let samples see each other; this check measures it instead of assuming it.
    """
    import torch

    base = getattr(model, "get_base_model", lambda: model)()
    attention = str(getattr(getattr(base, "config", None), "_attn_implementation", None) or "default")
    generator = torch.Generator().manual_seed(0)
    samples = [torch.randint(0, vocab_size, (length,), generator=generator) for length in PROBE_LENGTHS]
    row = torch.cat(samples)[None]
    positions = torch.cat([torch.arange(length) for length in PROBE_LENGTHS])[None]
    if device is not None:
        row, positions, samples = row.to(device), positions.to(device), [s.to(device) for s in samples]
    was_training = bool(getattr(model, "training", False))
    model.eval()  # no dropout: the three runs must differ only by what each position attends to
    try:
        with torch.no_grad(), autocast if autocast is not None else nullcontext():
            packed = model(input_ids=row, position_ids=positions, use_cache=False).logits[0].float()
            # one causal mask over the whole row: what packing looks like when samples are not kept apart
            leaking = (
                model(input_ids=row, position_ids=positions, attention_mask=torch.ones_like(row), use_cache=False)
                .logits[0]
                .float()
            )
            alone = torch.cat(
                [
                    model(input_ids=s[None], position_ids=torch.arange(len(s), device=s.device)[None], use_cache=False)
                    .logits[0]
                    .float()
                    for s in samples
                ]
            )
    finally:
        model.train(was_training)
    later = slice(PROBE_LENGTHS[0], None)
    packed_difference = float((packed[later] - alone[later]).abs().mean())
    leak_difference = float((leaking[later] - alone[later]).abs().mean())
    separated = packed_difference <= PROBE_TOLERANCE * leak_difference or packed_difference == 0.0
    return PackingProbe(separated, packed_difference, leak_difference, attention)
