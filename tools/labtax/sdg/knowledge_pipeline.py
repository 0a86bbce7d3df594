"""The LAB knowledge pipeline (Knowledge-SDG): question-answer pairs per document chunk (training
seeds as in-context examples) → a judge of faithfulness, relevance and question quality → keep the
passing pairs. Chunks are visited in order, round after round, so every part of the documents is used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from labtax.records.sample import ANSWER, QUESTION, TeacherExchange
from labtax.sdg.chunking import Chunk
from labtax.sdg.leaf_run import Example, LeafRun, keep_rate
from labtax.sdg.params import NOMINAL_KNOWLEDGE_KEEP
from labtax.sdg.prompts import load_prompt
from labtax.taxonomy.leaf import Leaf, training_seeds


def _knowledge_examples(leaf: Leaf) -> list[Example]:
    # training_seeds drops only each seed's last pair, so positions are the qna.yaml ones: seed n, pair m
    return [
        (f"{n}.{m}", f"Q: {pair.question}\nA: {pair.answer}")
        for n, seed in enumerate(training_seeds(leaf), start=1)
        for m, pair in enumerate(seed.qna, start=1)
    ]


async def run_knowledge(run: LeafRun, chunks: Sequence[Chunk]) -> None:
    leaf = run.leaf
    make_pairs, judge = load_prompt("knowledge_qa"), load_prompt("knowledge_judge")
    examples = _knowledge_examples(leaf)
    cursor = 0  # chunks are visited in order, round after round, so every part of the documents is used
    tried = 0
    while run.needed and run.remaining and run.rounds < run.params.max_rounds and chunks:
        slot = f"r{run.rounds}"
        run.rounds += 1
        rate = keep_rate(len(run.samples), tried, NOMINAL_KNOWLEDGE_KEEP)
        wanted = math.ceil(run.needed / rate)
        count = run.reserve(
            run.affordable(math.ceil(wanted / run.params.pairs_per_chunk), 1 + run.params.pairs_per_chunk)
        )
        picked = [chunks[(cursor + j) % len(chunks)] for j in range(count)]
        cursor += count
        requests = [
            run.build_request(
                make_pairs,
                f"{slot}/qa/{j}",
                {
                    "domain": leaf.domain,
                    "outline": leaf.document_outline,
                    "chunk": chunk.text,
                    "count": run.params.pairs_per_chunk,
                },
                run.pick(examples, f"{slot}/qa/{j}"),
            )
            for j, chunk in enumerate(picked)
        ]
        candidates: list[tuple[Chunk, str, str, TeacherExchange]] = []
        for chunk, request, answer in zip(picked, requests, await run.ask_all(requests), strict=True):
            if not answer.ok:
                run.failed("knowledge_qa", answer, {"source": chunk.source, "chunk": chunk.index})
                continue
            assert answer.data is not None
            for pair in answer.data["pairs"][: run.params.pairs_per_chunk]:
                question, reply = str(pair["question"]).strip(), str(pair["answer"]).strip()
                content = {"source": chunk.source, "chunk": chunk.index, "question": question, "answer": reply}
                if run.novel("knowledge_qa", question, content):
                    item = {"question": question, "answer": reply}
                    candidates.append((chunk, question, reply, run.exchange(request, answer, (QUESTION, ANSWER), item)))
                    run.stats["knowledge_qa"].kept += 1
        affordable = run.reserve(min(len(candidates), run.remaining))
        for _, question, reply, _ in candidates[affordable:]:
            run.drop(
                "knowledge_judge", "budget: the leaf's request budget is spent", {"question": question, "answer": reply}
            )
        candidates = candidates[:affordable]
        tried += len(candidates)
        verdicts = await run.ask_all(
            [
                run.build_request(
                    judge, f"{slot}/judge/{i}", {"chunk": chunk.text, "question": question, "answer": reply}, judge=True
                )
                for i, (chunk, question, reply, _) in enumerate(candidates)
            ]
        )
        for (chunk, question, reply, exchange), verdict in zip(candidates, verdicts, strict=True):
            content = {"source": chunk.source, "chunk": chunk.index, "question": question, "answer": reply}
            if not verdict.ok:
                run.failed("knowledge_judge", verdict, content)
                continue
            assert verdict.data is not None
            scores = {k: int(verdict.data[k]) for k in ("faithfulness", "relevance", "question_quality")}
            problems = [
                name
                for name, ok in (
                    ("unfaithful", scores["faithfulness"] == 1),
                    ("irrelevant", scores["relevance"] >= 2),
                    ("poor-question", scores["question_quality"] >= 2),
                )
                if not ok
            ]
            if problems:
                run.drop(
                    "knowledge_judge", f"{'+'.join(problems)}: {verdict.data.get('reason', '')}", {**content, **scores}
                )
                continue
            run.keep("knowledge_judge", question, reply, scores, (exchange,))
        if not candidates and not count:
            break
