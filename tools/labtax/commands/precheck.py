"""`labtax precheck`: what the current model answers to the questions of the added and edited seeds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from labtax.cli_utils import BaseOption, RootOption, echo, entry

if TYPE_CHECKING:
    from labtax.precheck.records import PrecheckResult


@entry
def command(
    base: BaseOption = None,
    root: RootOption = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="The model to ask: the name a server serves (with --model-url), else a local transformers "
            "directory. Without it, only the question list is written ('precheck not configured').",
            show_default=False,
        ),
    ] = None,
    model_url: Annotated[
        str | None,
        typer.Option(
            "--model-url",
            help="OpenAI-compatible API root serving --model, e.g. http://localhost:8000/v1 "
            "(key: $LABTAX_PRECHECK_API_KEY).",
            show_default=False,
        ),
    ] = None,
    judge_model: Annotated[
        str | None,
        typer.Option(
            "--judge-model",
            help="The judge (the teacher): a served model name with --judge-url, else a local directory.",
            show_default=False,
        ),
    ] = None,
    judge_url: Annotated[
        str | None,
        typer.Option(
            "--judge-url",
            help="OpenAI-compatible API root serving --judge-model (key: $LABTAX_TEACHER_API_KEY).",
            show_default=False,
        ),
    ] = None,
    questions: Annotated[
        Path | None,
        typer.Option(
            "--questions",
            help="Ask the questions of this precheck JSON file (as --json writes it) instead of comparing with git.",
            show_default=False,
        ),
    ] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Longest answer, in tokens.")] = 256,
    max_questions: Annotated[
        int, typer.Option("--max-questions", help="Ask at most this many questions (the rest are counted).")
    ] = 100,
    known_rouge: Annotated[
        float,
        typer.Option("--known-rouge", help="Without a judge, the ROUGE-L at which an answer counts as already known."),
    ] = 0.5,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per request before it is retried.")] = 120.0,
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="Requests in flight (served) or batch size (local).")
    ] = 8,
    device: Annotated[
        str | None,
        typer.Option(
            "--device", help="Device of a local model (default: cuda when available, else cpu).", show_default=False
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write the markdown here (atomically) instead of stdout.", show_default=False
        ),
    ] = None,
    json_output: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="Also write the questions, answers and scores as JSON (labtax-precheck/1).",
            show_default=False,
        ),
    ] = None,
) -> int:
    """Ask the current model the questions of every added or edited seed and show its answers.

    Each answer stands beside the seed's answer with its ROUGE-L (and a judge score with --judge-url);
    a leaf whose new seeds the model already answers well is flagged "model already knows this".
    Informative, never blocking: exit code 0, also for known leaves; 2 when the model cannot be asked
    (the -o file then says why) or for usage errors. API keys come only from the environment.
    """
    from labtax.errors import LabtaxError, UsageError
    from labtax.fileio import write_json_atomic, write_text_atomic
    from labtax.precheck.ask import JUDGE_API_KEY_ENV, ModelSpec, answer_questions
    from labtax.precheck.markdown import render_precheck, render_precheck_failure

    if questions is not None and base is not None:
        raise UsageError("--questions and --base exclude each other: the file already holds the questions")
    if model_url is not None and model is None:
        raise UsageError("--model-url needs --model: the name of the model the server serves")
    if judge_url is not None and judge_model is None:
        raise UsageError("--judge-url needs --judge-model: the name of the judge model the server serves")
    if judge_model is not None and model is None:
        raise UsageError("--judge-model needs --model: the judge scores the model's answers")
    if max_questions < 0 or concurrency < 1 or timeout <= 0:
        raise UsageError("--max-questions must be 0 or more, --concurrency at least 1, --timeout positive")
    asked = _question_list(root, base, questions, max_questions)
    result = asked
    if model is not None:
        spec = ModelSpec(model, model_url, timeout_s=timeout, concurrency=concurrency, device=device)
        judge = (
            ModelSpec(judge_model, judge_url, JUDGE_API_KEY_ENV, "--judge-model", timeout, concurrency, device)
            if judge_model is not None
            else None
        )
        try:
            result = answer_questions(asked, spec, judge=judge, max_tokens=max_tokens, known_rouge=known_rouge)
        except LabtaxError as exc:
            # In CI the section is all a reviewer sees: it says why there are no answers.
            if output is not None:
                write_text_atomic(output, render_precheck_failure(str(exc)))
            raise
    if json_output is not None:
        write_json_atomic(json_output, result.as_json())
    markdown = render_precheck(result)
    if output is None:
        echo(markdown.rstrip("\n"))
    else:
        write_text_atomic(output, markdown)
        echo(f"precheck written to {output}", err=True)
    return 0


def _question_list(root: Path | None, base: str | None, questions: Path | None, max_questions: int) -> PrecheckResult:
    """The questions to ask: from the file (capped like the rest), else from the leaves changed since the base."""
    from labtax.precheck.questions import at_most, precheck_questions
    from labtax.precheck.records import read_questions

    if questions is not None:
        return at_most(read_questions(questions), max_questions)
    from labtax.config import load_config
    from labtax.gitdiff import changed_leaves

    config = load_config(start=root, taxonomy=root)
    return precheck_questions(changed_leaves(config, base), max_questions)
