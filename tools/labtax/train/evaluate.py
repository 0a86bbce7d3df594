"""`run_evaluation`: the new model, its base model and the previous release, leaf by leaf; the gate; eval.json.

What is measured (docs/evaluation.md has the method and its references):
- every leaf's held-out seed pairs (`labtax.taxonomy.leaf.heldout_pairs`, never shown to the teacher nor
  trained on): the loss of the reference answer given the prompt (the training mask,
  `labtax.train.data.encode_conversation`), and for knowledge leaves a greedy answer scored by exact
  match and token F1 (SQuAD's normalisation), asked closed-book;
- knowledge, MMLU-Branch style (instructlab/eval `MMLUBranchEvaluator`): multiple-choice questions the
  teacher wrote from the leaf's documents (`eval_teacher`), each model choosing by log-likelihood;
- skills, MT-Bench-Branch style (instructlab/eval `mt_bench_branch_generator`, `mt_bench_judgment`):
  every seed question of the leaf (the held-out one marked) answered by each model and rated 1-10 by the
  teacher against the seed's answer;
- optionally a general set (`--general FILE`, the release manager's) that guards against forgetting.

The models are the new one, the base it was trained from, and the previous release: scored here when
`previous_model` is given, else taken from the previous eval.json where its questions are the same. The
gate (`eval_gate`) compares the new model with the base model always (a first release is not waved
through) and with the previous release where it can; `eval_compare` makes the per-leaf table.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labtax.errors import LabtaxError, UsageError
from labtax.fileio import file_sha256, write_text_atomic
from labtax.records.base import RecordError
from labtax.records.evaluation import (
    MCQ_FILE,
    RATINGS_FILE,
    AnswerScore,
    ChoiceQuestion,
    ChoiceResult,
    Decoding,
    EvalReport,
    GateVerdict,
    GeneralEvaluation,
    HeldOutAnswer,
    JudgedQuestion,
    Judgment,
    LeafEvaluation,
    McqLeaf,
    McqSet,
    ModelAndBaseline,
    Rating,
    RatingSet,
    Scores,
    read_eval_report,
    read_mcq_set,
    read_rating_set,
    write_eval_report,
    write_mcq_set,
    write_rating_set,
)
from labtax.taxonomy.leaf import Leaf, LeafKind, QnaPair, heldout_pairs
from labtax.train.eval_compare import comparison_markdown, comparison_table
from labtax.train.eval_gate import GateThresholds, apply_gate, check_thresholds
from labtax.train.eval_stats import mean_interval, paired_difference, proportion_interval

if TYPE_CHECKING:
    from labtax.sdg.teacher_spec import TeacherSpec

__all__ = ["EvalConfig", "EvalResult", "GateThresholds", "run_evaluation"]


@dataclass(frozen=True)
class EvalConfig:
    model: str
    baseline: str
    output: Path
    taxonomy_root: Path | None = None
    previous: Path | None = None  # the previous release's eval.json
    thresholds: GateThresholds = field(default_factory=GateThresholds)
    max_new_tokens: int = 64  # knowledge and general answers
    training_data: Path | None = None  # DATA dir: count held-out questions found in its JSONL files
    progress: bool = False  # a progress bar per model on stderr
    previous_model: str | None = None  # the previous release's model, scored in this run too
    teacher: TeacherSpec | None = None  # writes the multiple-choice questions and judges skill answers
    general: Path | None = None  # the release manager's general set (JSONL)
    mcq_per_leaf: int = 20
    answer_tokens: int = 256  # skill answers the judge rates
    mcq_format: str = "cloze"  # "cloze" (choices as answers, length-normalised) | "mmlu" (choices listed)


@dataclass
class EvalResult:
    eval_json: Path
    eval_md: Path
    leaves: list[LeafEvaluation]
    model: Scores
    baseline: Scores
    gate: GateVerdict
    report: EvalReport | None = None
    notes: list[str] = field(default_factory=list)


# === the evaluation ===============================================================================


def run_evaluation(config: EvalConfig) -> EvalResult:
    """Score every model on every leaf, gate, write eval.json and eval.md (and mcq.json with a teacher)."""
    from labtax.config import load_config
    from labtax.train.base_model import resolve_model
    from labtax.validate import load_leaves

    check_thresholds(config.thresholds)
    if config.mcq_per_leaf < 1 or config.answer_tokens < 1 or config.max_new_tokens < 1:
        raise UsageError("--mcq-per-leaf, --answer-tokens and --max-new-tokens must be at least 1")
    if config.mcq_format not in MCQ_FORMATS:
        raise UsageError(f"--mcq-format must be one of {', '.join(MCQ_FORMATS)}")
    previous = read_previous(config.previous) if config.previous else None  # fail on a bad file before loading models
    general_items = read_general_set(config.general) if config.general else None
    if config.teacher is not None:
        config.teacher.validate()
    # Then the models: a mistyped path fails before any work, saying what it was taken for.
    resolve_model(config.model, role="--model")
    resolve_model(config.baseline, role="--baseline")
    if config.previous_model:
        resolve_model(config.previous_model, role="--previous-model")
    project = load_config(taxonomy=config.taxonomy_root)
    leaves = [leaf for leaf in load_leaves(project).leaves if heldout_pairs(leaf)]
    if not leaves:
        raise LabtaxError("no leaf has held-out seed examples to evaluate on (see docs/heldout.md); check --root")
    leaves.sort(key=lambda leaf: leaf.path)
    by_path = {leaf.path: leaf for leaf in leaves}
    evaluations = [
        LeafEvaluation(leaf.path, str(leaf.kind), leaf.leaf_hash, heldout_hash(leaf), len(heldout_pairs(leaf)))
        for leaf in leaves
    ]
    notes: list[str] = []
    if config.teacher is not None:
        prepare_teacher_questions(config, config.teacher, evaluations, by_path, project.project_root, notes)
    else:
        notes.append(
            "no teacher (--teacher-model): no multiple-choice (knowledge) or judge (skills) scores; "
            "held-out loss and token F1 only"
        )
    if config.training_data is not None:
        found = contamination(leaves, config.training_data)
        for evaluation in evaluations:
            evaluation.contaminated = found.get(evaluation.leaf, [])
    general = (
        GeneralEvaluation(str(config.general), file_sha256(config.general), len(general_items), Scores(), Scores())
        if config.general is not None and general_items is not None
        else None
    )
    roles = [("model", config.model), ("baseline", config.baseline)]
    if config.previous_model:
        roles.append(("previous", config.previous_model))
    for role, name in roles:
        score_model(config, role, name, evaluations, by_path, general, general_items or [])
    if config.teacher is not None:
        ratings = config.output.parent / RATINGS_FILE
        judge_answers(config.teacher, evaluations, by_path, [role for role, _ in roles], notes, ratings)
    previous_source = None
    if config.previous_model:
        previous_source = config.previous_model
        for evaluation in evaluations:
            evaluation.previous_source = "model"
    elif previous is not None:
        previous_source = str(config.previous)
        attach_previous(evaluations, previous)
    gate = apply_gate(evaluations, general, config.thresholds, previous_source)
    report = eval_record(config, evaluations, gate, general, notes)
    eval_md = config.output.with_suffix(".md")
    write_eval_report(config.output, report)
    write_text_atomic(eval_md, render_markdown(report))
    return EvalResult(
        config.output, eval_md, evaluations, report.overall.model, report.overall.baseline, report.gate, report, notes
    )


def heldout_hash(leaf: Leaf) -> str:
    """Identity of a leaf's held-out pairs: the gate compares a leaf across releases only when it is equal."""
    payload = [[context, pair.question, pair.answer] for context, pair in heldout_pairs(leaf)]
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode("utf-8")).hexdigest()


def judge_questions(leaf: Leaf) -> list[tuple[str, str, bool]]:
    """(question as asked, reference answer, held out) for every seed of a skill leaf: MT-Bench-Branch asks
    every seed question of a leaf, which gives each skill leaf five or more questions. Only the held-out
    seed was never shown to the teacher; the others were its in-context examples, never trained on."""
    if leaf.kind is LeafKind.KNOWLEDGE:
        return []
    held_out = {(context, pair) for context, pair in heldout_pairs(leaf)}
    return [
        (
            f"{seed.context}\n\n{pair.question}" if seed.context else pair.question,
            pair.answer,
            (seed.context, pair) in held_out,
        )
        for seed in leaf.seed_examples
        for pair in seed.qna
    ]


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
        for context, pair in heldout_pairs(leaf):
            question = normalise_answer(pair.question)
            if leaf.kind is LeafKind.GROUNDED_SKILL and context:
                # a grounded leaf repeats its instruction over many passages: the seed's passage must be there too
                passage = normalise_answer(context)
                hit = any(question in text and passage in text for text in user_texts)
            else:
                hit = bool(question) and any(question in text for text in user_texts)
            if hit:
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
            scored = score_answer(scorer, prompt, pair.answer, scores, max_new_tokens)
            answers.append(HeldOutAnswer(pair.question, pair.answer, model=scored))
    return scores, answers


def score_answer(
    scorer: ModelScorer, prompt: list[dict[str, str]], reference: str, scores: Scores, max_new_tokens: int
) -> AnswerScore:
    generated = scorer.generate(prompt, max_new_tokens)
    match, f1 = exact_match(generated, reference), token_f1(generated, reference)
    scores.answers += 1
    scores.exact_matches += int(match)
    scores.f1_sum += f1
    return AnswerScore(generated, match, f1)


def merge_answers(into: list[HeldOutAnswer], answers: list[HeldOutAnswer], role: str) -> None:
    """Record `answers` (scored as `model`) as `role`'s answers in `into`, question by question."""
    for index, answer in enumerate(answers):
        if len(into) <= index:
            into.append(HeldOutAnswer(answer.question, answer.reference))
        setattr(into[index], role, answer.model)


def score_model(
    config: EvalConfig,
    role: str,
    name: str,
    evaluations: list[LeafEvaluation],
    by_path: dict[str, Leaf],
    general: GeneralEvaluation | None,
    general_items: list[GeneralItem],
) -> None:
    """Everything one model is scored on, written into the records under `role`."""
    from tqdm.auto import tqdm

    from labtax.train.recipe import transformers_progress_bars

    with transformers_progress_bars(config.progress):
        scorer = ModelScorer.load(name)
    for evaluation in tqdm(evaluations, desc=role, unit="leaf", disable=not config.progress):
        leaf = by_path[evaluation.leaf]
        scores, answers = score_leaf(scorer, leaf, config.max_new_tokens)
        setattr(evaluation, role, scores)
        merge_answers(evaluation.answers, answers, role)
        for result in evaluation.mcq:
            pick = pick_choice(scorer, result.question, config.mcq_format)
            setattr(result, role, pick)
            scores.mcq_questions += 1
            scores.mcq_correct += int(pick == result.question.answer)
        for question in evaluation.judged:
            answer = scorer.generate([{"role": "user", "content": question.question}], config.answer_tokens)
            setattr(question, role, Judgment(answer, None))
    if general is not None:
        scores = Scores()
        setattr(general, role, scores)
        score_general(scorer, general, general_items, role, scores, config.max_new_tokens, config.mcq_format)
    scorer.close()


MCQ_FORMATS = ("cloze", "mmlu")


def mcq_prompt(question: ChoiceQuestion, mcq_format: str = "mmlu") -> str:
    """`mmlu`: MMLU's layout with the choices listed, as instructlab/sdg writes its branch tasks for
    lm-evaluation-harness. `cloze`: the question alone; each choice is then scored as the answer."""
    if mcq_format == "cloze":
        return f"Question: {question.question.strip()}\nAnswer:"
    letters = "ABCDEFGHIJ"
    options = "\n".join(f"{letters[i]}. {choice}" for i, choice in enumerate(question.choices))
    return f"{question.question.strip()}\n{options}\nAnswer:"


def pick_choice(scorer: ModelScorer, question: ChoiceQuestion, mcq_format: str) -> int:
    """The model's choice. `cloze` (the default): the highest log-likelihood per character of the choice
    as the answer (lm-evaluation-harness's `acc_norm`), the formulation in which models under a few
    billion parameters show what they know (OLMES, Gu et al. 2024: listed choices are near chance for
    them). `mmlu`: the choices listed, the highest summed log-likelihood (`acc`, InstructLab's task)."""
    cloze = mcq_format == "cloze"
    return scorer.choose(mcq_prompt(question, mcq_format), question.choices, per_character=cloze)


# === the teacher's questions and ratings ==========================================================


def prepare_teacher_questions(
    config: EvalConfig,
    teacher: TeacherSpec,
    evaluations: list[LeafEvaluation],
    by_path: dict[str, Leaf],
    project_root: Path,
    notes: list[str],
) -> None:
    """Multiple-choice questions for knowledge leaves (from mcq.json when current, else from the teacher)
    and the judged seed questions of skill leaves."""
    from labtax.sdg.teacher import TRANSPORT
    from labtax.train.eval_teacher import (
        McqSettings,
        ask_all,
        document_chunks,
        judge_key,
        mcq_chunks,
        mcq_key,
        mcq_questions,
        mcq_requests,
    )

    identity = teacher.identity()
    settings = McqSettings(per_leaf=config.mcq_per_leaf)
    path = config.output.parent / MCQ_FILE
    stored = _read_mcq(path, notes)
    sets: dict[str, McqLeaf] = {}
    wanted: list[tuple[Leaf, str, list[Any], list[str]]] = []
    for evaluation in evaluations:
        leaf = by_path[evaluation.leaf]
        if leaf.kind is LeafKind.KNOWLEDGE:
            key = mcq_key(leaf, identity, settings)
            if leaf.path in stored.leaves and stored.leaves[leaf.path].key == key:
                sets[leaf.path] = stored.leaves[leaf.path]
                continue
            try:
                chunks = document_chunks(leaf, project_root)
            except LabtaxError as exc:
                notes.append(f"no multiple-choice questions: {exc}")
                continue
            sources = [source for source, _ in mcq_chunks(chunks, settings)]
            wanted.append((leaf, key, mcq_requests(leaf, chunks, settings), sources))
        else:
            seeds = judge_questions(leaf)
            evaluation.judged = [JudgedQuestion(q, reference, held) for q, reference, held in seeds]
            evaluation.judge_hash = hashlib.sha256(
                json.dumps([judge_key(identity), seeds], ensure_ascii=False).encode("utf-8")
            ).hexdigest()
    answers = iter(ask_all(teacher, [r for _, _, requests, _ in wanted for r in requests]))
    keep: dict[str, McqLeaf] = {}
    for leaf, key, requests, sources in wanted:
        results = [next(answers) for _ in requests]
        questions, rejected = mcq_questions(results, sources, settings)
        if rejected:
            notes.append(f"{leaf.path}: {rejected} multiple-choice questions or teacher answers were unusable")
        if len(questions) < settings.per_leaf:
            notes.append(f"{leaf.path}: {len(questions)} multiple-choice questions, fewer than {settings.per_leaf}")
        sets[leaf.path] = McqLeaf(key, tuple(questions))
        # Kept for the next run unless empty or cut short by an unreachable teacher: then it is asked again.
        if questions and not any(result.error_kind == TRANSPORT for result in results):
            keep[leaf.path] = sets[leaf.path]
    if keep:
        write_mcq_set(path, McqSet({**stored.leaves, **keep}))
    for evaluation in evaluations:
        if evaluation.leaf in sets:
            made = sets[evaluation.leaf]
            evaluation.mcq_hash = made.key if made.questions else ""
            evaluation.mcq = [ChoiceResult(question) for question in made.questions]


def _read_ratings(path: Path, notes: list[str]) -> RatingSet:
    if not path.is_file():
        return RatingSet({})
    try:
        return read_rating_set(path)
    except RecordError as exc:
        notes.append(f"{path} was not reused ({exc}); answers were rated again")
        return RatingSet({})


def _read_mcq(path: Path, notes: list[str]) -> McqSet:
    if not path.is_file():
        return McqSet({})
    try:
        return read_mcq_set(path)
    except RecordError as exc:
        notes.append(f"{path} was not reused ({exc}); its questions were written again")
        return McqSet({})


def judge_answers(
    teacher: TeacherSpec,
    evaluations: list[LeafEvaluation],
    by_path: dict[str, Leaf],
    roles: Sequence[str],
    notes: list[str],
    ratings_file: Path,
) -> None:
    """The teacher rates every model's answer to every judged question; ratings are summed into Scores.

    A rating is kept in `ratings_file` by its request (teacher, prompt, question, reference, answer): the
    same answer is never rated twice (the base model's answers, every release; an unchanged model's)."""
    from labtax.train.eval_teacher import ask_all, judge_request, rating_of

    identity = teacher.identity()
    stored = _read_ratings(ratings_file, notes)
    jobs = []
    for evaluation in evaluations:
        for question in evaluation.judged:
            for role in roles:
                judgment = getattr(question, role)
                if judgment is not None:
                    leaf = by_path[evaluation.leaf]
                    request = judge_request(leaf, question.question, question.reference, judgment.answer)
                    jobs.append((evaluation, question, role, request, f"{identity}\0{request.key}"))
    asked = list({job[4]: job[3] for job in jobs if job[4] not in stored.ratings}.items())  # each answer once
    answered = dict(zip((key for key, _ in asked), ask_all(teacher, [request for _, request in asked]), strict=True))
    fresh: dict[str, Rating] = {}
    results: list[tuple[LeafEvaluation, JudgedQuestion, str, int | None, str]] = []
    for evaluation, question, role, _, key in jobs:
        if key in stored.ratings:
            results.append((evaluation, question, role, stored.ratings[key].rating, stored.ratings[key].explanation))
            continue
        rating, explanation = rating_of(answered[key])
        if rating is not None:
            fresh[key] = Rating(rating, explanation)
        results.append((evaluation, question, role, rating, explanation))
    if fresh:
        write_rating_set(ratings_file, RatingSet({**stored.ratings, **fresh}))
    failed = 0
    for evaluation, question, role, rating, explanation in results:
        answer = getattr(question, role).answer
        setattr(question, role, Judgment(answer, rating, explanation))
        if rating is None:
            failed += 1
            continue
        scores: Scores = getattr(evaluation, role)
        scores.judged += 1
        scores.judge_sum += rating
    if failed:
        notes.append(f"the judge gave no rating for {failed} of {len(jobs)} answers; they are left out of the scores")


def attach_previous(evaluations: list[LeafEvaluation], previous: EvalReport) -> None:
    """The previous release's scores (its `model` side), for the parts measured on the same questions:
    held-out pairs (`heldout_hash`), multiple-choice set (`mcq_hash`), judged questions and judge (`judge_hash`)."""
    earlier = {leaf.leaf: leaf for leaf in previous.leaves}
    for evaluation in evaluations:
        old = earlier.get(evaluation.leaf)
        if old is None:
            continue
        scores, comparable = Scores(), False
        if old.heldout_hash == evaluation.heldout_hash:
            comparable = True
            for name in ("tokens", "nll_sum", "answers", "exact_matches", "f1_sum"):
                setattr(scores, name, getattr(old.model, name))
            for answer, before in zip(evaluation.answers, old.answers, strict=False):
                if answer.question == before.question:
                    answer.previous = before.model
        if evaluation.mcq_hash and old.mcq_hash == evaluation.mcq_hash:
            comparable = True
            scores.mcq_questions, scores.mcq_correct = old.model.mcq_questions, old.model.mcq_correct
            picks = {result.question.id: result.model for result in old.mcq}
            for result in evaluation.mcq:
                result.previous = picks.get(result.question.id)
        if evaluation.judge_hash and old.judge_hash == evaluation.judge_hash:
            comparable = True
            scores.judged, scores.judge_sum = old.model.judged, old.model.judge_sum
            judged = {question.question: question.model for question in old.judged}
            for question in evaluation.judged:
                question.previous = judged.get(question.question)
        if comparable:
            evaluation.previous, evaluation.previous_source = scores, "eval.json"


# === the general set ==============================================================================


@dataclass(frozen=True)
class GeneralItem:
    line: int
    question: str
    answer: str  # the reference answer, or for a multiple-choice item the right choice's text
    choices: tuple[str, ...] = ()


def read_general_set(path: Path) -> list[GeneralItem]:
    """The general set: JSONL of {"question", "answer"} (scored by loss and token F1) or {"question",
    "choices", "answer": letter or index} (multiple choice). Errors name the file and line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"--general {path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise UsageError(f"--general {path}: not UTF-8 text; the general set is JSONL") from None
    items = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{where}: not JSON ({exc.msg}); each line is one question") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("question"), str) or not raw["question"].strip():
            raise UsageError(f'{where}: expected {{"question": "...", "answer": "..."}} (optionally "choices")')
        choices = raw.get("choices")
        answer = raw.get("answer")
        if choices is None:
            if not isinstance(answer, str) or not answer.strip():
                raise UsageError(f"{where}: 'answer' must be the reference answer text")
            items.append(GeneralItem(number, raw["question"], answer))
            continue
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
            raise UsageError(f"{where}: 'choices' must be a list of at least two non-empty strings")
        index = _choice_index(answer, len(choices))
        if index is None:
            raise UsageError(f"{where}: 'answer' must be the right choice's letter (A, B, ...) or 0-based index")
        items.append(GeneralItem(number, raw["question"], choices[index], tuple(choices)))
    if not items:
        raise UsageError(f"--general {path}: no questions in it")
    return items


def _choice_index(answer: object, count: int) -> int | None:
    if isinstance(answer, int) and not isinstance(answer, bool):
        return answer if 0 <= answer < count else None
    if isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip().upper().isalpha():
        index = ord(answer.strip().upper()) - ord("A")
        return index if index < count else None
    return None


def score_general(
    scorer: ModelScorer,
    general: GeneralEvaluation,
    items: Sequence[GeneralItem],
    role: str,
    scores: Scores,
    max_new_tokens: int,
    mcq_format: str = "cloze",
) -> None:
    mcq = [item for item in items if item.choices]
    free = [item for item in items if not item.choices]
    if not general.mcq and mcq:
        general.mcq = [
            ChoiceResult(ChoiceQuestion(f"line-{i.line}", i.question, i.choices, i.choices.index(i.answer), "general"))
            for i in mcq
        ]
    for result in general.mcq:
        pick = pick_choice(scorer, result.question, mcq_format)
        setattr(result, role, pick)
        scores.mcq_questions += 1
        scores.mcq_correct += int(pick == result.question.answer)
    answers = []
    for item in free:
        prompt = [{"role": "user", "content": item.question}]
        nll, tokens = scorer.answer_nll(prompt, item.answer)
        scores.nll_sum += nll
        scores.tokens += tokens
        scored = score_answer(scorer, prompt, item.answer, scores, max_new_tokens)
        answers.append(HeldOutAnswer(item.question, item.answer, model=scored))
    merge_answers(general.answers, answers, role)


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

    def choose(self, prompt: str, choices: Sequence[str], *, per_character: bool = False) -> int:
        """The choice with the highest log-likelihood as a continuation of `prompt`, summed over its tokens
        (lm-evaluation-harness's `acc`) or divided by its length in characters (`acc_norm`); the prompt is
        tokenised alone and each " choice" as what follows it, as the harness does."""
        import torch

        context = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        rows = []
        for choice in choices:
            whole = self.tokenizer(prompt + " " + choice, add_special_tokens=False)["input_ids"]
            start = len(context) if whole[: len(context)] == context else _common_prefix(whole, context)
            rows.append((whole, max(1, start)))
        width = max(len(whole) for whole, _ in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([whole + [pad] * (width - len(whole)) for whole, _ in rows], device=self.model.device)
        mask = torch.tensor([[1] * len(whole) + [0] * (width - len(whole)) for whole, _ in rows], device=ids.device)
        with torch.no_grad():
            logprobs = torch.log_softmax(self.model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        totals = []
        for row, (whole, start) in enumerate(rows):
            positions = torch.arange(start - 1, len(whole) - 1, device=ids.device)
            targets = ids[row, start : len(whole)]
            total = float(logprobs[row, positions, targets].sum())
            totals.append(total / max(1, len(choices[row]) + 1) if per_character else total)
        return max(range(len(totals)), key=lambda i: (totals[i], -i))

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


def _common_prefix(first: Sequence[int], second: Sequence[int]) -> int:
    length = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        length += 1
    return length


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


# === outputs ======================================================================================


def read_previous(path: Path) -> EvalReport:
    try:
        return read_eval_report(path)
    except RecordError as exc:
        raise UsageError(f"--previous: {exc}; pass the previous release's eval.json") from None


def eval_record(
    config: EvalConfig,
    evaluations: list[LeafEvaluation],
    gate: GateVerdict,
    general: GeneralEvaluation | None = None,
    notes: Sequence[str] = (),
) -> EvalReport:
    model, baseline = Scores(), Scores()
    previous = Scores() if any(e.previous is not None for e in evaluations) else None
    for evaluation in evaluations:
        model.add(evaluation.model)
        baseline.add(evaluation.baseline)
        if previous is not None and evaluation.previous is not None:
            previous.add(evaluation.previous)
    return EvalReport(
        model=config.model,
        baseline=config.baseline,
        split="labtax.taxonomy.leaf.heldout_pairs (docs/heldout.md)",
        generation=Decoding("greedy", config.max_new_tokens),
        training_data=str(config.training_data) if config.training_data else None,
        overall=ModelAndBaseline(model, baseline, previous),
        leaves=tuple(evaluations),
        gate=gate,
        teacher=config.teacher.identity() if config.teacher is not None else None,
        previous_model=config.previous_model,
        general=general,
        comparison=comparison_table(evaluations),
        notes=tuple(notes),
    )


def render_markdown(report: EvalReport) -> str:
    from labtax.markdown import code, text

    def number(value: float | None, digits: int = 3) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    lines = [f"# Evaluation of {code(report.model)}", ""]
    lines.append(f"Base model: {code(report.baseline)}.")
    if report.previous_model:
        lines.append(f"Previous release: {code(report.previous_model)} (scored in this run).")
    elif report.gate.previous:
        lines.append(f"Previous release: its recorded results, {code(report.gate.previous)}.")
    if report.teacher:
        lines.append(f"Teacher (question writer and judge): {code(report.teacher)}.")
    lines += ["", "## Per leaf: base model, previous release, new model", ""]
    lines.append(comparison_markdown(report.comparison))
    lines += _mcq_section(report) + _judge_section(report)
    lines += [
        "## Held-out seed examples",
        "",
        "Held-out seed examples per leaf (docs/heldout.md); loss and perplexity of the reference answers; "
        "knowledge leaves also answer greedily (closed book), scored by exact match and token F1.",
        "",
        "| leaf | kind | pairs | loss (base → model) | perplexity (base → model) "
        "| exact match (base → model) | F1 (base → model) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    rows = [(text(leaf.leaf), leaf.kind, leaf.pairs, leaf.baseline, leaf.model) for leaf in report.leaves]
    total_pairs = sum(leaf.pairs for leaf in report.leaves)
    rows.append(("**overall**", "", total_pairs, report.overall.baseline, report.overall.model))
    for name, kind, pairs, base, model in rows:
        lines.append(
            f"| {name} | {kind} | {pairs} | {number(base.loss)} → {number(model.loss)} "
            f"| {number(base.perplexity, 2)} → {number(model.perplexity, 2)} "
            f"| {number(base.exact_match)} → {number(model.exact_match)} "
            f"| {number(base.f1)} → {number(model.f1)} |"
        )
    if report.general is not None:
        lines += _general_section(report.general)
    gate = report.gate
    lines += ["", f"## Regression gate: {gate.status}", ""]
    if gate.compared_with:
        lines.append(f"Compared with: {', '.join(gate.compared_with)}.")
    if gate.previous:
        lines.append(f"Previous release: {code(gate.previous)}, {gate.compared_leaves} leaves comparable.")
    if gate.note:
        lines.append(gate.note[0].upper() + gate.note[1:] + ".")
    lines += [f"- {text(failure)}" for failure in gate.failures]  # they quote leaf paths: escaped
    if report.notes:
        lines += ["", "## Notes", "", *[f"- {text(note)}" for note in report.notes]]
    return "\n".join(lines) + "\n"


def _roles(report: EvalReport) -> list[tuple[str, str]]:
    roles = [("baseline", "base model")]
    if report.overall.previous is not None or report.previous_model:
        roles.append(("previous", "previous release"))
    return [*roles, ("model", "new model")]


def _mcq_section(report: EvalReport) -> list[str]:
    from labtax.markdown import text
    from labtax.train.eval_gate import mcq_pairs

    leaves = [leaf for leaf in report.leaves if leaf.mcq]
    if not leaves:
        return []
    roles = _roles(report)
    lines = [
        "## Knowledge: multiple-choice questions from the documents (MMLU-Branch style)",
        "",
        "Accuracy with its 95% Wilson interval; the change is the new model's over the base model on the same "
        "questions, with its 95% interval.",
        "",
        "| leaf | questions | " + " | ".join(label for _, label in roles) + " | change over base |",
        "|---|--:|" + "--:|" * len(roles) + "--:|",
    ]
    for leaf in leaves:
        cells = []
        for role, _ in roles:
            scores = getattr(leaf, role)
            interval = proportion_interval(scores.mcq_correct, scores.mcq_questions) if scores else None
            cells.append(interval.format(3) if interval else "–")
        difference = paired_difference(*mcq_pairs(leaf, "baseline"))
        change = f"{difference.mean:+.3f} [{difference.low:+.3f}, {difference.high:+.3f}]" if difference else "–"
        lines.append(f"| {text(leaf.leaf)} | {len(leaf.mcq)} | " + " | ".join(cells) + f" | {change} |")
    return [*lines, ""]


def _judge_section(report: EvalReport) -> list[str]:
    from labtax.markdown import text
    from labtax.train.eval_gate import judge_pairs

    leaves = [leaf for leaf in report.leaves if leaf.judged]
    if not leaves:
        return []
    roles = _roles(report)
    lines = [
        "## Skills: the teacher's rating of each answer, 1-10 (MT-Bench-Branch style)",
        "",
        "Every seed question of the leaf (the held-out ones were never shown to the teacher); the mean rating "
        "with its 95% t-interval, and the new model's change over the base model on the same questions.",
        "",
        "| leaf | questions (held out) | " + " | ".join(label for _, label in roles) + " | change over base |",
        "|---|--:|" + "--:|" * len(roles) + "--:|",
    ]
    for leaf in leaves:
        cells = []
        for role, _ in roles:
            ratings = [
                float(j.rating)
                for j in (getattr(q, role) for q in leaf.judged)
                if j is not None and j.rating is not None
            ]
            interval = mean_interval(ratings)
            cells.append(interval.format(2) if interval else "–")
        difference = paired_difference(*judge_pairs(leaf, "baseline"))
        change = f"{difference.mean:+.2f} [{difference.low:+.2f}, {difference.high:+.2f}]" if difference else "–"
        held = sum(q.held_out for q in leaf.judged)
        lines.append(f"| {text(leaf.leaf)} | {len(leaf.judged)} ({held}) | " + " | ".join(cells) + f" | {change} |")
    return [*lines, ""]


def _general_section(general: GeneralEvaluation) -> list[str]:
    def number(value: float | None) -> str:
        return "–" if value is None else f"{value:.3f}"

    lines = ["", f"## General set: `{general.file}` ({general.questions} questions)", ""]
    lines += ["| model | loss | token F1 | multiple-choice accuracy |", "|---|--:|--:|--:|"]
    for label, scores in (("base model", general.baseline), ("previous release", general.previous),
                          ("new model", general.model)):  # fmt: skip
        if scores is not None:
            lines.append(f"| {label} | {number(scores.loss)} | {number(scores.f1)} | {number(scores.mcq_accuracy)} |")
    return lines
