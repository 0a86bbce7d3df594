"""Does every seed and document chunk fit the teacher's context with its prompt? (rule `context-fit`)

Generation shows the teacher one prompt per request: a template (labtax/sdg/prompts) filled with the
leaf's task description, seed examples (at least one: the request builder drops examples until the prompt
fits, but never the last) and, for knowledge, one chunk of the documents, plus room for the answer
(`max_tokens`). A seed or a chunk that cannot fit even alone would be refused by the server hundreds of
times before anyone noticed; this module finds it before the first request, for `labtax validate
--teacher-context N`, `labtax generate --dry-run` and the reviewer report.

Prompt sizes are estimated as the OpenAI-compatible client estimates them when the teacher's tokenizer is
not at hand (`labtax.sdg.openai_teacher.estimate_tokens`: an upper estimate, UTF-8 bytes / 3); the example
formats are those of labtax/sdg/skill_pipelines.py and knowledge_pipeline.py. Generated parts of a
prompt (a new instruction, a response) are counted as empty: what is reported can never fit, whatever the
teacher writes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from labtax.config import Config
from labtax.taxonomy.leaf import Leaf, LeafKind, QnaPair, SeedExample
from labtax.taxonomy.load import YamlPath

DEFAULT_MAX_TOKENS = 1024  # GenerationParams.max_tokens
DEFAULT_JUDGE_MAX_TOKENS = 256  # GenerationParams.judge_max_tokens
DEFAULT_CHUNK_WORDS = 400  # GenerationParams.chunk_size, in words (the chunker for a served teacher)
DEFAULT_CHUNK_OVERLAP = 50


@dataclass(frozen=True)
class FitSettings:
    """What a generation run would use; the defaults are GenerationParams' defaults."""

    context_length: int
    max_tokens: int = DEFAULT_MAX_TOKENS
    judge_max_tokens: int = DEFAULT_JUDGE_MAX_TOKENS
    chunk_size: int = DEFAULT_CHUNK_WORDS
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP


@dataclass(frozen=True)
class Misfit:
    """A part of a leaf that cannot fit: where it is, the request it fails in, and by how much."""

    where: YamlPath
    what: str  # "seed example 3", "chunk 2 of guide.md", "the task description"
    template: str
    prompt_tokens: int
    answer_tokens: int
    context_length: int

    @property
    def message(self) -> str:
        return (
            f"{self.what} cannot fit the teacher's context of {self.context_length} tokens: the "
            f"{self.template} prompt with it alone is about {self.prompt_tokens} tokens, plus {self.answer_tokens} "
            "for the answer; shorten it (or use a teacher with a longer context)"
        )


def _tokens(messages: Sequence[tuple[str, str]]) -> int:
    from labtax.sdg.openai_teacher import estimate_tokens

    return estimate_tokens(messages)


def _render(template: str, **values: object) -> tuple[tuple[str, str], ...]:
    from labtax.sdg.prompts import load_prompt

    return load_prompt(template).render(**values)


def _pair_example(pair: QnaPair) -> str:
    return f"Q: {pair.question}\nA: {pair.answer}"


def _response_example(seed: SeedExample) -> str:
    context = f"Context:\n{seed.context}\n" if seed.context else ""
    return f"{context}Instruction: {seed.qna[0].question}\nResponse: {seed.qna[0].answer}"


def misfits(leaf: Leaf, settings: FitSettings, documents: Sequence[tuple[str, str]] | None = None) -> list[Misfit]:
    """Every seed (and, given the documents' texts, every chunk) that cannot fit any request it is used in."""
    return list(_misfits(leaf, settings, documents))


def _misfits(leaf: Leaf, settings: FitSettings, documents: Sequence[tuple[str, str]] | None) -> Iterator[Misfit]:
    limit = settings.context_length

    def check(
        where: YamlPath, what: str, template: str, answer_tokens: int, values: Mapping[str, object]
    ) -> Misfit | None:
        tokens = _tokens(_render(template, **values))
        if tokens + answer_tokens > limit:
            return Misfit(where, what, template, tokens, answer_tokens, limit)
        return None

    task = leaf.task_description
    if leaf.kind is LeafKind.KNOWLEDGE:
        chunks = _chunks(documents, settings) if documents is not None else []
        smallest_pair = min((_pair_example(p) for p in leaf.qna_pairs), key=len, default="(none)")
        header: dict[str, object] = {"domain": leaf.domain, "outline": leaf.document_outline, "count": 3}
        for index, seed in enumerate(leaf.seed_examples):
            for pair in seed.qna:
                # The pair alone (an empty chunk): what is reported is the pair's own size, not a chunk's.
                values = {**header, "examples": _pair_example(pair), "chunk": ""}
                what = f"a question/answer pair of seed example {index + 1}"
                if found := check(("seed_examples", index), what, "knowledge_qa", settings.max_tokens, values):
                    yield found
                    break
        for what, text in chunks:
            generate = {**header, "examples": smallest_pair, "chunk": text}
            judge = {"chunk": text, "question": "", "answer": ""}
            found = check(("document", "patterns"), what, "knowledge_qa", settings.max_tokens, generate) or check(
                ("document", "patterns"), what, "knowledge_judge", settings.judge_max_tokens, judge
            )
            if found:
                yield found
        return
    judge_values: dict[str, object] = {"task_description": task, "instruction": ""}
    if found := check(
        ("task_description",), "the task description", "instruction_judge", settings.judge_max_tokens, judge_values
    ):
        yield found
        return
    for index, seed in enumerate(leaf.seed_examples):
        if not seed.qna:
            continue
        respond: dict[str, object] = {
            "task_description": task,
            "context_block": "",
            "instruction": "",
            "examples": _response_example(seed),
        }
        candidates: list[tuple[str, dict[str, object]]] = [("response", respond)]
        if leaf.kind is LeafKind.GROUNDED_SKILL and seed.context:
            contexts = {"task_description": task, "count": 3, "examples": f"- {seed.context}"}
            candidates.append(("grounded_contexts", contexts))
        else:
            instructions = {"task_description": task, "count": 5, "examples": f"- {seed.qna[0].question}"}
            candidates.append(("freeform_instructions", instructions))
        for template, values in candidates:
            if found := check(
                ("seed_examples", index), f"seed example {index + 1}", template, settings.max_tokens, values
            ):
                yield found
                break


def _chunks(documents: Sequence[tuple[str, str]], settings: FitSettings) -> list[tuple[str, str]]:
    from labtax.sdg.chunking import chunk_documents

    chunks = chunk_documents(documents, settings.chunk_size, settings.chunk_overlap)
    return [(f"chunk {chunk.index + 1} of {chunk.source}", chunk.text) for chunk in chunks]


def context_fit_problems(
    leaf: Leaf, context_length: int, documents: Sequence[tuple[str, str]] | None
) -> list[tuple[YamlPath, str]]:
    """(where, message) of every misfit with the default generation settings, for `labtax validate`."""
    return [(m.where, m.message) for m in misfits(leaf, FitSettings(context_length), documents)]


def leaf_misfits(
    leaf: Leaf, settings: FitSettings, project_root: Path, config: Config, *, remote: bool = True
) -> list[Misfit]:
    """`misfits` of one leaf, its knowledge documents read as generation reads them (labtax.documents;
    remote ones only with `remote`, since that may fetch); a document that cannot be read is left to
    validation to report."""
    from labtax.documents import inspect_documents

    texts = None
    if leaf.kind is LeafKind.KNOWLEDGE and leaf.document is not None and (remote or leaf.document.is_local):
        texts, _ = inspect_documents(project_root, leaf.document, timeout_s=config.fetch_timeout_s)
    return misfits(leaf, settings, texts)


def plan_misfits(leaves: Sequence[Leaf], settings: FitSettings, project_root: Path, config: Config) -> str:
    """Lines naming every seed and chunk of `leaves` that cannot fit (empty when all fit), for
    `labtax generate --dry-run`."""
    lines = []
    for leaf in leaves:
        found = leaf_misfits(leaf, settings, project_root, config)
        lines += [f"does not fit: {leaf.path}: {misfit.message}" for misfit in found]
    if lines:
        lines.insert(
            0,
            f"{len(lines)} seeds or document chunks cannot fit a teacher context of {settings.context_length} tokens "
            f"with their prompt and {settings.max_tokens} answer tokens (set the context with --teacher-context):",
        )
    return "\n".join(lines)
