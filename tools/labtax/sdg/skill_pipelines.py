"""The LAB skill pipelines (Skills-SDG), freeform and grounded, streaming: each candidate is a coroutine
that moves to its next stage the moment its previous answer is in. Foundational skills run them too.

- freeform: instructions (from training seeds) → instruction judge (reason, then 0/1) → response(s)
  → pair judge (reason, then LAB's 1-3; keep 2 and 3)
- grounded: contexts → questions per context → question filter (InstructLab's eval_grounded_questions:
  answerable from the context alone, 0/1) → response(s) → pair judge

With `candidates_per_prompt` = k > 1 each instruction's response prompt is sent k times (k samples of
one prompt); every response is judged, the best is kept, and all k are recorded with their scores in
the sample's exchanges (what preference pairs are built from). Held-out seeds never reach the teacher.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import replace

from labtax.records.sample import ANSWER, CONTEXT, QUESTION, TeacherExchange
from labtax.sdg.inputs import SkillExample
from labtax.sdg.leaf_run import Abandoned, LeafRun, Lineage, Reservation
from labtax.sdg.params import chain_cost
from labtax.sdg.prompts import load_prompt
from labtax.taxonomy.leaf import LeafKind


def instruction_example(question: str) -> str:
    """A seed's instruction as the instruction and question prompts show it (also measured by context_fit)."""
    return f"- {question}"


def context_example(context: str) -> str:
    """A seed's passage as the context-generation prompt shows it."""
    return f"[Start of Context]\n{context}\n[End of Context]"


def response_example(context: str | None, question: str, answer: str) -> str:
    """A seed as the response prompt shows it."""
    block = f"Context:\n{context}\n" if context else ""
    return f"{block}Instruction: {question}\nResponse: {answer}"


def _instruction_examples(examples: tuple[SkillExample, ...]) -> list[tuple[str, str]]:
    return [(e.seed_id, instruction_example(e.question)) for e in examples]


def _response_examples(examples: tuple[SkillExample, ...]) -> list[tuple[str, str]]:
    return [(e.seed_id, response_example(e.context, e.question, e.answer)) for e in examples]


def _context_block(context: str | None) -> str:
    return f"Context:\n{context}\n\n" if context else ""


def _slot(lineage: Lineage) -> str:
    return ".".join(map(str, lineage))


async def respond_and_judge(
    run: LeafRun,
    lineage: Lineage,
    instruction: str,
    context: str | None,
    earlier: tuple[TeacherExchange, ...],
    scores: dict[str, int | None],
    reservation: Reservation,
) -> None:
    """k responses to one prompt, each judged; the best one rated `min_pair_score` or more is kept."""
    inputs, params = run.inputs, run.params
    respond, judge = load_prompt("response"), load_prompt("pair_judge")
    content = {"instruction": instruction, "context": context}
    slot = _slot(lineage)
    values = {
        "task_description": inputs.task_description,
        "context_block": _context_block(context),
        "instruction": instruction,
    }
    shown = run.pick(_response_examples(inputs.skill_examples), f"{slot}/response")

    async def one(variant: int) -> tuple[int, TeacherExchange] | None:
        request = run.build_request(respond, f"{slot}/response", values, shown, variant=variant)
        answer = await run.ask(lineage, request, reservation)
        if not answer.ok:
            run.failed(lineage, "response", answer, content)
            return None
        assert answer.data is not None
        response = str(answer.data["text"]).strip()
        verdict_request = run.build_request(
            judge,
            f"{slot}/pair_judge/{variant}",
            {"context_block": _context_block(context), "instruction": instruction, "response": response},
            judge=True,
        )
        verdict = await run.ask(lineage, verdict_request, reservation)
        if not verdict.ok:
            run.failed(lineage, "pair_judge", verdict, {**content, "response": response})
            return None
        assert verdict.data is not None
        score = int(verdict.data["score"])
        return score, run.exchange(request, answer, (ANSWER,), response, judge_score=score)

    run.at_stage(lineage, "response")
    # Every variant finishes (or is cancelled with the candidate) before the candidate decides.
    outcomes = await asyncio.gather(*(one(variant) for variant in range(params.candidates_per_prompt)),
                                    return_exceptions=True)  # fmt: skip
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    judged = [r for r in outcomes if r is not None and not isinstance(r, BaseException)]
    run.passed("response", answered=1, passed=1 if judged else 0)
    if not judged:
        return  # each failure was recorded
    best_score, best = max(judged, key=lambda r: r[0])  # max keeps the first of equals: the lowest variant
    if best_score < params.min_pair_score:
        run.passed("pair_judge", passed=0)
        run.drop(
            lineage, "pair_judge", f"low-score: rated {best_score} of 3", {**content, "response": best.item_output}
        )
        return
    others = tuple(replace(exchange, wrote=()) for _, exchange in judged if exchange is not best)
    user = f"{context}\n\n{instruction}" if context else instruction
    run.passed("pair_judge")
    run.keep(lineage, "pair_judge", user, best.item_output, {**scores, "pair": best_score}, (*earlier, best, *others))


# --- freeform -------------------------------------------------------------------------------------


async def freeform_source(run: LeafRun, number: int, reservation: Reservation) -> None:
    """The `number`-th request for new instructions; each one it yields goes on as its own candidate."""
    inputs, params = run.inputs, run.params
    lineage = (number,)
    template = load_prompt("freeform_instructions")
    count = params.instructions_per_request
    request = run.build_request(
        template,
        f"{number}/instructions",
        {"task_description": inputs.task_description, "count": count},
        run.pick(_instruction_examples(inputs.skill_examples), f"{number}/instructions"),
        limit=count,
    )
    answer = await run.ask_items(lineage, request, reservation, {}, "items")
    if answer is None:
        return
    assert answer.data is not None

    def candidate(child: Lineage, text: str, share: Reservation) -> Awaitable[None]:
        made = run.exchange(request, answer, (QUESTION,), text)
        return _freeform_candidate(run, child, text, made, share)

    run.fan_out(
        lineage, template.name, [str(text).strip() for text in answer.data["items"]], reservation,
        (chain_cost(LeafKind.FREEFORM_SKILL, params) - 1) // count,
        lambda text: ("question", text, {"instruction": text}), candidate,
    )  # fmt: skip


async def _freeform_candidate(
    run: LeafRun, lineage: Lineage, instruction: str, made: TeacherExchange, reservation: Reservation
) -> None:
    template = load_prompt("instruction_judge")
    request = run.build_request(
        template,
        f"{_slot(lineage)}/instruction_judge",
        {"task_description": run.inputs.task_description, "instruction": instruction},
        judge=True,
    )
    verdict = await run.ask(lineage, request, reservation)
    if not verdict.ok:
        run.failed(lineage, template.name, verdict, {"instruction": instruction})
        return
    assert verdict.data is not None
    if int(verdict.data["score"]) < 1:
        run.passed(template.name, passed=0)
        run.drop(lineage, template.name, f"judged-unfit: {verdict.data.get('explanation', '')[:300]}",
                 {"instruction": instruction})  # fmt: skip
        return
    run.passed(template.name)
    await respond_and_judge(run, lineage, instruction, None, (made,), {"instruction": 1}, reservation)


# --- grounded -------------------------------------------------------------------------------------


async def grounded_source(run: LeafRun, number: int, reservation: Reservation) -> None:
    """The `number`-th request for new contexts; each context goes on to its own questions."""
    inputs, params = run.inputs, run.params
    lineage = (number,)
    template = load_prompt("grounded_contexts")
    count = params.contexts_per_request
    examples = [(e.seed_id, context_example(e.context)) for e in inputs.skill_examples if e.context]
    request = run.build_request(
        template,
        f"{number}/contexts",
        {"task_description": inputs.task_description, "count": count},
        run.pick(examples, f"{number}/contexts"),
        limit=count,
    )
    answer = await run.ask_items(lineage, request, reservation, {}, "items")
    if answer is None:
        return
    assert answer.data is not None

    def candidate(child: Lineage, context: str, share: Reservation) -> Awaitable[None]:
        made = run.exchange(request, answer, (CONTEXT,), context)
        return _grounded_context(run, child, context, made, share)

    run.fan_out(
        lineage, template.name, [str(text).strip() for text in answer.data["items"]], reservation,
        (chain_cost(LeafKind.GROUNDED_SKILL, params) - 1) // count,
        lambda context: ("context", context, {"context": context}), candidate,
    )  # fmt: skip


async def _grounded_context(
    run: LeafRun, lineage: Lineage, context: str, made: TeacherExchange, reservation: Reservation
) -> None:
    inputs, params = run.inputs, run.params
    template = load_prompt("grounded_questions")
    count = params.questions_per_context
    slot = _slot(lineage)
    request = run.build_request(
        template,
        f"{slot}/questions",
        {"task_description": inputs.task_description, "count": count, "context": context},
        run.pick(_instruction_examples(inputs.skill_examples), f"{slot}/questions"),
        limit=count,
    )
    answer = await run.ask_items(lineage, request, reservation, {"context": context}, "items")
    if answer is None:
        return
    assert answer.data is not None

    def candidate(child: Lineage, question: str, share: Reservation) -> Awaitable[None]:
        asked = run.exchange(request, answer, (QUESTION,), question)
        return _grounded_question(run, child, context, question, (made, asked), share)

    run.fan_out(
        lineage, template.name, [str(text).strip() for text in answer.data["items"]], reservation,
        1 + 2 * params.candidates_per_prompt,
        lambda question: ("question", question, {"context": context, "instruction": question}), candidate,
    )  # fmt: skip


async def _grounded_question(
    run: LeafRun,
    lineage: Lineage,
    context: str,
    question: str,
    made: tuple[TeacherExchange, ...],
    reservation: Reservation,
) -> None:
    template = load_prompt("grounded_question_judge")
    content = {"context": context, "instruction": question}
    request = run.build_request(
        template,
        f"{_slot(lineage)}/question_judge",
        {"task_description": run.inputs.task_description, "context": context, "instruction": question},
        judge=True,
    )
    verdict = await run.ask(lineage, request, reservation)
    if not verdict.ok:
        run.failed(lineage, template.name, verdict, content)
        return
    assert verdict.data is not None
    score = int(verdict.data["score"])
    if score < run.params.min_question_quality:
        run.passed(template.name, passed=0)
        run.drop(lineage, template.name, f"ungrounded-question: {verdict.data.get('explanation', '')[:300]}", content)
        return
    run.passed(template.name)
    await respond_and_judge(run, lineage, question, context, made, {"question_quality": score}, reservation)


__all__ = ["Abandoned", "freeform_source", "grounded_source", "respond_and_judge"]
