"""Does the default training recipe move a real model? SmolLM2-135M-Instruct, CPU, the taxonomy's own seeds.

    python -m tests.real_model                  # once: SmolLM2-135M-Instruct as a transformers directory
    python benchmarks/train_moves.py            # default recipe, knowledge seeds' Q&A pairs, CPU
    python benchmarks/train_moves.py --set method=lora --set phase1.epochs=2

The training data is each knowledge leaf's *training* seeds (docs/heldout.md: the held-out pairs are
left out) as question/answer conversations, in `phase1_knowledge.jsonl` only, so phase 2 is skipped and
the phase-1 model is the result. `labtax train` runs with its defaults (plus any `--set`), then
`labtax evaluate` scores the trained and the base model on every leaf's held-out pairs. Reported: the
plan `labtax train` printed, training wall time, and the mean knowledge-leaf held-out loss and token F1
of base and trained model, beside issue 18's reference for the same data (seeds' Q&A pairs, 20 steps:
mean knowledge-leaf loss 2.99 -> 2.53, token F1 0.169 -> 0.212).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE: dict[str, tuple[float, float]] = {"loss": (2.99, 2.53), "f1": (0.169, 0.212)}  # after 20 steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO_ROOT / ".labtax-cache" / "models" / "smollm2-135m-instruct")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="labtax train --set KEY=VALUE")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="labtax evaluate's answer length (token F1)")
    parser.add_argument("--workdir", type=Path, help="keep the data, run and eval.json here (default: a temp dir)")
    args = parser.parse_args()
    if not (args.model / "config.json").is_file():
        print(f"{args.model} is not a model directory; run `python -m tests.real_model` first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="labtax-train-moves-") as temporary:
        workdir = args.workdir or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        return measure(args, workdir)


def seed_data(directory: Path) -> int:
    """phase1_knowledge.jsonl from every knowledge leaf's training seeds; returns the number of samples."""
    from labtax.config import load_config
    from labtax.taxonomy.leaf import LeafKind, training_seeds
    from labtax.validate import load_leaves

    leaves = load_leaves(load_config(taxonomy=REPO_ROOT / "taxonomy")).leaves
    rows = [
        {
            "messages": [{"role": "user", "content": pair.question}, {"role": "assistant", "content": pair.answer}],
            "metadata": {"leaf": leaf.path, "leaf_hash": leaf.leaf_hash},
        }
        for leaf in sorted(leaves, key=lambda leaf: leaf.path)
        if leaf.kind is LeafKind.KNOWLEDGE
        for seed in training_seeds(leaf)
        for pair in seed.qna
    ]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "phase1_knowledge.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return len(rows)


def labtax(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "labtax.cli", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=REPO_ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"labtax {args[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def measure(args: argparse.Namespace, workdir: Path) -> int:
    samples = seed_data(workdir / "data")
    settings = [arg for item in args.overrides for arg in ("--set", item)]
    started = time.monotonic()
    trained = labtax("train", "--base-model", str(args.model), "--data", str(workdir / "data"),
                     "--output", str(workdir / "run"), *settings)  # fmt: skip
    seconds = time.monotonic() - started
    labtax("evaluate", "--model", str(workdir / "run" / "final"), "--baseline", str(args.model), "--quiet",
           "--output", str(workdir / "eval.json"), "--max-new-tokens", str(args.max_new_tokens))  # fmt: skip
    evaluation = json.loads((workdir / "eval.json").read_text())
    knowledge = [leaf for leaf in evaluation["leaves"] if leaf["kind"] == "knowledge"]
    record = json.loads((workdir / "run" / "training.json").read_text())
    phase = record["phases"]["1"]

    def mean(role: str, metric: str) -> float:
        return sum(leaf[role][metric] for leaf in knowledge) / len(knowledge)

    lines = [json.loads(line) for line in (workdir / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = sorted({line["epoch"] for line in lines})
    epoch_loss = [
        sum(line["loss"] * line["trained_tokens"] for line in lines if line["epoch"] == epoch)
        / sum(line["trained_tokens"] for line in lines if line["epoch"] == epoch)
        for epoch in epochs
    ]
    print("\n".join(line for line in trained.stderr.splitlines() if line.startswith(("phase 1:", "batches", "warn"))))
    print(f"\n{samples} samples, {phase['steps']} steps, {phase['input_tokens']:,} tokens in {seconds:.0f} s wall"
          f" ({phase['input_tokens'] / phase['seconds']:.0f} tokens/s in the loop); training loss per epoch:"
          f" {', '.join(f'{loss:.3f}' for loss in epoch_loss)}")  # fmt: skip
    print(f"\n| mean over {len(knowledge)} knowledge leaves | base | trained | reference base -> trained |")
    print("|---|--:|--:|--:|")
    for metric, label in (("loss", "held-out loss"), ("f1", "token F1")):
        before, after = REFERENCE[metric]
        print(f"| {label} | {mean('baseline', metric):.3f} | {mean('model', metric):.3f} | {before} -> {after} |")
    for leaf in knowledge:
        print(f"  {leaf['leaf']}: loss {leaf['baseline']['loss']:.3f} -> {leaf['model']['loss']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
