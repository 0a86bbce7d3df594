"""The LAB skill pipelines (Skills-SDG), freeform and grounded; foundational skills run them like any other skill.

- freeform skill: instructions (from training seeds) → instruction judge (keep/drop + reason) →
  responses → pair judge on LAB's 3-point scale (keep 2 and 3)
- grounded skill: contexts → questions per context → responses → pair judge

A leaf runs in rounds until it has its target of kept samples or its request budget is spent
(`labtax.sdg.leaf_run.LeafRun` keeps the books). Held-out seeds never reach the teacher.
"""

from __future__ import annotations

import math

from labtax.sdg.leaf_run import LeafRun, keep_rate
from labtax.sdg.params import NOMINAL_INSTRUCTION_KEEP, NOMINAL_PAIR_KEEP
from labtax.sdg.prompts import load_prompt
from labtax.sdg.teacher import TeacherResult
from labtax.taxonomy.leaf import Leaf, LeafKind, training_seeds


def _instruction_examples(leaf: Leaf) -> list[str]:
    return [f"- {seed.qna[0].question}" for seed in training_seeds(leaf)]


def _response_examples(leaf: Leaf) -> list[str]:
    out = []
    for seed in training_seeds(leaf):
        context = f"Context:\n{seed.context}\n" if seed.context else ""
        out.append(f"{context}Instruction: {seed.qna[0].question}\nResponse: {seed.qna[0].answer}")
    return out


async def _respond_and_judge(run: LeafRun, round_slot: str, items: list[tuple[str, str | None]]) -> None:
    """Responses, then the pair judge, for (instruction, context) items; keeps pairs rated 2 or 3."""
    leaf = run.leaf
    respond, judge = load_prompt("response"), load_prompt("pair_judge")
    affordable = run.reserve(2 * min(len(items), run.remaining // 2)) // 2
    for instruction, context in items[affordable:]:
        run.drop(
            "response", "budget: the leaf's request budget is spent", {"instruction": instruction, "context": context}
        )
    items = items[:affordable]
    examples = _response_examples(leaf)
    requests = [
        run.build_request(
            respond,
            f"{round_slot}/response/{i}",
            {
                "task_description": leaf.task_description,
                "context_block": _context_block(context),
                "instruction": instruction,
            },
            run.pick(examples, f"{round_slot}/response/{i}"),
        )
        for i, (instruction, context) in enumerate(items)
    ]
    answers = await run.ask_all(requests)
    pairs = []
    for (instruction, context), answer in zip(items, answers, strict=True):
        if not answer.ok:
            run.failed("response", answer, {"instruction": instruction, "context": context})
            continue
        assert answer.data is not None
        pairs.append((instruction, context, str(answer.data["response"]).strip()))
        run.stats["response"].kept += 1
    judged = await run.ask_all(
        [
            run.build_request(
                judge,
                f"{round_slot}/pair_judge/{i}",
                {"context_block": _context_block(context), "instruction": instruction, "response": response},
                judge=True,
            )
            for i, (instruction, context, response) in enumerate(pairs)
        ]
    )
    for (instruction, context, response), verdict in zip(pairs, judged, strict=True):
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
            run, "freeform_instructions", await run.ask_all(requests), "instructions", "instruction"
        )
        # Judge only what the budget can carry through responses and the pair judge (3 requests each).
        candidates = _affordable(run, candidates, "instruction_judge", "instruction")
        tried += len(candidates)
        verdicts = await run.ask_all(
            [
                run.build_request(
                    judge,
                    f"{slot}/instruction_judge/{i}",
                    {"task_description": leaf.task_description, "instruction": text},
                    judge=True,
                )
                for i, text in enumerate(candidates)
            ]
        )
        accepted: list[tuple[str, str | None]] = []
        for text, verdict in zip(candidates, verdicts, strict=True):
            if not verdict.ok:
                run.failed("instruction_judge", verdict, {"instruction": text})
            elif not verdict.data or not verdict.data["keep"]:
                reason = (verdict.data or {}).get("reason", "")
                run.drop("instruction_judge", f"judged-unfit: {reason}", {"instruction": text})
            else:
                run.stats["instruction_judge"].kept += 1
                accepted.append((text, None))
        if not candidates and not count:
            break
        await _respond_and_judge(run, slot, accepted)


def _novel_items(run: LeafRun, stage: str, answers: list[TeacherResult], field: str, record_key: str) -> list[str]:
    """The new texts a generation stage's answers list under `field`; failures and repeats are recorded."""
    items: list[str] = []
    for answer in answers:
        if not answer.ok:
            run.failed(stage, answer, {})
            continue
        assert answer.data is not None
        for text in answer.data[field]:
            text = str(text).strip()
            if run.novel(stage, text, {record_key: text}):
                items.append(text)
                run.stats[stage].kept += 1
    return items


def _affordable(run: LeafRun, items: list[str], next_stage: str, record_key: str) -> list[str]:
    """As many items as the budget carries through `next_stage`, a response and the pair judge (3 requests
    each); the rest are recorded as dropped for budget."""
    affordable = run.reserve(min(len(items), run.remaining // 3))
    for text in items[affordable:]:
        run.drop(next_stage, "budget: the leaf's request budget is spent", {record_key: text})
    return items[:affordable]


async def run_grounded(run: LeafRun) -> None:
    leaf = run.leaf
    make_contexts, make_questions = load_prompt("grounded_contexts"), load_prompt("grounded_questions")
    seeds = training_seeds(leaf)
    context_examples = [f"- {seed.context}" for seed in seeds if seed.context]
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
        contexts = _novel_items(run, "grounded_contexts", await run.ask_all(requests), "contexts", "context")
        contexts = _affordable(run, contexts, "grounded_questions", "context")
        answers = await run.ask_all(
            [
                run.build_request(
                    make_questions,
                    f"{slot}/questions/{i}",
                    {
                        "task_description": leaf.task_description,
                        "count": run.params.questions_per_context,
                        "context": context,
                    },
                    run.pick(question_examples, f"{slot}/questions/{i}"),
                )
                for i, context in enumerate(contexts)
            ]
        )
        items: list[tuple[str, str | None]] = []
        for context, answer in zip(contexts, answers, strict=True):
            if not answer.ok:
                run.failed("grounded_questions", answer, {"context": context})
                continue
            assert answer.data is not None
            for question in answer.data["questions"][: run.params.questions_per_context]:
                question = str(question).strip()
                if run.novel("grounded_questions", question, {"context": context, "instruction": question}):
                    items.append((question, context))
                    run.stats["grounded_questions"].kept += 1
        tried += len(items)
        if not items and not count:
            break
        await _respond_and_judge(run, slot, items)
