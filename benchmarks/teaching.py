"""Does labtax teach? The headline quality figure (issue 18): one real model as teacher and student, three
students side by side, scored per leaf on the held-out seed examples.

    python benchmarks/teaching.py --work /tmp/teaching                     # the documented CPU subset
    python benchmarks/teaching.py --work W --leaves all --target 50 --epochs 3 --threads 0   # a GPU machine

One run, one model (SmolLM2-135M-Instruct, prepared by `python -m tests.real_model`, by default) as both
teacher and student, on a subset of the shipped taxonomy (`--leaves`; copied with its pinned documents
into a project under --work):

- **base**: the model as it is;
- **seeds only**: the base trained on the leaves' own training seeds (`training_seeds`: the held-out
  pairs never) and, for knowledge, their documents: each seed pair rendered exactly as `labtax curate`
  renders a generated knowledge pair (`labtax.curate.knowledge.render_knowledge`: its document chunk, then
  the question, every token trained; and the question among RAFT documents), plus every chunk of the
  leaf's documents once as a row of its own (every token trained), then phase 2 mixed by curation's own
  `build_phases` (skill seeds and knowledge replay);
- **labtax**: the base trained on labtax's curated synthetic data: `generate` (the local teacher, the
  same model) -> `curate` (defaults) -> `train`, the library calls the CLI makes.

Both trained arms use the same hyper-parameters (`labtax train`'s defaults except those the options
set: epochs, learning rate, tokens per step, warm-up) and the same seed. Every model is scored per leaf
as `labtax evaluate` scores it (`labtax.train.evaluate.score_leaf`: the held-out reference answer's
mean token loss; for knowledge, the greedy closed-book answer's token F1). Noise: the 95 % t-interval
of the paired per-question loss differences against the base (knowledge: one held-out question per
seed, five per leaf; a skill leaf has a single held-out example, so it has no interval), and with
`--seeds 0,1` every trained arm is trained again with another seed (data order), which shows what
training randomness alone moves.

Everything lands in --work and is reused by a re-run: generation is labtax's own cache (a re-run sends
no request), each arm's data, training run and scores are kept (delete `WORK/results/ARM.json` to redo
one). The table is printed as markdown; --json writes every number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from knowledge_mixing import load_project_leaves, make_project  # noqa: E402  (benchmarks share their helpers)

# Two knowledge leaves (different sciences; the reference and the small-teacher docs use
# ocean_tides) and two short freeform skills (short answers: cheap to generate, train and score on a CPU).
DEFAULT_LEAVES = (
    "knowledge/science/oceanography/ocean_tides",
    "knowledge/science/metrology/si_base_units",
    "compositional_skills/writing/freeform/haiku",
    "foundational_skills/reasoning/unit_conversion",
)
SEEDS_ARM, LABTAX_ARM = "seeds only", "labtax"
COMPUTED: list[str] = []  # what this run measured (the rest came from --work)
# Options that change what is measured: a --work directory is reused only with the same ones.
MEASURING = ("leaves", "model", "target", "max_tokens", "judge_max_tokens", "budget_factor", "chunk_words",
             "raft_words", "epochs", "lr", "batch_tokens", "warmup", "answer_tokens")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="working directory, kept; a re-run reuses it")
    parser.add_argument("--leaves", default=",".join(DEFAULT_LEAVES), help="comma-separated leaf paths, or 'all'")
    parser.add_argument("--model", type=Path, default=None, help="teacher and student (default: SmolLM2-135M)")
    parser.add_argument("--target", type=int, default=8, help="generated samples per leaf (labtax generate --target)")
    parser.add_argument("--max-tokens", type=int, default=128, help="completion tokens per generation request")
    parser.add_argument("--judge-max-tokens", type=int, default=48, help="completion tokens per judge request")
    parser.add_argument("--budget-factor", type=float, default=8.0, help="requests per leaf, times the target")
    parser.add_argument(
        "--chunk-words", type=int, default=150, help="document chunk size (generation and curation; labtax: 400)"
    )
    parser.add_argument("--raft-words", type=int, default=300, help="curation's RAFT context budget (labtax: 800)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each training phase, every arm")
    parser.add_argument("--lr", type=float, default=1e-4, help="peak learning rate, every arm")
    parser.add_argument("--batch-tokens", type=int, default=2048, help="tokens per optimizer step (one micro-batch)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up steps")
    parser.add_argument("--seeds", default="0", help="training seeds, comma-separated: each trains every arm again")
    parser.add_argument("--answer-tokens", type=int, default=64, help="greedy answer length (labtax evaluate's 64)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (0: torch's default; 1 is fastest on a busy CPU)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    model = args.model or prepared_smollm2()
    leaves = all_leaves() if args.leaves == "all" else [leaf.strip().strip("/") for leaf in args.leaves.split(",")]
    seeds = [int(seed) for seed in args.seeds.split(",")]
    work: Path = args.work
    check_options(work, args)
    started = time.monotonic()
    project = work / "project"
    if not project.is_dir():
        make_project(project, leaves)
    taxonomy = load_project_leaves(project)
    generation = generate(project, work, model, args)
    results: dict[str, Any] = {"base": cached(work, "base", lambda: {"scores": score(model, taxonomy, args)})}
    for seed in seeds:
        seeds_data = seed_data(project, work / "data" / f"seeds-{seed}", seed, knowledge_settings(args))
        labtax_data = curate(project, work, seed, knowledge_settings(args))
        for arm, data in ((SEEDS_ARM, seeds_data), (LABTAX_ARM, labtax_data)):
            name = f"{arm} (seed {seed})"
            results[name] = cached(work, name, partial(train_and_score, model, data, work, name, seed, args))
    stored = work / "results" / "settings.json"
    if COMPUTED or not stored.is_file():  # the figures of the run that measured something, not of a re-read
        stored.write_text(json.dumps(settings(args, model, leaves, seeds, time.monotonic() - started)) + "\n")
    results["settings"] = json.loads(stored.read_text(encoding="utf-8"))
    results["generation"] = generation
    print(render(results, taxonomy))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def check_options(work: Path, args: argparse.Namespace) -> None:
    """A re-run reuses --work only with the options that made it (--seeds may grow, --threads change)."""
    wanted = {name: str(getattr(args, name)) for name in MEASURING}
    path = work / "results" / "options.json"
    if path.is_file():
        made = json.loads(path.read_text(encoding="utf-8"))
        changed = {name: (made.get(name), value) for name, value in wanted.items() if made.get(name) != value}
        if changed:
            listed = ", ".join(f"--{name.replace('_', '-')} {old} -> {new}" for name, (old, new) in changed.items())
            raise SystemExit(f"{work} holds results made with other options ({listed}): use another --work")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(wanted, indent=2) + "\n", encoding="utf-8")


def prepared_smollm2() -> Path:
    from real_model import PREPARE_COMMAND, SMOLLM2_DIR

    if not (SMOLLM2_DIR / "config.json").is_file():
        raise SystemExit(f"{SMOLLM2_DIR}: run `{PREPARE_COMMAND}` first")
    return Path(SMOLLM2_DIR)


def all_leaves() -> list[str]:
    return sorted(str(p.parent.relative_to(ROOT / "taxonomy")) for p in (ROOT / "taxonomy").rglob("qna.yaml"))


def slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name).strip("-")


def cached(work: Path, name: str, compute: Any) -> dict[str, Any]:
    """`compute()`'s result, kept in WORK/results/NAME.json: a re-run reuses a finished arm."""
    path = work / "results" / f"{slug(name)}.json"
    if path.is_file():
        return dict(json.loads(path.read_text(encoding="utf-8")))
    result = dict(compute())
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)
    COMPUTED.append(name)
    print(f"{name}: done", file=sys.stderr, flush=True)
    return result


# --- the labtax arm: generate, curate ------------------------------------------------------------


def generate(project: Path, work: Path, model: Path, args: argparse.Namespace) -> dict[str, Any]:
    """`labtax generate --teacher-model MODEL` (the local teacher) for every leaf; the first run's
    figures are kept, since a re-run finds everything cached and sends nothing."""
    from labtax.sdg.params import GenerationParams
    from labtax.sdg.run import generate as run_generation
    from labtax.sdg.teacher_spec import TeacherSpec

    params = GenerationParams(
        target=args.target,
        max_tokens=args.max_tokens,
        judge_max_tokens=args.judge_max_tokens,
        budget_factor=args.budget_factor,
        chunk_size=args.chunk_words,
        chunk_overlap=args.chunk_words // 8,
    )
    spec = TeacherSpec(model=str(model))
    record = work / "results" / "generation.json"
    started = time.monotonic()
    result = run_generation(load_project_leaves(project), spec, work / "gen", params=params, project_root=project)
    if result.summary.http_requests == 0 and record.is_file():
        return dict(json.loads(record.read_text(encoding="utf-8")))
    figures = {
        "seconds": round(time.monotonic() - started),
        "requests": result.summary.http_requests,
        "prompt_tokens": result.summary.prompt_tokens,
        "completion_tokens": result.summary.completion_tokens,
        "kept": result.summary.kept,
        "leaves": {
            row.leaf: {"kept": row.kept, "target": row.target, "requests": row.sent, "outcome": row.outcome}
            for row in result.summary.leaves
        },
        "notes": result.notes,
        "teacher": "local transformers teacher (labtax.sdg.local_teacher), batches of up to 8",
    }
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return figures


def knowledge_settings(args: argparse.Namespace) -> Any:
    """`[knowledge]` of `labtax curate --config`: chunks as generation cut them, a RAFT budget for a small
    student; the shares (grounded and RAFT rows for every sample) are labtax's defaults."""
    from labtax.curate.settings import KnowledgeSettings

    return KnowledgeSettings(
        chunk_size=args.chunk_words, chunk_overlap=args.chunk_words // 8, raft_max_words=args.raft_words
    )


def curate(project: Path, work: Path, seed: int, knowledge: Any) -> Path:
    """`labtax curate` (defaults but `[knowledge]`'s sizes: knowledge mixing, replay), as a user runs it."""
    from labtax.curate import CurationConfig, run_curation

    out = work / "data" / f"labtax-{seed}"
    if not (out / "curation.json").is_file():
        config = CurationConfig(
            samples_dir=work / "gen",
            output_dir=out,
            taxonomy_root=project / "taxonomy",
            project_root=project,
            seed=seed,
            knowledge=knowledge,
        )
        run_curation(config, load_project_leaves(project))
    return out


# --- the seeds-only arm ----------------------------------------------------------------------------


def seed_data(project: Path, out: Path, seed: int, settings: Any) -> Path:
    """The leaves' training seeds (and knowledge documents) as phase files, rendered and mixed by curation's
    own functions, so that the two trained arms differ only in where their examples came from."""
    from labtax.curate.knowledge import leaf_chunks, render_knowledge
    from labtax.curate.mix import build_phases, phase1_order, phase_row_json
    from labtax.curate.seeds import seed_candidates, seed_sample
    from labtax.curate.settings import MixSettings
    from labtax.records.sample import Sample, sample_id
    from labtax.taxonomy.leaf import LeafKind

    if (out / "phase1_knowledge.jsonl").is_file():
        return out
    leaves = load_project_leaves(project)
    seeds = seed_candidates(leaves)  # what `labtax curate` adds with [mix] seeds, alone here
    knowledge = [c for c in seeds if c.kind == LeafKind.KNOWLEDGE]
    skills = [c for c in seeds if c.kind != LeafKind.KNOWLEDGE]
    documents: list[Sample] = []
    chunks, notes = leaf_chunks(leaves, project, settings)
    if notes:
        raise SystemExit("; ".join(notes))
    for leaf in leaves:
        for chunk in chunks.get(leaf.path, []):
            row = seed_sample(leaf, leaf.document_outline, chunk)
            documents.append(row.with_curation(sample_id=sample_id(row), form="document", train_all_tokens=True))
    rendered = render_knowledge(phase1_order(knowledge), chunks, settings, seed)
    mixed = build_phases([*documents, *rendered.rows], skills, [], MixSettings(), seed)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("phase1_knowledge.jsonl", mixed.phase1), ("phase2_skills.jsonl", mixed.phase2)):
        lines = [json.dumps(phase_row_json(row), ensure_ascii=False) for row in rows]
        (out / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return out


# --- training and scoring --------------------------------------------------------------------------


def hyperparameters(args: argparse.Namespace, seed: int) -> Any:
    from labtax.train.config import load_hyperparameters

    return load_hyperparameters(
        None,
        {
            "seed": seed, "max_length": args.batch_tokens, "learning_rate": args.lr, "warmup_steps": args.warmup,
            "micro_batch_tokens": args.batch_tokens, "gradient_accumulation_steps": 1,
            "phase1.epochs": args.epochs, "phase2.epochs": args.epochs, "checkpoint_every": 0, "keep_checkpoints": 1,
        },
    )  # fmt: skip


def train_and_score(
    model: Path, data: Path, work: Path, name: str, seed: int, args: argparse.Namespace
) -> dict[str, Any]:
    from labtax.train.config import TrainConfig
    from labtax.train.recipe import run_training

    started = time.monotonic()
    result = run_training(TrainConfig(str(model), data, work / "runs" / slug(name), hyperparameters(args, seed)))
    if result.final_model is None:
        raise SystemExit(f"{name}: training did not finish ({result.training_json})")
    seconds = time.monotonic() - started
    phases = {
        str(phase.phase): {
            "rows": phase.rows, "steps": phase.steps_done, "trained_tokens": phase.trained_tokens,
            "input_tokens": phase.input_tokens, "overlength": phase.overlength,
        }
        for phase in result.phases
    }  # fmt: skip
    return {
        "train_seconds": round(seconds),
        "phases": phases,
        "rows": rows_per_leaf(data),
        "scores": score(result.final_model, load_project_leaves(work / "project"), args),
    }


def rows_per_leaf(data: Path) -> dict[str, dict[str, int]]:
    """Training rows per leaf and phase file (replayed rows counted apart)."""
    counts: dict[str, dict[str, int]] = {}
    for path in sorted(data.glob("phase*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            metadata = json.loads(line).get("metadata", {})
            key = path.stem.split("_")[0] + (" replay" if metadata.get("replay") else "")
            leaf = counts.setdefault(metadata.get("leaf", "(none)"), {})
            leaf[key] = leaf.get(key, 0) + 1
    return counts


def score(model: Path, leaves: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    """Per leaf, what `labtax evaluate` reports (score_leaf), and each held-out question's own loss and F1."""
    from labtax.taxonomy.leaf import heldout_pairs
    from labtax.train.evaluate import ModelScorer, prompt_messages, score_leaf

    scorer = ModelScorer.load(str(model))
    scores: dict[str, Any] = {}
    try:
        for leaf in leaves:
            if not heldout_pairs(leaf):
                continue
            totals, answers = score_leaf(scorer, leaf, args.answer_tokens)
            losses = []
            for context, pair in heldout_pairs(leaf):
                nll, tokens = scorer.answer_nll(prompt_messages(leaf, context, pair), pair.answer)
                losses.append(nll / tokens)
            scores[leaf.path] = {
                "kind": str(leaf.kind), "loss": totals.loss, "f1": totals.f1, "tokens": totals.tokens,
                "question_losses": losses, "question_f1": [a.model.f1 for a in answers if a.model is not None],
                "answers": [a.model.answer for a in answers if a.model is not None],
            }  # fmt: skip
    finally:
        scorer.close()
    return scores


# --- the report ------------------------------------------------------------------------------------


def settings(
    args: argparse.Namespace, model: Path, leaves: list[str], seeds: list[int], seconds: float
) -> dict[str, Any]:
    import torch

    return {
        "model": model.name, "leaves": leaves, "target": args.target, "max_tokens": args.max_tokens,
        "judge_max_tokens": args.judge_max_tokens, "chunk_words": args.chunk_words, "raft_words": args.raft_words,
        "budget_factor": args.budget_factor, "epochs": args.epochs,
        "learning_rate": args.lr, "batch_tokens": args.batch_tokens, "warmup_steps": args.warmup, "seeds": seeds,
        "answer_tokens": args.answer_tokens, "threads": torch.get_num_threads(), "wall_seconds": round(seconds),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }  # fmt: skip


def render(results: dict[str, Any], leaves: list[Any]) -> str:
    from labtax.train.eval_stats import paired_difference

    base = results["base"]["scores"]
    arms = [name for name in results if name not in ("base", "settings", "generation")]
    lines = [
        "| leaf | kind | held-out | base loss | "
        + " | ".join(f"{a} loss (Δ vs base, 95 % CI)" for a in arms)
        + " | base F1 | "
        + " | ".join(f"{a} F1" for a in arms)
        + " |",
        "|---|---|--:|--:|" + "--:|" * len(arms) + "--:|" + "--:|" * len(arms),
    ]
    for leaf in leaves:
        if leaf.path not in base:
            continue
        b = base[leaf.path]
        cells = []
        for arm in arms:
            s = results[arm]["scores"][leaf.path]
            interval = paired_difference(s["question_losses"], b["question_losses"])
            enough = interval is not None and len(b["question_losses"]) >= 2  # one question has no interval
            ci = f", {interval.low:+.2f}..{interval.high:+.2f}" if enough and interval is not None else ""
            cells.append(f"{s['loss']:.3f} ({s['loss'] - b['loss']:+.3f}{ci})")
        f1 = [f"{results[a]['scores'][leaf.path]['f1']:.3f}" if b["f1"] is not None else "–" for a in arms]
        base_f1 = f"{b['f1']:.3f}" if b["f1"] is not None else "–"
        short = leaf.path.removesuffix("/qna.yaml").split("/")[-1]
        kind = "knowledge" if b["kind"] == "knowledge" else "skill"
        lines.append(
            f"| {short} | {kind} | {len(b['question_losses'])} | {b['loss']:.3f} | " + " | ".join(cells)
            + f" | {base_f1} | " + " | ".join(f1) + " |"
        )  # fmt: skip
    g = results["generation"]
    lines += [
        "",
        "| arm | teacher requests | samples generated → training rows | generation s | train s | steps (phase 1 + 2) "
        "| trained tokens |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for arm in arms:
        r = results[arm]
        steps = " + ".join(str(r["phases"].get(p, {}).get("steps", 0)) for p in ("1", "2"))
        tokens = sum(p["trained_tokens"] for p in r["phases"].values())
        rows = sum(n for leaf in r["rows"].values() for k, n in leaf.items() if "replay" not in k)
        generated = (g["requests"], g["kept"], g["seconds"]) if arm.startswith(LABTAX_ARM) else (0, "–", 0)
        lines.append(
            f"| {arm} | {generated[0]} | {generated[1]} → {rows} | {generated[2]} | {r['train_seconds']} | {steps} "
            f"| {tokens:,} |"
        )
    per_leaf = ", ".join(
        f"{leaf.removesuffix('/qna.yaml').split('/')[-1]} {row['kept']}/{row['target']} from {row['requests']} requests"
        for leaf, row in g["leaves"].items()
    )
    lines += ["", f"generation per leaf: {per_leaf}", "settings: " + json.dumps(results["settings"])]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
