"""The LAB knowledge pipeline (Knowledge-SDG), streaming: question-answer pairs per document chunk
(training seeds as in-context examples), then InstructLab's three judges in turn, each reasoning before
its verdict: faithfulness to the passage (YES), relevance of the answer (0-2, keep the top score 2 by
default) and the question's quality on its own (0/1, keep 1). A pair stops at the first judge it fails.
Chunks are taken in order, request after request, so every part of the documents is used.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

from labtax.records.sample import ANSWER, QUESTION, TeacherExchange
from labtax.sdg.chunking import Chunk
from labtax.sdg.inputs import GenerationInputs
from labtax.sdg.leaf_run import LeafRun, Lineage, Reservation, Source
from labtax.sdg.prompts import load_prompt


def pair_example(question: str, answer: str) -> str:
    """A seed's question-answer pair as the knowledge prompt shows it (also measured by context_fit)."""
    return f"Q: {question}\nA: {answer}"


def _examples(inputs: GenerationInputs) -> list[tuple[str, str]]:
    return [(e.seed_id, pair_example(e.question, e.answer)) for e in inputs.knowledge_examples]


def knowledge_source(chunks: Sequence[Chunk]) -> Source:
    """The first stage of a knowledge leaf over its `chunks`: request `number` asks about chunk `number`."""

    async def source(run: LeafRun, number: int, reservation: Reservation) -> None:
        inputs, params = run.inputs, run.params
        chunk = chunks[number % len(chunks)]
        template = load_prompt("knowledge_qa")
        count = params.pairs_per_chunk
        request = run.build_request(
            template,
            f"{number}/qa",
            {"domain": inputs.domain, "outline": inputs.document_outline, "chunk": chunk.text, "count": count},
            run.pick(_examples(inputs), f"{number}/qa"),
            limit=count,
        )
        lineage = (number,)
        where = {"source": chunk.source, "chunk": chunk.index}
        answer = await run.ask_items(lineage, request, reservation, where, "pairs")
        if answer is None:
            return
        assert answer.data is not None
        pairs = [(str(pair["question"]).strip(), str(pair["answer"]).strip()) for pair in answer.data["pairs"]]

        def candidate(child: Lineage, pair: tuple[str, str], share: Reservation) -> Awaitable[None]:
            question, reply = pair
            made = run.exchange(request, answer, (QUESTION, ANSWER), {"question": question, "answer": reply})
            return _judged(run, child, chunk, question, reply, made, share)

        run.fan_out(
            lineage, template.name, pairs, reservation, 3,
            lambda pair: ("question", pair[0], {**where, "question": pair[0], "answer": pair[1]}), candidate,
        )  # fmt: skip

    return source


async def _judged(
    run: LeafRun,
    lineage: Lineage,
    chunk: Chunk,
    question: str,
    reply: str,
    made: TeacherExchange,
    reservation: Reservation,
) -> None:
    params = run.params
    content = {"source": chunk.source, "chunk": chunk.index, "question": question, "answer": reply}
    slot = ".".join(map(str, lineage))
    judges: tuple[tuple[str, str, int, str, dict[str, str]], ...] = (
        ("knowledge_faithfulness", "faithfulness", 1, "unfaithful", {"chunk": chunk.text}),
        ("knowledge_relevance", "relevance", params.min_relevance, "irrelevant", {}),
        ("knowledge_question", "question_quality", params.min_question_quality, "poor-question", {}),
    )
    scores: dict[str, int | None] = {}
    for stage, key, minimum, reason, extra in judges:
        template = load_prompt(stage)
        values = {"question": question, "answer": reply, **extra}
        request = run.build_request(template, f"{slot}/{stage}", values, judge=True)
        verdict = await run.ask(lineage, request, reservation)
        if not verdict.ok:
            run.failed(lineage, stage, verdict, content)
            return
        assert verdict.data is not None
        scores[key] = score = int(verdict.data["score"])
        if score < minimum:
            run.passed(stage, passed=0)
            run.drop(lineage, stage, f"{reason}: {verdict.data.get('explanation', '')[:300]}", {**content, **scores})
            return
        run.passed(stage)
    run.keep(lineage, "knowledge_question", question, reply, scores, (made,))
