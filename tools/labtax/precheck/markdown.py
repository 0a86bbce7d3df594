"""The precheck as a markdown section for the pull-request comment (after the reviewer report).

Questions, seed answers and model answers are untrusted text (a contribution wrote the first two; a
model prompted by it the third): they go through the report's escaping (`labtax.report.clipped`), cut
to `CELL_CHARS`. The <summary> lines hold only our own words and numbers.
"""

from __future__ import annotations

from labtax.markdown import code, text
from labtax.precheck.records import PrecheckItem, PrecheckLeaf, PrecheckResult
from labtax.report import clipped

PRECHECK_MARKER = "<!-- labtax-precheck -->"
HEADING = "## Precheck: what the current model answers"
CELL_CHARS = 600
OPEN_QUESTIONS = 5  # answer tables up to this many rows are shown expanded
URL_VARIABLE = "LABTAX_PRECHECK_URL"
MODEL_VARIABLE = "LABTAX_PRECHECK_MODEL"
KEY_SECRET = "LABTAX_PRECHECK_API_KEY"

HOW_TO_CONFIGURE = (
    f"To run it on pull requests, a maintainer sets the repository variables `{URL_VARIABLE}` (the "
    "OpenAI-compatible API root of a server with the latest release, e.g. `https://models.example.org/v1`) "
    f"and `{MODEL_VARIABLE}` (the model name it serves), and the repository secret `{KEY_SECRET}` if the "
    "server needs a key (docs/pr-workflow.md). Locally: `labtax precheck --model-url URL --model NAME`, "
    "or `labtax precheck --model PATH` for a local transformers model."
)


def render_precheck(result: PrecheckResult) -> str:
    lines = [PRECHECK_MARKER, HEADING, ""]
    items = result.items
    leaves = len(result.leaves)
    if not items:
        lines.append("No added or edited seed: nothing to ask the model.")
        return "\n".join(lines) + "\n"
    scope = f"{_count(len(items), 'question')} of the added and edited seeds of {_count(leaves, 'leaf', 'leaves')}"
    if result.model is None:
        lines.extend(
            [
                f"**Precheck not configured:** no model was asked. It would ask {scope}.",
                "",
                HOW_TO_CONFIGURE,
            ]
        )
        lines.extend(_omitted(result))
        lines.extend(_question_list(result))
        return "\n".join(lines) + "\n"
    where = f"served at {code(result.model.url or '')}" if result.model.served else "a local model"
    scores = "ROUGE-L F1 against the seed's answer"
    if result.judge is not None:
        scores += f", and a judge score (1–3) from {code(result.judge.name)}"
    lines.append(
        f"{code(result.model.name)} ({where}) answered {scope}, greedily, in at most {result.max_tokens} tokens "
        f"each. Scores: {scores}."
    )
    lines.extend(_omitted(result))
    lines.append("")
    known = [leaf for leaf in result.leaves if leaf.known]
    if known:
        rule = "judge score 3" if result.judge is not None else f"ROUGE-L ≥ {result.known_rouge}"
        for leaf in known:
            lines.append(
                f"ℹ️ **Model already knows this:** {code(leaf.path)}: the model already answers most of its new "
                f"seeds well ({rule}); the leaf may teach it little. Informative only, not blocking."
            )
    else:
        lines.append('No leaf is flagged "model already knows this".')
    lines.extend(["", *_leaf_table(result)])
    for leaf in result.leaves:
        lines.extend(_answers(result, leaf))
    failed = sum(1 for item in items if item.answer is None)
    if failed:
        lines.extend(["", f"⚠️ {_count(failed, 'question')} got no answer; the reason is in its row."])
    return "\n".join(lines) + "\n"


def render_precheck_failure(message: str) -> str:
    """The section when the model could not be asked at all (unreachable, key refused)."""
    return "\n".join([PRECHECK_MARKER, HEADING, "", f"⚠️ **Precheck failed:** {text(message)}", ""])


def _count(number: int, noun: str, plural: str | None = None) -> str:
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def _omitted(result: PrecheckResult) -> list[str]:
    if not result.omitted:
        return []
    return ["", f"{_count(result.omitted, 'more question')} not asked (over `--max-questions`)."]


def _question_list(result: PrecheckResult) -> list[str]:
    lines = ["", "<details>", f"<summary>The {_count(len(result.items), 'question')}</summary>", ""]
    lines.extend(["| Leaf | Seed | Question |", "|---|---|---|"])
    for leaf in result.leaves:
        for item in leaf.items:
            lines.append(f"| {code(leaf.path)} | {_where(item)} | {clipped(item.question, CELL_CHARS)} |")
    lines.extend(["", "</details>", ""])
    return lines


def _where(item: PrecheckItem) -> str:
    # "seed 3", not "#3": GitHub would link "#3" to issue 3.
    pair = f", Q{item.pair}" if item.pair > 1 else ""
    return f"seed {item.seed}{pair}" + (" (with context)" if item.context else "")


def _mean(values: list[float]) -> str:
    return f"{sum(values) / len(values):.2f}" if values else "–"


def _leaf_table(result: PrecheckResult) -> list[str]:
    judged = result.judge is not None
    header = "| Leaf | Questions | Answered | Mean ROUGE-L |" + (" Judge 3/3 |" if judged else "") + " Already known |"
    lines = [header, "|---|--:|--:|--:|" + ("--:|" if judged else "") + "---|"]
    for leaf in result.leaves:
        answered = [item for item in leaf.items if item.answer is not None]
        cells = [
            code(leaf.path),
            str(len(leaf.items)),
            str(len(answered)),
            _mean([item.rouge_l for item in answered if item.rouge_l is not None]),
        ]
        if judged:
            cells.append(str(sum(1 for item in leaf.items if item.judge_score == 3)))
        cells.append("ℹ️ yes" if leaf.known else "no")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _answers(result: PrecheckResult, leaf: PrecheckLeaf) -> list[str]:
    judged = result.judge is not None
    opening = "<details open>" if len(leaf.items) <= OPEN_QUESTIONS else "<details>"
    lines = [
        "",
        f"### {code(leaf.path)}",
        "",
        opening,
        f"<summary>{_count(len(leaf.items), 'answer')} beside the seeds' answers</summary>",
        "",
        "| Seed | Question | Seed's answer | Model's answer | ROUGE-L |" + (" Judge |" if judged else ""),
        "|---|---|---|---|--:|" + ("--:|" if judged else ""),
    ]
    for item in leaf.items:
        if item.answer is None:
            answer = f"⚠️ no answer: {text(item.error or 'unknown')}"
        else:
            answer = clipped(item.answer, CELL_CHARS) or "(empty)"
            if item.finish_reason == "length":
                answer += f" *(cut off at {result.max_tokens} tokens)*"
        score = f"{item.rouge_l:.2f}" if item.rouge_l is not None else "–"
        cells = [_where(item), clipped(item.question, CELL_CHARS), clipped(item.reference, CELL_CHARS), answer, score]
        if judged:
            if item.judge_score is not None:
                cells.append(f"{item.judge_score}: {clipped(item.judge_explanation or '', 200)}")
            else:
                cells.append(text(item.error or "–") if item.answer is not None else "–")
        lines.append("| " + " | ".join(cells) + " |")
    lines.extend(["", "</details>"])
    return lines
