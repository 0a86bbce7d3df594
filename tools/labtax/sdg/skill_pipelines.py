"""The LAB skill pipelines (Skills-SDG), freeform and grounded; foundational skills run them like any other skill.

- freeform skill: instructions (from training seeds) → instruction judge (keep/drop + reason) →
  responses → pair judge on LAB's 3-point scale (keep 2 and 3)
- grounded skill: contexts → questions per context → responses → pair judge

A leaf runs in rounds until it has its target of kept samples or its request budget is spent
(`labtax.sdg.leaf_run.LeafRun` keeps the books). Held-out seeds never reach the teacher.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from labtax.records.sample import ANSWER, CONTEXT, QUESTION, TeacherExchange
from labtax.sdg.leaf_run import Example, LeafRun, keep_rate
from labtax.sdg.params import NOMINAL_INSTRUCTION_KEEP, NOMINAL_PAIR_KEEP
from labtax.sdg.prompts import load_prompt
from labtax.sdg.teacher import TeacherRequest, TeacherResult
from labtax.taxonomy.leaf import Leaf, LeafKind, training_seeds


@dataclass(frozen=True)
class Candidate:
    """An instruction on its way through a skill pipeline, with the teacher exchanges that made it."""

    text: str
    context: str | None
    exchanges: tuple[TeacherExchange, ...]


def _instruction_examples(leaf: Leaf) -> list[Example]:
    # training_seeds keeps the leading seeds in file order, so position n is seed id n
    return [(str(n), f"- {seed.qna[0].question}") for n, seed in enumerate(training_seeds(leaf), start=1)]


def _response_examples(leaf: Leaf) -> list[Example]:
    out = []
    for n, seed in enumerate(training_seeds(leaf), start=1):
        context = f"Context:\n{seed.context}\n" if seed.context else ""
        out.append((str(n), f"{context}Instruction: {seed.qna[0].question}\nResponse: {seed.qna[0].answer}"))
    return out


async def _respond_and_judge(run: LeafRun, round_slot: str, items: list[Candidate]) -> None:
    """Responses, then the pair judge, for candidate instructions; keeps pairs rated 2 or 3."""
    leaf = run.leaf
    respond, judge = load_prompt("response"), load_prompt("pair_judge")
    affordable = run.reserve(2 * min(len(items), run.remaining // 2)) // 2
    for item in items[affordable:]:
        run.drop(
            "response",
            "budget: the leaf's request budget is spent",
            {"instruction": item.text, "context": item.context},
        )
    items = items[:affordable]
    examples = _response_examples(leaf)
    requests = [
        run.build_request(
            respond,
            f"{round_slot}/response/{i}",
            {
                "task_description": leaf.task_description,
                "context_block": _context_block(item.context),
                "instruction": item.text,
            },
            run.pick(examples, f"{round_slot}/response/{i}"),
        )
        for i, item in enumerate(items)
    ]
    answers = await run.ask_all(requests)
    pairs: list[tuple[Candidate, str, TeacherExchange]] = []
    for item, request, answer in zip(items, requests, answers, strict=True):
        if not answer.ok:
            run.failed("response", answer, {"instruction": item.text, "context": item.context})
            continue
        assert answer.data is not None
        response = str(answer.data["response"]).strip()
        pairs.append((item, response, run.exchange(request, answer, (ANSWER,), answer.data["response"])))
        run.stats["response"].kept += 1
    judged = await run.ask_all(
        [
            run.build_request(
                judge,
                f"{round_slot}/pair_judge/{i}",
                {"context_block": _context_block(item.context), "instruction": item.text, "response": response},
                judge=True,
            )
            for i, (item, response, _) in enumerate(pairs)
        ]
    )
    for (item, response, responded), verdict in zip(pairs, judged, strict=True):
        instruction, context = item.text, item.context
        content = {"instruction": instruction, "context": context, "response": response}
        if not verdict.ok:
            run.failed("pair_judge", verdict, content)
            continue
        assert verdict.data is not None
        score = int(verdict.data["score"])
        if score < 2:
            run.drop("pair_judge", f"low-score: rated {score} of 3: {verdict.data.get('explanation', '')}", content)
            continue
        user = f"{context}\n\n{instruction}" if context else instruction
        run.keep(
            "pair_judge",
            user,
            response,
            {"pair": score, "instruction": 1 if run.leaf.kind is LeafKind.FREEFORM_SKILL else None},
            (*item.exchanges, responded),
        )


def _context_block(context: str | None) -> str:
    return f"Context:\n{context}\n\n" if context else ""


async def run_freeform(run: LeafRun) -> None:
    leaf = run.leaf
    generate, judge = load_prompt("freeform_instructions"), load_prompt("instruction_judge")
    examples = _instruction_examples(leaf)
    tried = 0
    while run.needed and run.remaining and run.rounds < run.params.max_rounds:
        slot = f"r{run.rounds}"
        run.rounds += 1
        rate = keep_rate(len(run.samples), tried, NOMINAL_INSTRUCTION_KEEP * NOMINAL_PAIR_KEEP)
        wanted = math.ceil(run.needed / rate)
        per_request = run.params.instructions_per_request
        count = run.reserve(run.affordable(math.ceil(wanted / per_request), 1 + 3 * per_request))
        requests = [
            run.build_request(
                generate,
                f"{slot}/instructions/{j}",
                {"task_description": leaf.task_description, "count": run.params.instructions_per_request},
                run.pick(examples, f"{slot}/instructions/{j}"),
            )
            for j in range(count)
        ]
        candidates = _novel_items(
            run, "freeform_instructions", requests, await run.ask_all(requests), "instructions", "instruction"
        )
        # Judge only what the budget can carry through responses and the pair judge (3 requests each).
        candidates = _affordable(run, candidates, "instruction_judge", "instruction")
        tried += len(candidates)
        verdicts = await run.ask_all(
            [
                run.build_request(
                    judge,
                    f"{slot}/instruction_judge/{i}",
                    {"task_description": leaf.task_description, "instruction": candidate.text},
                    judge=True,
                )
                for i, candidate in enumerate(candidates)
            ]
        )
        accepted: list[Candidate] = []
        for candidate, verdict in zip(candidates, verdicts, strict=True):
            text = candidate.text
            if not verdict.ok:
                run.failed("instruction_judge", verdict, {"instruction": text})
            elif not verdict.data or not verdict.data["keep"]:
                reason = (verdict.data or {}).get("reason", "")
                run.drop("instruction_judge", f"judged-unfit: {reason}", {"instruction": text})
            else:
                run.stats["instruction_judge"].kept += 1
                accepted.append(candidate)
        if not candidates and not count:
            break
        await _respond_and_judge(run, slot, accepted)


def _novel_items(
    run: LeafRun,
    stage: str,
    requests: list[TeacherRequest],
    answers: list[TeacherResult],
    field: str,
    record_key: str,
) -> list[Candidate]:
    """The new texts a generation stage's answers list under `field`, each with the exchange that proposed
    it (it wrote the sample's instruction, or for `grounded_contexts` its context); failures and repeats
    are recorded."""
    wrote = (CONTEXT,) if record_key == "context" else (QUESTION,)
    items: list[Candidate] = []
    for request, answer in zip(requests, answers, strict=True):
        if not answer.ok:
            run.failed(stage, answer, {})
            continue
        assert answer.data is not None
        for text in answer.data[field]:
            text = str(text).strip()
            if run.novel(stage, text, {record_key: text}):
                items.append(Candidate(text, None, (run.exchange(request, answer, wrote, text),)))
                run.stats[stage].kept += 1
    return items


def _affordable(run: LeafRun, items: list[Candidate], next_stage: str, record_key: str) -> list[Candidate]:
    """As many items as the budget carries through `next_stage`, a response and the pair judge (3 requests
    each); the rest are recorded as dropped for budget."""
    affordable = run.reserve(min(len(items), run.remaining // 3))
    for item in items[affordable:]:
        run.drop(next_stage, "budget: the leaf's request budget is spent", {record_key: item.text})
    return items[:affordable]


async def run_grounded(run: LeafRun) -> None:
    leaf = run.leaf
    make_contexts, make_questions = load_prompt("grounded_contexts"), load_prompt("grounded_questions")
    seeds = training_seeds(leaf)
    context_examples = [(str(n), f"- {seed.context}") for n, seed in enumerate(seeds, start=1) if seed.context]
    question_examples = _instruction_examples(leaf)
    tried = 0
    while run.needed and run.remaining and run.rounds < run.params.max_rounds:
        slot = f"r{run.rounds}"
        run.rounds += 1
        rate = keep_rate(len(run.samples), tried, NOMINAL_PAIR_KEEP)
        questions_wanted = math.ceil(run.needed / rate)
        contexts_wanted = math.ceil(questions_wanted / run.params.questions_per_context)
        per_request = run.params.contexts_per_request
        cost = 1 + per_request * (1 + 2 * run.params.questions_per_context)
        count = run.reserve(run.affordable(math.ceil(contexts_wanted / per_request), cost))
        requests = [
            run.build_request(
                make_contexts,
                f"{slot}/contexts/{j}",
                {"task_description": leaf.task_description, "count": run.params.contexts_per_request},
                run.pick(context_examples, f"{slot}/contexts/{j}"),
            )
            for j in range(count)
        ]
        contexts = _novel_items(run, "grounded_contexts", requests, await run.ask_all(requests), "contexts", "context")
        contexts = _affordable(run, contexts, "grounded_questions", "context")
        question_requests = [
            run.build_request(
                make_questions,
                f"{slot}/questions/{i}",
                {
                    "task_description": leaf.task_description,
                    "count": run.params.questions_per_context,
                    "context": context.text,
                },
                run.pick(question_examples, f"{slot}/questions/{i}"),
            )
            for i, context in enumerate(contexts)
        ]
        answers = await run.ask_all(question_requests)
        items: list[Candidate] = []
        for made, request, answer in zip(contexts, question_requests, answers, strict=True):
            context = made.text
            if not answer.ok:
                run.failed("grounded_questions", answer, {"context": context})
                continue
            assert answer.data is not None
            for question in answer.data["questions"][: run.params.questions_per_context]:
                question = str(question).strip()
                if run.novel("grounded_questions", question, {"context": context, "instruction": question}):
                    asked = run.exchange(request, answer, (QUESTION,), question)
                    items.append(Candidate(question, context, (*made.exchanges, asked)))
                    run.stats["grounded_questions"].kept += 1
        tried += len(items)
        if not items and not count:
            break
        await _respond_and_judge(run, slot, items)
