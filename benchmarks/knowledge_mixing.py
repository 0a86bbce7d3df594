"""Knowledge learned with its documents, measured: held-out knowledge scores with and without
InstructLab's knowledge data mixing (document-grounded rows + RAFT rows, docs/curation.md).

    python benchmarks/knowledge_mixing.py                      # the tiny offline model (a few minutes on CPU)
    python benchmarks/knowledge_mixing.py --student smollm2    # SmolLM2-135M-Instruct (python -m tests.real_model)

One run: the shipped taxonomy's knowledge leaves and their pinned documents; `labtax generate` against the
stand-in teacher (tests/openai_server.py: its question-answer pairs are sentences of the chunk it is
shown, so the data is grounded in the documents but says nothing the held-out answers say in their own
words); `labtax curate` once per arm, differing only in `[knowledge]`; phase-1 training from the same
base with the same hyper-parameters; then every knowledge leaf's held-out pairs (`heldout_pairs`, never
generated from nor trained on) scored as `labtax evaluate` scores them: the loss of the reference answer
given the question (closed book), and the greedy answer's token F1; and, MMLU-Branch style, multiple-choice
questions the stand-in teacher writes from the documents (`labtax.train.eval_teacher`, its right choice a
sentence of the document, the wrong ones negated sentences from elsewhere in it: a model that read the
document prefers the true one), chosen by log-likelihood as `labtax evaluate` chooses.

Arms:
- `plain`: the bare generated question-answer pairs (labtax before issue 17);
- `plain, matched tokens`: the same, with as many epochs as make its trained tokens match `mixed`'s
  (does the gain come from the documents or only from more tokens?);
- `grounded`: document-grounded rows only (chunk + question + answer, every token trained: InstructLab
  phase 0.7);
- `mixed` (the default): grounded rows and RAFT rows (the question among 4 chunks, the right one with
  p = 0.4: InstructLab phase 1.0).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

KNOWLEDGE = sorted(
    str(p.parent.relative_to(ROOT / "taxonomy")) for p in (ROOT / "taxonomy/knowledge").rglob("qna.yaml")
)


@dataclass(frozen=True)
class Arm:
    name: str
    knowledge: dict[str, Any]
    match_tokens_of: str | None = None


ARMS = (
    Arm("plain", {"grounded_share": 0.0, "raft_share": 0.0, "plain_share": 1.0}),
    Arm("grounded", {"grounded_share": 1.0, "raft_share": 0.0, "plain_share": 0.0}),
    Arm("mixed (default)", {}),
    Arm("plain, matched tokens", {"grounded_share": 0.0, "raft_share": 0.0, "plain_share": 1.0}, "mixed (default)"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", choices=("tiny", "smollm2"), default="tiny")
    parser.add_argument("--leaves", type=int, default=None, help="knowledge leaves used (default: all 4; smollm2: 1)")
    parser.add_argument("--target", type=int, default=None, help="generated samples per leaf (tiny 40, smollm2 12)")
    parser.add_argument("--epochs", type=int, default=None, help="phase-1 epochs (tiny 4, smollm2 2)")
    parser.add_argument("--chunk-words", type=int, default=None, help="chunk size in words (tiny 200, smollm2 120)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (tiny 2e-3, smollm2 1e-4)")
    parser.add_argument(
        "--batch-tokens", type=int, default=None, help="tokens per optimizer step (tiny 4096, smollm2 1024)"
    )
    parser.add_argument("--raft-words", type=int, default=None, help="RAFT context budget (tiny 800, smollm2 250)")
    parser.add_argument("--answer-tokens", type=int, default=None, help="greedy answer length (tiny 48, smollm2 32)")
    parser.add_argument(
        "--arms", default=None, help="comma-separated arms (default: all; smollm2: plain, grounded, mixed)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args()
    tiny = args.student == "tiny"
    leaves = KNOWLEDGE[: args.leaves or (len(KNOWLEDGE) if tiny else 1)]
    target = args.target or (40 if tiny else 12)
    epochs = args.epochs or (4 if tiny else 2)
    chunk_words = args.chunk_words or (200 if tiny else 120)
    learning_rate = args.lr or (2e-3 if tiny else 1e-4)
    batch_tokens = args.batch_tokens or (4096 if tiny else 1024)
    raft_words = args.raft_words or (800 if tiny else 250)
    answer_tokens = args.answer_tokens or (48 if tiny else 32)
    warmup = 2 if tiny else 1  # warm-up steps (the small SmolLM2 arms have few steps)
    default_arms = [arm.name for arm in ARMS] if tiny else ["plain", "grounded", "mixed (default)"]
    chosen = [name.strip() for name in args.arms.split(",")] if args.arms else default_arms
    arms = [arm for arm in ARMS if arm.name in chosen]
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    work = args.keep or Path(tempfile.mkdtemp(prefix="knowledge-mixing-"))
    try:
        project = make_project(work / "project", leaves)
        student = prepare_student(args.student, work, project)
        generation, questions = generate(project, work / "gen", target, chunk_words)
        results: dict[str, dict[str, Any]] = {"base": evaluate(student, project, questions, answer_tokens)}
        tokens: dict[str, int] = {}
        for arm in arms:
            data = curate(project, generation, work / "data" / slug(arm.name), arm, chunk_words, raft_words, args.seed)
            arm_epochs = epochs
            if arm.match_tokens_of:
                per_epoch = trained_tokens_per_epoch(student, data)
                arm_epochs = max(epochs, round(tokens[arm.match_tokens_of] / per_epoch))
            started = time.monotonic()
            run = work / "runs" / slug(arm.name)
            model, trained = train(
                student, data, run, hyper(arm_epochs, learning_rate, batch_tokens, warmup, args.seed)
            )
            tokens[arm.name] = trained
            scores = evaluate(model, project, questions, answer_tokens)
            scores |= {"epochs": arm_epochs, "trained_tokens": trained, "seconds": round(time.monotonic() - started)}
            scores["rows"] = sum(1 for _ in (data / "phase1_knowledge.jsonl").open(encoding="utf-8"))
            results[arm.name] = scores
            print(f"{arm.name}: {scores}", file=sys.stderr, flush=True)
        settings = {
            "leaves": len(leaves), "target": target, "epochs": epochs, "chunk_words": chunk_words,
            "learning_rate": learning_rate, "batch_tokens": batch_tokens, "warmup_steps": warmup,
            "raft_words": raft_words,
        }  # fmt: skip
        report(args, results, settings)
        results["settings"] = settings
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name)


def make_project(root: Path, leaves: list[str]) -> Path:
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text('[tool.labtax]\ntaxonomy = "taxonomy"\n', encoding="utf-8")
    for leaf in leaves:
        shutil.copytree(ROOT / "taxonomy" / leaf, root / "taxonomy" / leaf)
        documents = ROOT / "documents" / Path(leaf).name  # knowledge leaves' pinned documents; skills have none
        if documents.is_dir():
            shutil.copytree(documents, root / "documents" / Path(leaf).name)
    return root


def load_project_leaves(project: Path) -> list[Any]:
    from labtax.config import load_config
    from labtax.validate import load_leaves

    return load_leaves(load_config(start=project, taxonomy=project / "taxonomy")).leaves


def prepare_student(student: str, work: Path, project: Path) -> Path:
    if student == "smollm2":
        from real_model import SMOLLM2_DIR

        if not (SMOLLM2_DIR / "config.json").is_file():
            raise SystemExit(f"{SMOLLM2_DIR}: run `python -m tests.real_model` first")
        return Path(SMOLLM2_DIR)
    from labtax.train.tiny import build_tiny_model

    corpus = [p.read_text(encoding="utf-8") for p in sorted((project / "documents").rglob("*.md"))]
    corpus += [p.read_text(encoding="utf-8") for p in sorted((project / "taxonomy").rglob("qna.yaml"))]
    return build_tiny_model(
        work / "tiny", corpus, vocab_size=2048, hidden_size=128, layers=4, heads=4, max_positions=2048
    )


def generate(project: Path, out: Path, target: int, chunk_words: int) -> tuple[Path, list[Any]]:
    """The generated data, and the multiple-choice questions of every knowledge leaf (the same teacher)."""
    from labtax.sdg.params import GenerationParams
    from labtax.sdg.run import generate as run_generation
    from labtax.sdg.teacher_spec import TeacherSpec
    from labtax.train.eval_teacher import (
        McqSettings,
        ask_all,
        document_chunks,
        mcq_chunks,
        mcq_questions,
        mcq_requests,
    )
    from openai_server import running_server

    params = GenerationParams(target=target, chunk_size=chunk_words, chunk_overlap=chunk_words // 8)
    questions = []
    with running_server() as server:
        spec = TeacherSpec(model="fake-teacher", url=server.url)
        leaves = load_project_leaves(project)
        run_generation(leaves, spec, out, params=params, project_root=project)
        settings = McqSettings(per_leaf=20)
        for leaf in leaves:
            chunks = document_chunks(leaf, project)
            requests = mcq_requests(leaf, chunks, settings)
            sources = [source for source, _ in mcq_chunks(chunks, settings)]
            questions += mcq_questions(ask_all(spec, requests), sources, settings)[0]
    return out, questions


def curate(project: Path, gen: Path, out: Path, arm: Arm, chunk_words: int, raft_words: int, seed: int) -> Path:
    from labtax.curate import CurationConfig, KnowledgeSettings, run_curation

    knowledge = KnowledgeSettings(
        chunk_size=chunk_words, chunk_overlap=chunk_words // 8, raft_max_words=raft_words, **arm.knowledge
    )
    config = CurationConfig(
        samples_dir=gen, output_dir=out, taxonomy_root=project / "taxonomy", project_root=project,
        seed=seed, knowledge=knowledge,
    )  # fmt: skip
    run_curation(config, load_project_leaves(project))
    (out / "phase2_skills.jsonl").unlink(missing_ok=True)  # phase 1 alone: knowledge is what is measured
    return out


def hyper(epochs: int, learning_rate: float, batch_tokens: int, warmup: int, seed: int) -> Any:
    from labtax.train.config import load_hyperparameters

    return load_hyperparameters(
        None,
        {
            "seed": seed, "max_length": min(2048, batch_tokens), "learning_rate": learning_rate, "warmup_steps": warmup,
            "micro_batch_tokens": batch_tokens, "gradient_accumulation_steps": 1, "phase1.epochs": epochs,
            "checkpoint_every": 0, "keep_checkpoints": 1,
        },
    )  # fmt: skip


def trained_tokens_per_epoch(student: Path, data: Path) -> int:
    from transformers import AutoTokenizer

    from labtax.train.data import encode_rows, read_sample_rows

    tokenizer = AutoTokenizer.from_pretrained(student)
    rows = read_sample_rows(data / "phase1_knowledge.jsonl")
    return encode_rows(tokenizer, rows, max_length=2048, assistant_only_loss=True, overlength="skip").trained_tokens


def train(student: Path, data: Path, out: Path, hyperparameters: Any) -> tuple[Path, int]:
    from labtax.train.config import TrainConfig
    from labtax.train.recipe import run_training

    result = run_training(TrainConfig(str(student), data, out, hyperparameters))
    assert result.final_model is not None, "training did not finish"
    return result.final_model, sum(phase.trained_tokens for phase in result.phases)


def evaluate(model: Path, project: Path, questions: list[Any], answer_tokens: int) -> dict[str, Any]:
    """Held-out knowledge scores and multiple-choice accuracy, as `labtax evaluate` computes them."""
    from labtax.records.evaluation import Scores
    from labtax.taxonomy.leaf import LeafKind
    from labtax.train.evaluate import ModelScorer, pick_choice, score_leaf

    scorer = ModelScorer.load(str(model))
    total = Scores()
    for leaf in load_project_leaves(project):
        if leaf.kind is LeafKind.KNOWLEDGE:
            scores, _ = score_leaf(scorer, leaf, answer_tokens)
            total.add(scores)
    correct = sum(pick_choice(scorer, q, "cloze") == q.answer for q in questions)
    scorer.close()
    return {
        "loss": round(total.loss or math.nan, 4), "f1": round(total.f1 or 0.0, 4), "pairs": total.answers,
        "mcq": round(correct / len(questions), 4) if questions else None, "mcq_questions": len(questions),
    }  # fmt: skip


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]], settings: dict[str, Any]) -> None:
    base = results["base"]
    print(f"student: {args.student}; seed {args.seed}; " + "; ".join(f"{k} {v}" for k, v in settings.items()))
    print(
        f"held-out knowledge pairs: {base['pairs']} (closed book); multiple-choice questions: {base['mcq_questions']}\n"
    )
    print(
        "| arm | phase-1 rows | epochs | trained tokens | held-out loss | vs plain | token F1 | MC accuracy | seconds |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    print(f"| base model | – | – | – | {base['loss']:.4f} | | {base['f1']:.3f} | {base['mcq']:.3f} | |")
    plain = results["plain"]["loss"]
    for name, scores in results.items():
        if name == "base":
            continue
        print(
            f"| {name} | {scores['rows']} | {scores['epochs']} | {scores['trained_tokens']:,} | {scores['loss']:.4f} "
            f"| {scores['loss'] / plain:.3f} | {scores['f1']:.3f} | {scores['mcq']:.3f} | {scores['seconds']} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
