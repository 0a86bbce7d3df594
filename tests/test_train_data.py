"""Chat template, loss mask, over-length policies and packing, on the tiny offline model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labtax.errors import LabtaxError
from labtax.train.data import (
    IGNORE_INDEX,
    EncodedSample,
    collate,
    encode_conversation,
    encode_rows,
    plan_micro_batches,
    probe_packing,
)

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "How often do tides rise?"},
    {"role": "assistant", "content": "Twice a day."},
    {"role": "user", "content": "And fall?"},
    {"role": "assistant", "content": "Also twice."},
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()


def trained_text(tokenizer: Any, targets: list[int]) -> str:
    return str(tokenizer.decode([t for t in targets if t != IGNORE_INDEX]))


def test_loss_covers_exactly_the_assistant_turns_and_their_end_markers(tokenizer: Any) -> None:
    input_ids, targets = encode_conversation(tokenizer, CONVERSATION, assistant_only_loss=True)
    assert len(input_ids) == len(targets) and targets[-1] == IGNORE_INDEX
    assert trained_text(tokenizer, targets) == "Twice a day.<|im_end|>\nAlso twice.<|im_end|>\n"
    # targets are shifted: position t predicts token t + 1
    first = next(t for t, target in enumerate(targets) if target != IGNORE_INDEX)
    assert targets[first] == input_ids[first + 1]
    assert tokenizer.decode(input_ids[: first + 1]).endswith("<|im_start|>assistant\n")

    _, everything = encode_conversation(tokenizer, CONVERSATION, assistant_only_loss=False)
    assert trained_text(tokenizer, everything) == tokenizer.decode(input_ids[1:])


def rows(*lengths: int) -> list[dict[str, Any]]:
    return [
        {
            "messages": [{"role": "user", "content": "word " * n}, {"role": "assistant", "content": "ok"}],
            "metadata": {"leaf": f"leaf{n}"},
        }
        for n in lengths
    ]


def test_overlength_policies_count_per_leaf_and_never_drop_silently(tokenizer: Any) -> None:
    skipped = encode_rows(tokenizer, rows(2, 3, 200), max_length=64, assistant_only_loss=True, overlength="skip")
    assert (skipped.rows, len(skipped.samples)) == (3, 2)
    assert skipped.overlength_report()["leaf200"]["count"] == 1
    assert skipped.overlength_report()["leaf200"]["longest"] > 64

    truncated = encode_rows(tokenizer, rows(2, 200), max_length=64, assistant_only_loss=False, overlength="truncate")
    assert len(truncated.samples) == 2 and max(s.length for s in truncated.samples) == 64
    assert truncated.samples[-1].targets[-1] == IGNORE_INDEX or truncated.samples[0].targets[-1] == IGNORE_INDEX
    # truncating inside the prompt leaves no assistant token to learn from: counted, not trained on
    prompt_only = encode_rows(tokenizer, rows(200), max_length=64, assistant_only_loss=True, overlength="truncate")
    assert (len(prompt_only.samples), prompt_only.without_trained_tokens) == (0, 1)

    with pytest.raises(LabtaxError, match="leaf200"):
        encode_rows(
            tokenizer, rows(2, 200), max_length=64, assistant_only_loss=True, overlength="error", source="phase1"
        )


def test_micro_batch_plan_is_deterministic_and_within_budget() -> None:
    lengths = [5, 9, 3, 7, 8, 2, 6, 4]
    packed = plan_micro_batches(lengths, seed=1, epoch=0, token_budget=12, packing=True)
    assert packed == plan_micro_batches(lengths, seed=1, epoch=0, token_budget=12, packing=True)
    assert packed != plan_micro_batches(lengths, seed=1, epoch=1, token_budget=12, packing=True)
    assert sorted(i for batch in packed for i in batch) == list(range(8))
    assert all(sum(lengths[i] for i in batch) <= 12 for batch in packed)
    in_file_order = plan_micro_batches(lengths, seed=1, epoch=3, token_budget=12, packing=True, shuffle=False)
    assert [i for batch in in_file_order for i in batch] == list(range(8))  # a curated curriculum stays in order
    padded = plan_micro_batches(lengths, seed=1, epoch=0, token_budget=12, packing=False)
    assert all(len(batch) * max(lengths[i] for i in batch) <= 12 for batch in padded)


def test_packed_samples_do_not_attend_to_each_other(tokenizer: Any, model: Any) -> None:
    import torch

    from labtax.train.recipe import accepts_logits_to_keep, summed_token_loss

    assert probe_packing(model, vocab_size=model.config.vocab_size).separated
    samples = []
    for conversation in (CONVERSATION, CONVERSATION[1:3]):
        input_ids, targets = encode_conversation(tokenizer, conversation, assistant_only_loss=True)
        samples.append(EncodedSample(tuple(input_ids), tuple(targets), "leaf"))
    packed = collate(samples, packing=True, pad_token_id=tokenizer.pad_token_id)
    with torch.no_grad():
        # use_cache=False as in training: transformers only derives packed masks when no cache is built
        packed_logits = model(
            input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False
        ).logits[0]
        alone = [model(input_ids=torch.tensor([s.input_ids])).logits[0] for s in samples]
        assert torch.allclose(packed_logits, torch.cat(alone), atol=1e-5)

        # the same samples padded give the same summed loss: normalisation never depends on the layout
        padded = collate(samples, packing=False, pad_token_id=tokenizer.pad_token_id)
        assert padded["attention_mask"].shape == padded["input_ids"].shape
        assert float(summed_token_loss(model, packed)) == pytest.approx(
            float(summed_token_loss(model, padded)), rel=1e-5
        )
        # projecting only the trained positions to the vocabulary changes nothing but the cost
        assert accepts_logits_to_keep(model)
        assert float(summed_token_loss(model, packed, trained_logits_only=True)) == pytest.approx(
            float(summed_token_loss(model, packed)), rel=1e-5
        )


def test_the_packing_probe_on_a_real_instruct_model(smollm2_dir: Path) -> None:
    """SmolLM2-135M-Instruct with SDPA keeps packed samples apart; the same kernel registered under a name
    transformers has no mask function for lets them attend to each other, and the probe tells the two apart
    by six orders of magnitude."""
    from transformers import AttentionInterface, AutoModelForCausalLM
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    AttentionInterface.register("sdpa_without_mask", sdpa_attention_forward)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, attn_implementation="sdpa")
    probes = {}
    for kernel in ("sdpa", "sdpa_without_mask"):
        model.set_attn_implementation(kernel)
        probes[kernel] = probe_packing(model, vocab_size=model.config.vocab_size)
    assert probes["sdpa"].separated and probes["sdpa"].packed_difference < 1e-4
    assert not probes["sdpa_without_mask"].separated
    assert probes["sdpa_without_mask"].packed_difference == pytest.approx(probes["sdpa"].leak_difference, rel=1e-3)
    assert probes["sdpa"].leak_difference > 0.5
