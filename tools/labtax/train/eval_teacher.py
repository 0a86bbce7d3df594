"""The teacher's two jobs in evaluation, through the project's teacher client (`labtax.sdg.teacher_spec`:
an OpenAI-compatible server or a local transformers model):

- MMLU-Branch-style questions (instructlab/eval `mmlu.py` `MMLUBranchEvaluator` on the questions
  instructlab/sdg `eval_data.py` generates with its `mcq_generation` prompt): for each knowledge leaf,
  multiple-choice questions written from the chunks of its pinned documents (cut as generation cuts
  them), four choices each, shuffled with a seed taken from the question so the right one's place is no
  cue. Kept in `mcq.json` under a key of everything that made them, so a re-run, the base model, the
  previous and the new model all answer the very same questions.
- MT-Bench-Branch-style ratings (instructlab/eval `mt_bench_branch_generator.py`, `mt_bench_judgment.py`):
  the teacher rates each model's answer to a skill leaf's seed question 1-10 against the seed's answer,
  explaining first.

Requests are `TeacherRequest`s (temperature 0, a seed from the request key), answered concurrently; a
failed request is counted, never fatal: a question the teacher could not write is left out, an answer it
could not rate has no rating.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labtax.records.evaluation import ChoiceQuestion
from labtax.taxonomy.leaf import Leaf
from labtax.text import normalise

if TYPE_CHECKING:
    from labtax.sdg.prompts import PromptTemplate
    from labtax.sdg.teacher import TeacherRequest, TeacherResult
    from labtax.sdg.teacher_spec import TeacherSpec

PROMPT_DIR = Path(__file__).resolve().parent / "eval_prompts"
LETTERS = "ABCD"


@dataclass(frozen=True)
class EvalPrompt:
    """An evaluation prompt: the chat template and the JSON Schema its answer must follow (sent as
    `response_format`; the evaluation's teacher is a capable one, unlike generation's small-teacher formats)."""

    template: PromptTemplate
    schema: dict[str, Any]

    @property
    def name(self) -> str:
        return self.template.name

    @property
    def label(self) -> str:
        return self.template.label

    def digest(self) -> str:
        """The template's digest with the schema: a cached question set follows both."""
        text = f"{self.template.digest()}\0{json.dumps(self.schema, sort_keys=True)}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@functools.cache
def load_eval_prompt(name: str) -> EvalPrompt:
    import yaml

    from labtax.sdg.answer_parsing import ANY_TEXT, AnswerFormat
    from labtax.sdg.prompts import PromptTemplate

    raw = yaml.safe_load((PROMPT_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    template = PromptTemplate(
        str(raw["name"]), int(raw["version"]), str(raw["system"]), str(raw["user"]), AnswerFormat(ANY_TEXT)
    )
    return EvalPrompt(template, dict(raw["schema"]))


def request(prompt: EvalPrompt, slot: str, values: dict[str, object], max_tokens: int) -> TeacherRequest:
    from labtax.sdg.teacher import TeacherRequest

    messages = prompt.template.render(**values)
    key = hashlib.sha256(json.dumps([slot, messages], ensure_ascii=False).encode("utf-8")).hexdigest()[:24]
    return TeacherRequest(key, prompt.name, messages, prompt.schema, max_tokens, 0.0, int(key[:8], 16))


def ask_all(spec: TeacherSpec, requests: Sequence[TeacherRequest]) -> list[TeacherResult]:
    """Answers in the order of `requests` (a failure is a result with `ok` False)."""
    if not requests:
        return []

    async def run() -> list[TeacherResult]:
        async with spec.open() as teacher:
            return list(await asyncio.gather(*(teacher.complete(r) for r in requests)))

    return asyncio.run(run())


# --- multiple-choice questions -----------------------------------------------------------------------


@dataclass(frozen=True)
class McqSettings:
    per_leaf: int = 20  # questions per knowledge leaf (instructlab's branch tasks hold a few dozen)
    max_tokens: int = 1024


def document_chunks(leaf: Leaf, project_root: Path) -> list[tuple[str, str]]:
    """(source, text) of the leaf's document chunks, cut as generation cuts them (its default chunk size)."""
    from labtax.documents import DocumentError, document_text, read_documents
    from labtax.errors import LabtaxError
    from labtax.sdg.chunking import chunk_documents
    from labtax.sdg.params import GenerationParams

    if leaf.document is None:
        return []
    try:  # from git objects, and PDFs as text, exactly as generation reads them
        texts = [(d.path, document_text(d)) for d in read_documents(project_root, leaf.document)]
    except DocumentError as exc:
        raise LabtaxError(f"{leaf.path}: {exc}") from None
    params = GenerationParams()
    return [
        (f"{chunk.source}#{chunk.index}", chunk.text)
        for chunk in chunk_documents(texts, params.chunk_size, params.chunk_overlap)
    ]


def mcq_key(leaf: Leaf, teacher: str, settings: McqSettings) -> str:
    """What the questions depend on: what reaches the teacher (the domain, the outline, the pinned
    documents), the teacher, the prompt and the settings. Not the leaf hash: a metadata-only edit of the
    leaf (its author, a comment) keeps the questions, as it keeps the generated data (labtax.sdg.inputs)."""
    from dataclasses import asdict

    from labtax.sdg.inputs import inputs_for
    from labtax.sdg.params import GenerationParams

    template = load_eval_prompt("eval_mcq")
    params = GenerationParams()
    inputs = inputs_for(leaf)
    asked = [inputs.domain, inputs.document_outline, asdict(inputs.document) if inputs.document else None]
    material = [asked, teacher, template.label, template.digest(), settings.per_leaf]
    material += [params.chunk_size, params.chunk_overlap]
    return hashlib.sha256(json.dumps(material).encode("utf-8")).hexdigest()


def mcq_chunks(chunks: Sequence[tuple[str, str]], settings: McqSettings) -> list[tuple[str, str]]:
    """The chunks asked about: all of them, or for a long document `per_leaf` of them evenly spaced."""
    if len(chunks) <= settings.per_leaf:
        return list(chunks)
    step = len(chunks) / settings.per_leaf
    return [chunks[int(i * step)] for i in range(settings.per_leaf)]


def mcq_requests(leaf: Leaf, chunks: Sequence[tuple[str, str]], settings: McqSettings) -> list[TeacherRequest]:
    """Enough requests to reach `per_leaf` questions, spread over the chunks (a few questions each); one
    request per chunk of `mcq_chunks(chunks)`, in its order."""
    template = load_eval_prompt("eval_mcq")
    if not chunks:
        return []
    chunks = mcq_chunks(chunks, settings)
    per_chunk = max(1, -(-settings.per_leaf // len(chunks)))
    return [
        request(
            template,
            f"{leaf.path}/mcq/{source}",
            {"domain": leaf.domain, "outline": leaf.document_outline, "chunk": text, "count": per_chunk},
            settings.max_tokens,
        )
        for source, text in chunks
    ]


def mcq_questions(
    results: Sequence[TeacherResult], sources: Sequence[str], settings: McqSettings
) -> tuple[list[ChoiceQuestion], int]:
    """Valid, distinct questions from the teacher's answers (round-robin over chunks, so every part of the
    documents is asked about), at most `per_leaf`; and how many answers or questions were unusable."""
    per_source: list[list[ChoiceQuestion]] = []
    rejected = 0
    seen: set[str] = set()
    for result, source in zip(results, sources, strict=True):
        found: list[ChoiceQuestion] = []
        if not result.ok or result.data is None:
            rejected += 1
            per_source.append(found)
            continue
        for item in result.data.get("questions", []):
            question = choice_question(item, source)
            if question is None or question.id in seen:
                rejected += 1
                continue
            seen.add(question.id)
            found.append(question)
        per_source.append(found)
    chosen: list[ChoiceQuestion] = []
    depth = 0
    while len(chosen) < settings.per_leaf and any(depth < len(found) for found in per_source):
        chosen.extend(found[depth] for found in per_source if depth < len(found))
        depth += 1
    return chosen[: settings.per_leaf], rejected


def choice_question(item: Any, source: str) -> ChoiceQuestion | None:
    """A usable question: four distinct non-empty choices and a valid answer letter; choices shuffled."""
    if not isinstance(item, dict):
        return None
    question = str(item.get("question", "")).strip()
    choices = [str(c).strip() for c in item.get("choices", []) if isinstance(c, str | int | float)]
    letter = str(item.get("answer", "")).strip().upper()[:1]
    if not question or len(choices) != 4 or not all(choices) or letter not in LETTERS:
        return None
    if len({normalise(c) for c in choices}) != 4:
        return None
    right = choices[LETTERS.index(letter)]
    order = list(range(4))
    random.Random(hashlib.sha256(question.encode("utf-8")).hexdigest()).shuffle(order)
    shuffled = tuple(choices[i] for i in order)
    identity = hashlib.sha256(
        json.dumps([normalise(question), sorted(normalise(c) for c in choices)]).encode("utf-8")
    ).hexdigest()[:16]
    return ChoiceQuestion(identity, question, shuffled, shuffled.index(right), source)


# --- judging skill answers ---------------------------------------------------------------------------


def judge_key(teacher: str) -> str:
    template = load_eval_prompt("eval_judge")
    return f"{teacher}\0{template.label}\0{template.digest()}"


def judge_request(leaf: Leaf, question: str, reference: str, answer: str, max_tokens: int = 512) -> TeacherRequest:
    values = {"task_description": leaf.task_description, "question": question, "reference": reference}
    return request(load_eval_prompt("eval_judge"), f"{leaf.path}/judge", {**values, "answer": answer}, max_tokens)


def rating_of(result: TeacherResult) -> tuple[int | None, str]:
    if not result.ok or result.data is None:
        return None, f"judge failed: {result.error_kind}: {result.error}"
    rating = result.data.get("rating")
    explanation = str(result.data.get("explanation", ""))
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 10:
        return None, f"judge gave no 1-10 rating: {rating!r}"
    return rating, explanation
