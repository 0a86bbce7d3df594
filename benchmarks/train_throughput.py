"""Training throughput: labtax's recipe against a plain transformers `Trainer`, on the same data.

    python benchmarks/train_throughput.py            # CPU: the tiny offline model (tools/labtax/train/tiny.py)
    python benchmarks/train_throughput.py --gpu      # CUDA: a ~0.5B Llama-architecture model built from a
                                                     # config (Qwen2.5-0.5B's shape, random weights), bf16

Both arms train one epoch over the same encoded samples (chat template, assistant-only labels, the
same max_length), with the same gradient accumulation and learning rate, each in its own child
process so that peak memory is measured per arm:
- labtax: `labtax.train.recipe.run_training` (packing, position_ids restarting per sample);
- Trainer: `transformers.Trainer` with `DataCollatorForSeq2Seq` padding (what a plain script does),
  a per-device batch of `--batch` samples; the recipe's micro-batches hold as many tokens as `--batch`
  samples of mean length, so both see about the same number of samples per optimizer step.

Reported: real (non-padding) tokens per second over the training loop (model loading and saving
excluded), peak memory (CPU: the process's peak RSS, interpreter and libraries included; GPU:
`torch.cuda.max_memory_allocated`), and on GPU the model FLOPs utilisation, MFU = 6 x parameters x
tokens/s / peak bf16 FLOP/s (attention FLOPs left out, so it is a slight underestimate).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Dense bf16 peak of the GPUs this is expected to run on (TFLOP/s, from the vendors' data sheets).
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0}
WORDS = "tides rise and fall twice a day git stores content as blobs and trees a haiku has three lines".split()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu", action="store_true", help="CUDA, a ~0.5B model in bf16 (default: CPU, the tiny model)")
    parser.add_argument("--samples", type=int, default=None, help="training samples (default: 96 CPU, 2048 GPU)")
    parser.add_argument(
        "--max-length", type=int, default=None, help="longest sample in tokens (default: 256 CPU, 2048 GPU)"
    )
    parser.add_argument("--batch", type=int, default=8, help="Trainer's per-device batch, in samples")
    parser.add_argument("--accumulation", type=int, default=2, help="gradient accumulation steps, both arms")
    parser.add_argument("--repeats", type=int, default=3, help="runs per arm, alternating; the median is reported")
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="GPU bf16 peak for MFU (default: by device name)"
    )
    parser.add_argument("--arm", choices=("labtax", "trainer"), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.samples = args.samples or (2048 if args.gpu else 96)
    args.max_length = args.max_length or (2048 if args.gpu else 256)
    if args.arm:
        print(json.dumps(run_arm(args)))
        return 0
    return compare(args)


# --- the parent: build once, run each arm in a child, print side by side -------------------------


def compare(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="labtax-bench-") as temporary:
        workdir = Path(temporary)
        info = prepare(workdir, args)
        runs: dict[str, list[dict[str, Any]]] = {"labtax": [], "trainer": []}
        # Alternating arms, several times: a shared machine's load then falls on both alike.
        for arm in [arm for _ in range(args.repeats) for arm in ("labtax", "trainer")]:
            command = [sys.executable, __file__, "--arm", arm, "--workdir", str(workdir),
                       "--samples", str(args.samples),
                       "--max-length", str(args.max_length), "--batch", str(args.batch),
                       "--accumulation", str(args.accumulation)] + (["--gpu"] if args.gpu else [])  # fmt: skip
            if args.peak_tflops:
                command += ["--peak-tflops", str(args.peak_tflops)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.stderr.write(done.stderr[-4000:])
                return 1
            runs[arm].append(json.loads(done.stdout.strip().splitlines()[-1]))
    ours, theirs = median_run(runs["labtax"]), median_run(runs["trainer"])
    print(f"device: {ours['device']}; model: {info['parameters'] / 1e6:.1f}M parameters; {info['samples']} samples, "
          f"{info['tokens']} tokens (mean {info['mean_length']:.0f}, max_length {args.max_length}); "
          f"accumulation {args.accumulation}, Trainer batch {args.batch}; "
          f"median of {args.repeats} alternating runs per arm")  # fmt: skip
    print(f"{'':24}{'labtax recipe':>16}{'transformers Trainer':>24}{'ratio':>10}")
    rows = [("tokens/s", "tokens_per_s", "{:,.0f}"), ("peak memory (MiB)", "peak_mib", "{:,.0f}"),
            ("optimizer steps", "steps", "{:.0f}"), ("loop seconds", "seconds", "{:.2f}")]  # fmt: skip
    if ours.get("mfu") is not None:
        rows.append(("MFU", "mfu", "{:.1%}"))
    for label, key, fmt in rows:
        ratio = ours[key] / theirs[key] if theirs[key] else float("nan")
        print(f"{label:24}{fmt.format(ours[key]):>16}{fmt.format(theirs[key]):>24}{ratio:>9.2f}x")
    return 0


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput (its own seconds and memory, so each column is one real run)."""
    ordered = sorted(runs, key=lambda run: run["tokens_per_s"])
    return ordered[len(ordered) // 2]


def prepare(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The model directory and phase1_knowledge.jsonl, shared by both arms."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from labtax.train.data import encode_rows
    from labtax.train.tiny import build_tiny_model

    model_dir = build_tiny_model(workdir / "model", max_positions=max(512, args.max_length))
    if args.gpu:
        # Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14 heads / 2 KV heads, vocab 151936), random weights.
        # The tiny tokenizer only uses the first few hundred ids; the compute is that of the full vocabulary.
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        config = LlamaConfig(
            vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
            num_key_value_heads=2, max_position_embeddings=max(4096, args.max_length), tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
        AutoModelForCausalLM.from_config(config).save_pretrained(model_dir)
    rng = random.Random(0)
    data = workdir / "data"
    data.mkdir()
    rows = []
    for index in range(args.samples):
        # lengths spread from short to near max_length, as curated data is (most rows short, a long tail)
        words = int(args.max_length * min(0.95, rng.paretovariate(1.5) / 8)) // 2
        question = " ".join(rng.choice(WORDS) for _ in range(max(4, words // 2)))
        answer = " ".join(rng.choice(WORDS) for _ in range(max(4, words - words // 2)))
        messages = [{"role": "user", "content": f"{question}?"}, {"role": "assistant", "content": f"{answer}."}]
        rows.append({"messages": messages, "metadata": {"leaf": f"knowledge/bench/{index % 8}/qna.yaml"}})
    (data / "phase1_knowledge.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded = encode_rows(tokenizer, rows, max_length=args.max_length, assistant_only_loss=True, overlength="skip")
    lengths = [s.length for s in encoded.samples]
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return {
        "samples": len(lengths),
        "tokens": sum(lengths),
        "mean_length": sum(lengths) / len(lengths),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


# --- the children: one arm each -------------------------------------------------------------------


def run_arm(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from labtax.train.data import encode_rows, read_sample_rows

    workdir: Path = args.workdir
    tokenizer = AutoTokenizer.from_pretrained(workdir / "model")
    rows = read_sample_rows(workdir / "data" / "phase1_knowledge.jsonl")
    encoded = encode_rows(tokenizer, rows, max_length=args.max_length, assistant_only_loss=True, overlength="skip")
    mean_length = sum(s.length for s in encoded.samples) / len(encoded.samples)
    cuda = args.gpu and torch.cuda.is_available()
    if args.gpu and not cuda:
        raise SystemExit("--gpu needs a CUDA device")
    if args.arm == "labtax":
        tokens, seconds, steps = run_labtax(args, workdir, mean_length)
    else:
        tokens, seconds, steps = run_trainer(args, workdir, tokenizer, encoded.samples)
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
        device = torch.cuda.get_device_name(0)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        device = f"CPU ({os.cpu_count()} cores visible, {torch.get_num_threads()} torch threads)"
    tokens_per_s = tokens / seconds
    mfu = None
    if cuda:
        parameters = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(workdir / "model").parameters())
        peak_tflops = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device), None)
        if peak_tflops:
            mfu = 6 * parameters * tokens_per_s / (peak_tflops * 1e12)
    return {
        "tokens_per_s": tokens_per_s,
        "peak_mib": peak,
        "seconds": seconds,
        "steps": steps,
        "mfu": mfu,
        "device": device,
    }


def run_labtax(args: argparse.Namespace, workdir: Path, mean_length: float) -> tuple[int, float, int]:
    from labtax.train.config import TrainConfig, load_hyperparameters
    from labtax.train.recipe import run_training

    overrides = {
        "max_length": args.max_length,
        "micro_batch_tokens": max(args.max_length, round(args.batch * mean_length)),
        "gradient_accumulation_steps": args.accumulation,  # a fixed batch, as Trainer's
        "learning_rate": 2e-5,
        "warmup_ratio": 0.0,
        "checkpoint_every": 0,
        "phase1.epochs": 1,
    }
    config = TrainConfig(
        str(workdir / "model"),
        workdir / "data",
        Path(tempfile.mkdtemp(dir=workdir, prefix="run-labtax-")),
        load_hyperparameters(None, overrides),
    )
    phase = run_training(config).phases[0]
    return phase.input_tokens, phase.seconds, phase.steps_done


def run_trainer(args: argparse.Namespace, workdir: Path, tokenizer: Any, samples: list[Any]) -> tuple[int, float, int]:
    import torch
    from transformers import (
        AutoModelForCausalLM,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from labtax.train.data import IGNORE_INDEX

    # The same tokens and loss positions as the recipe; Trainer's models shift labels themselves.
    dataset = [
        {"input_ids": list(s.input_ids), "attention_mask": [1] * s.length, "labels": [IGNORE_INDEX, *s.targets[:-1]]}
        for s in samples
    ]
    cuda = args.gpu
    model = AutoModelForCausalLM.from_pretrained(workdir / "model", dtype=torch.float32)

    class Clock(TrainerCallback):
        began = 0.0
        ended = 0.0

        def on_train_begin(self, *_: Any, **__: Any) -> None:
            Clock.began = time.perf_counter()

        def on_train_end(self, *_: Any, **__: Any) -> None:
            Clock.ended = time.perf_counter()

    training = TrainingArguments(
        output_dir=str(workdir / "run-trainer"),
        per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=args.accumulation,
        learning_rate=2e-5,
        num_train_epochs=1,
        save_strategy="no",
        report_to=[],
        logging_steps=10**9,
        use_cpu=not cuda,
        bf16=cuda,
        dataloader_num_workers=0,
        seed=42,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=training,
        train_dataset=dataset,  # type: ignore[arg-type]
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX),
        callbacks=[Clock()],
    )
    output = trainer.train()
    return sum(s.length for s in samples), Clock.ended - Clock.began, int(output.global_step)


if __name__ == "__main__":
    raise SystemExit(main())
