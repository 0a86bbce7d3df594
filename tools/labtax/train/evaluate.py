"""Per-leaf evaluation on held-out seed examples, and the regression gate against the previous release.

For every leaf, the held-out pairs (`labtax.taxonomy.leaf.heldout_pairs`, docs/heldout.md: never shown
to the teacher nor trained on) are scored twice, for the trained model and for the baseline:
- loss and perplexity of the reference answer given the prompt (mean over the answer's tokens, the
  same assistant-token mask as training, `labtax.train.data.encode_conversation`);
- for knowledge leaves, a greedy answer scored against the reference: exact match and token F1 with
  SQuAD's normalisation (lower case, no punctuation, no articles, single spaces).

The gate compares the trained model with the trained model of the previous release's eval.json, on the
leaves whose held-out pairs are unchanged (same `heldout_hash`), with thresholds from `GateThresholds`.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from labtax.errors import LabtaxError, UsageError
from labtax.fileio import write_text_atomic
from labtax.records.base import RecordError
from labtax.records.evaluation import (
    AnswerScore,
    Decoding,
    EvalReport,
    GateVerdict,
    HeldOutAnswer,
    LeafEvaluation,
    ModelAndBaseline,
    Scores,
    read_eval_report,
    write_eval_report,
)
from labtax.taxonomy.leaf import Leaf, LeafKind, QnaPair, heldout_pairs


@dataclass(frozen=True)
class GateThresholds:
    """How much worse than the previous release the new model may be before the gate fails."""

    max_loss_increase: float = 0.05  # relative rise of the held-out loss over all compared leaves
    max_leaf_loss_increase: float = 0.25  # relative rise of one leaf's held-out loss
    max_exact_match_drop: float = 0.05  # absolute drop of the knowledge exact-match rate (0..1)
    max_f1_drop: float = 0.05  # absolute drop of the mean knowledge token F1 (0..1)


@dataclass(frozen=True)
class EvalConfig:
    model: str
    baseline: str
    output: Path
    taxonomy_root: Path | None = None
    previous: Path | None = None
    thresholds: GateThresholds = GateThresholds()
    max_new_tokens: int = 64
    training_data: Path | None = None  # DATA dir: count held-out questions found in its JSONL files
    progress: bool = False  # a progress bar per model on stderr


@dataclass
class EvalResult:
    eval_json: Path
    eval_md: Path
    leaves: list[LeafEvaluation]
    model: Scores
    baseline: Scores
    gate: GateVerdict


# === the evaluation ===============================================================================


def run_evaluation(config: EvalConfig) -> EvalResult:
    """Score the model and the baseline on every leaf's held-out pairs, gate, write eval.json and eval.md."""
    from labtax.config import load_config
    from labtax.train.base_model import resolve_model
    from labtax.validate import load_leaves

    check_thresholds(config.thresholds)
    previous = read_previous(config.previous) if config.previous else None  # fail on a bad file before loading models
    resolve_model(config.model, role="--model")  # a mistyped path fails before any work, saying what it was taken for
    resolve_model(config.baseline, role="--baseline")
    leaves = [leaf for leaf in load_leaves(load_config(taxonomy=config.taxonomy_root)).leaves if heldout_pairs(leaf)]
    if not leaves:
        raise LabtaxError("no leaf has held-out seed examples to evaluate on (see docs/heldout.md); check --root")
    evaluations = [
        LeafEvaluation(leaf.path, str(leaf.kind), leaf.leaf_hash, heldout_hash(leaf), len(heldout_pairs(leaf)))
        for leaf in sorted(leaves, key=lambda leaf: leaf.path)
    ]
    by_path = {leaf.path: leaf for leaf in leaves}
    if config.training_data is not None:
        found = contamination(leaves, config.training_data)
        for evaluation in evaluations:
            evaluation.contaminated = found.get(evaluation.leaf, [])
    from tqdm.auto import tqdm

    from labtax.train.recipe import transformers_progress_bars

    for role in ("model", "baseline"):
        with transformers_progress_bars(config.progress):
            scorer = ModelScorer.load(config.model if role == "model" else config.baseline)
        for evaluation in tqdm(evaluations, desc=role, unit="leaf", disable=not config.progress):
            scores, answers = score_leaf(scorer, by_path[evaluation.leaf], config.max_new_tokens)
            setattr(evaluation, role, scores)
            merge_answers(evaluation.answers, answers, role)
        scorer.close()
    model_total, baseline_total = Scores(), Scores()
    for evaluation in evaluations:
        model_total.add(evaluation.model)
        baseline_total.add(evaluation.baseline)
    gate = apply_gate(evaluations, previous, config)
    report = eval_record(config, evaluations, model_total, baseline_total, gate)
    eval_md = config.output.with_suffix(".md")
    write_eval_report(config.output, report)
    write_text_atomic(eval_md, render_markdown(report))
    return EvalResult(config.output, eval_md, evaluations, model_total, baseline_total, gate)


def check_thresholds(thresholds: GateThresholds) -> None:
    negative = [name for name, value in asdict(thresholds).items() if value < 0]
    if negative:
        raise UsageError(f"gate thresholds must be 0 or more: {', '.join(negative)}")


def heldout_hash(leaf: Leaf) -> str:
    """Identity of a leaf's held-out pairs: the gate compares a leaf across releases only when it is equal."""
    payload = [[context, pair.question, pair.answer] for context, pair in heldout_pairs(leaf)]
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode("utf-8")).hexdigest()


def contamination(leaves: list[Leaf], data_dir: Path) -> dict[str, list[str]]:
    """Held-out questions that occur (normalised, as a substring) in a user turn of the training data.

    Generation and curation already keep them out (docs/heldout.md); this is the independent check
    that the numbers below measure unseen questions.
    """
    from labtax.train.data import read_sample_rows

    files = sorted(data_dir.glob("*.jsonl")) if data_dir.is_dir() else []
    if not files:
        raise UsageError(f"--data {data_dir}: no .jsonl training files there; pass the DATA directory of labtax curate")
    user_texts = [
        normalise_answer(message["content"])
        for file in files
        for row in read_sample_rows(file)
        for message in row["messages"]
        if message["role"] == "user"
    ]
    found: dict[str, list[str]] = {}
    for leaf in leaves:
        for _, pair in heldout_pairs(leaf):
            question = normalise_answer(pair.question)
            if question and any(question in text for text in user_texts):
                found.setdefault(leaf.path, []).append(pair.question)
    return found


def prompt_messages(leaf: Leaf, context: str | None, pair: QnaPair) -> list[dict[str, str]]:
    """Knowledge is asked closed-book (the point is what the model learned); skills get their context."""
    if leaf.kind is LeafKind.KNOWLEDGE or not context:
        return [{"role": "user", "content": pair.question}]
    return [{"role": "user", "content": f"{context}\n\n{pair.question}"}]


def score_leaf(scorer: ModelScorer, leaf: Leaf, max_new_tokens: int) -> tuple[Scores, list[HeldOutAnswer]]:
    """The leaf's scores, and for knowledge leaves each held-out question's greedy answer (as `model`)."""
    scores = Scores()
    answers: list[HeldOutAnswer] = []
    for context, pair in heldout_pairs(leaf):
        prompt = prompt_messages(leaf, context, pair)
        nll, tokens = scorer.answer_nll(prompt, pair.answer)
        scores.nll_sum += nll
        scores.tokens += tokens
        if leaf.kind is LeafKind.KNOWLEDGE:
            generated = scorer.generate(prompt, max_new_tokens)
            match, f1 = exact_match(generated, pair.answer), token_f1(generated, pair.answer)
            scores.answers += 1
            scores.exact_matches += int(match)
            scores.f1_sum += f1
            answers.append(HeldOutAnswer(pair.question, pair.answer, model=AnswerScore(generated, match, f1)))
    return scores, answers


def merge_answers(into: list[HeldOutAnswer], answers: list[HeldOutAnswer], role: str) -> None:
    """Record `answers` (scored as `model`) as `role`'s answers in `into`, question by question."""
    for index, answer in enumerate(answers):
        if len(into) <= index:
            into.append(HeldOutAnswer(answer.question, answer.reference))
        setattr(into[index], role, answer.model)


# === one model ====================================================================================


class ModelScorer:
    """A model and its tokenizer on the best device: bf16 on a CUDA GPU, fp32 on CPU."""

    def __init__(self, name: str, model: Any, tokenizer: Any) -> None:
        self.name = name
        self.model = model
        self.tokenizer = tokenizer

    @classmethod
    def load(cls, name: str) -> ModelScorer:
        from labtax.train.recipe import check_trained_model

        check_trained_model(Path(name))  # an unfinished or changed training output is never scored
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cuda = torch.cuda.is_available()
        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
            model: Any = AutoModelForCausalLM.from_pretrained(name, dtype=torch.bfloat16 if cuda else torch.float32)
        except (OSError, ValueError) as exc:
            raise LabtaxError(f"cannot load the model {name!r} ({exc}); pass a model directory or Hub id") from None
        if not getattr(tokenizer, "chat_template", None):
            raise UsageError(f"{name} has no chat template; evaluate a chat model")
        model.to("cuda" if cuda else "cpu").eval()
        return cls(name, model, tokenizer)

    def answer_nll(self, prompt: list[dict[str, str]], answer: str) -> tuple[float, int]:
        """Summed negative log-likelihood of the assistant turn `answer` after `prompt`, and its token count."""
        import torch
        import torch.nn.functional as F

        from labtax.train.data import IGNORE_INDEX, encode_conversation

        input_ids, targets = encode_conversation(
            self.tokenizer, [*prompt, {"role": "assistant", "content": answer}], assistant_only_loss=True
        )
        device = self.model.device
        with torch.no_grad():
            logits = self.model(input_ids=torch.tensor([input_ids], device=device)).logits.float()
        target = torch.tensor(targets, device=device)
        nll = F.cross_entropy(logits[0], target, ignore_index=IGNORE_INDEX, reduction="sum")
        return float(nll), int((target != IGNORE_INDEX).sum())

    def generate(self, prompt: list[dict[str, str]], max_new_tokens: int) -> str:
        import torch

        inputs = self.tokenizer.apply_chat_template(
            prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        inputs = {key: value.to(self.model.device) for key, value in inputs.items()}
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.no_grad():
            output = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        return str(self.tokenizer.decode(new_tokens, skip_special_tokens=True)).strip()

    def close(self) -> None:
        import gc

        import torch

        del self.model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# === answer scoring (SQuAD's definitions) =========================================================

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise_answer(text: str) -> str:
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def exact_match(prediction: str, reference: str) -> bool:
    return normalise_answer(prediction) == normalise_answer(reference)


def token_f1(prediction: str, reference: str) -> float:
    predicted, expected = normalise_answer(prediction).split(), normalise_answer(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


# === the gate =====================================================================================


def read_previous(path: Path) -> EvalReport:
    try:
        return read_eval_report(path)
    except RecordError as exc:
        raise UsageError(f"--previous: {exc}; pass the previous release's eval.json") from None


def apply_gate(evaluations: list[LeafEvaluation], previous: EvalReport | None, config: EvalConfig) -> GateVerdict:
    thresholds = asdict(config.thresholds)
    if previous is None:
        return GateVerdict(
            "skipped", None, note="no --previous eval.json: nothing to compare against", thresholds=thresholds
        )
    source = str(config.previous)
    earlier = {leaf.leaf: leaf for leaf in previous.leaves}
    pairs = [
        (e, earlier[e.leaf])
        for e in evaluations
        if e.leaf in earlier and earlier[e.leaf].heldout_hash == e.heldout_hash
    ]
    if not pairs:
        return GateVerdict(
            "skipped", source, note="no leaf with unchanged held-out pairs in both evaluations", thresholds=thresholds
        )
    t = config.thresholds
    failures: list[str] = []
    now_total, then_total = Scores(), Scores()
    for current, old in pairs:
        then = old.model
        now_total.add(current.model)
        then_total.add(then)
        rise = relative_rise(current.model.loss, then.loss)
        if rise is not None and rise > t.max_leaf_loss_increase:
            failures.append(
                f"{current.leaf}: held-out loss rose {rise:.1%} ({then.loss:.4f} -> {current.model.loss:.4f}), "
                f"more than the allowed {t.max_leaf_loss_increase:.1%}"
            )
    rise = relative_rise(now_total.loss, then_total.loss)
    if rise is not None and rise > t.max_loss_increase:
        failures.insert(
            0,
            f"overall held-out loss rose {rise:.1%} ({then_total.loss:.4f} -> {now_total.loss:.4f}),"
            f" more than the allowed {t.max_loss_increase:.1%}",
        )
    for label, now_rate, then_rate, allowed in (
        ("exact match", now_total.exact_match, then_total.exact_match, t.max_exact_match_drop),
        ("token F1", now_total.f1, then_total.f1, t.max_f1_drop),
    ):
        if now_rate is not None and then_rate is not None and then_rate - now_rate > allowed:
            failures.append(
                f"knowledge {label} fell {then_rate - now_rate:.3f} ({then_rate:.3f} -> {now_rate:.3f}),"
                f" more than the allowed {allowed:.3f}"
            )
    return GateVerdict("fail" if failures else "pass", source, len(pairs), failures, thresholds=thresholds)


def relative_rise(now: float | None, then: float | None) -> float | None:
    if now is None or then is None or then <= 0:
        return None
    return (now - then) / then


# === outputs ======================================================================================


def eval_record(
    config: EvalConfig, evaluations: list[LeafEvaluation], model: Scores, baseline: Scores, gate: GateVerdict
) -> EvalReport:
    return EvalReport(
        model=config.model,
        baseline=config.baseline,
        split="labtax.taxonomy.leaf.heldout_pairs (docs/heldout.md)",
        generation=Decoding("greedy", config.max_new_tokens),
        training_data=str(config.training_data) if config.training_data else None,
        overall=ModelAndBaseline(model, baseline),
        leaves=tuple(evaluations),
        gate=gate,
    )


def render_markdown(report: EvalReport) -> str:
    def number(value: float | None, digits: int = 3) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    lines = [
        f"# Evaluation of `{report.model}`",
        "",
        f"Baseline: `{report.baseline}`. Held-out seed examples per leaf (docs/heldout.md); loss and perplexity "
        "of the reference answers; knowledge leaves also answer greedily, scored by exact match and token F1.",
        "",
        "| leaf | kind | pairs | loss (base → model) | perplexity (base → model) "
        "| exact match (base → model) | F1 (base → model) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    rows = [(leaf.leaf, leaf.kind, leaf.pairs, leaf.baseline, leaf.model) for leaf in report.leaves]
    total_pairs = sum(leaf.pairs for leaf in report.leaves)
    rows.append(("**overall**", "", total_pairs, report.overall.baseline, report.overall.model))
    for name, kind, pairs, base, model in rows:
        lines.append(
            f"| {name} | {kind} | {pairs} | {number(base.loss)} → {number(model.loss)} "
            f"| {number(base.perplexity, 2)} → {number(model.perplexity, 2)} "
            f"| {number(base.exact_match)} → {number(model.exact_match)} "
            f"| {number(base.f1)} → {number(model.f1)} |"
        )
    gate = report.gate
    lines += ["", f"## Regression gate: {gate.status}", ""]
    if gate.previous:
        lines.append(f"Compared with `{gate.previous}` on {gate.compared_leaves} leaves with unchanged held-out pairs.")
    if gate.note:
        lines.append(gate.note.capitalize() + ".")
    lines += [f"- {failure}" for failure in gate.failures]
    return "\n".join(lines) + "\n"
