"""`labtax generate`: synthetic data for the leaves that need it, everything else reused from the cache."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from labtax.cli_utils import QuietOption, RootOption, echo, entry

if TYPE_CHECKING:
    from labtax.sdg.plan import GenerationPlan
    from labtax.sdg.run import GenerationResult


@entry
def command(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Generation directory (GEN): the cache and the results.")
    ],
    teacher_model: Annotated[
        str,
        typer.Option("--teacher-model", help="Model name the server serves, or a local Hugging Face model directory."),
    ],
    teacher_url: Annotated[
        str | None,
        typer.Option(
            "--teacher-url",
            help="OpenAI-compatible API root, e.g. http://localhost:8000/v1 (key: $LABTAX_TEACHER_API_KEY).",
        ),
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(
            "--base", help="Generate only for leaves changed since the merge-base with this git ref ('empty': all)."
        ),
    ] = None,
    all_leaves: Annotated[
        bool, typer.Option("--all", help="Generate for every leaf whose result is not cached (the default).")
    ] = False,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Requests in flight at once.")] = 32,
    target: Annotated[
        int | None,
        typer.Option(
            "--target", help="Kept samples per leaf (default: 100 for knowledge, 50 for skills).", show_default=False
        ),
    ] = None,
    teacher_context: Annotated[
        int | None,
        typer.Option(
            "--teacher-context",
            help="The teacher's context in tokens when the server does not report it (default 4096).",
            show_default=False,
        ),
    ] = None,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", help="Completion tokens per generation request (judges get 256).")
    ] = 1024,
    budget_factor: Annotated[
        float, typer.Option("--budget-factor", help="Request budget per leaf, as a multiple of its target.")
    ] = 10.0,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per request before it is retried.")] = 120.0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan (leaves, expected requests) and send nothing.")
    ] = False,
    root: RootOption = None,
    quiet: QuietOption = False,
) -> int:
    """Generate synthetic training data with a teacher model for the leaves missing from the cache.

    Exit code 0 when every generated leaf reached its target, 1 when some ended with too few
    samples (listed), 2 for usage errors.
    """
    from labtax.config import load_config
    from labtax.errors import UsageError
    from labtax.sdg.params import GenerationParams
    from labtax.sdg.plan import generation_config, plan_generation
    from labtax.sdg.run import generate
    from labtax.sdg.store import scan_cache
    from labtax.sdg.teacher_spec import TeacherSpec
    from labtax.validate import load_leaves

    if base is not None and all_leaves:
        raise UsageError("--base and --all exclude each other: --base limits generation to changed leaves")
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output {output} is not a directory; name a directory for the generation results")
    config = load_config(taxonomy=root)
    loaded = load_leaves(config)
    selected = None
    if base is not None:
        from labtax.gitdiff import changed_leaves

        selected = frozenset(change.path for change in changed_leaves(config, base).changes if change.drives_generation)
    # Only valid leaves are planned: an error in one leaf never refuses the others (issue 12).
    usable, skipped = plannable_leaves(config, loaded, selected)
    if skipped:
        echo(skipped, err=True)
    params = GenerationParams(target=target, max_tokens=max_tokens, budget_factor=budget_factor)
    spec = TeacherSpec(
        teacher_model, teacher_url, concurrency=concurrency, timeout_s=timeout, context_length=teacher_context
    )
    params.validate()
    spec.validate()
    if dry_run:
        from labtax.validate.context_fit import FitSettings, plan_misfits

        plan_config = generation_config(spec, output, params, config.project_root, selected)
        plan = plan_generation(usable, plan_config, scan_cache(output))
        echo(render_plan(plan))
        fit = FitSettings(teacher_context or 4096, params.max_tokens, params.judge_max_tokens)
        misfit_lines = plan_misfits([item.leaf for item in plan.to_run], fit, config.project_root, config)
        if misfit_lines:
            echo(misfit_lines)
        return 1 if skipped or misfit_lines else 0
    progress = None if quiet else BarProgress()
    try:
        result = generate(
            usable,
            spec,
            output,
            params=params,
            project_root=config.project_root,
            selected=selected,
            progress=progress,
        )
    finally:
        if progress is not None:
            progress.close()
    if not quiet:
        echo(render_summary(result))
    for row in result.incomplete:
        echo(
            f"warning: {row.leaf}: {row.kept} of {row.target} samples "
            f"(see {output}/leaves/{row.cache_key}/summary.json)",
            err=True,
        )
    return 1 if result.incomplete or skipped else 0


def plannable_leaves(config: Any, loaded: Any, selected: frozenset[str] | None) -> tuple[list[Any], str]:
    """The valid leaves, and a note listing the invalid leaves generation skips (selected ones with their
    errors; unselected ones counted): what `generate` and `release` plan, never refusing the valid ones."""
    from labtax.output import Format, render
    from labtax.validate import usable_leaves

    split = usable_leaves(config, loaded)
    usable_paths = {leaf.path for leaf in split.leaves}
    unreadable = [d for d in loaded.diagnostics if d.severity == "error" and d.rule in _UNREADABLE_RULES]
    wanted = [path for path in sorted(split.invalid) if selected is None or path in selected]
    missing = sorted(path for path in (selected or ()) if path not in usable_paths and path not in split.invalid)
    lines = []
    for path in wanted:
        lines.append(f"skipped {path}: it has validation errors; generation waits until they are fixed")
        lines += ["  " + line for line in render(split.invalid[path], Format.TEXT).splitlines()]
    for path in missing:
        lines.append(f"skipped {path}: its qna.yaml cannot be read; run `labtax validate` to see why")
    others = len(split.invalid) - len(wanted)
    if others or (selected is None and unreadable):
        lines.append(f"{others + (len(unreadable) if selected is None else 0)} other invalid leaves are not planned")
    return split.leaves, "\n".join(lines)


_UNREADABLE_RULES = frozenset({"yaml-syntax", "yaml-too-complex", "unreadable", "encoding", "file-too-large"})


class BarProgress:
    """One tqdm bar per stage (rate and ETA), growing as requests are queued."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}

    def _bar(self, stage: str) -> Any:
        if stage not in self.bars:
            from tqdm import tqdm

            self.bars[stage] = tqdm(
                total=0, desc=f"{stage:<22}", unit="req", position=len(self.bars), leave=True, dynamic_ncols=True
            )
        return self.bars[stage]

    def queued(self, stage: str, count: int) -> None:
        bar = self._bar(stage)
        bar.total += count
        bar.refresh()

    def done(self, stage: str, count: int) -> None:
        self._bar(stage).update(count)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def render_plan(plan: GenerationPlan) -> str:
    lines = [f"teacher: {plan.teacher}", f"{'action':<9}{'kind':<16}{'target':>7}{'expected':>10}{'budget':>8}  leaf"]
    for item in plan.leaves:
        budget = item.max_requests if item.action in ("generate", "resume") else 0
        lines.append(
            f"{item.action:<9}{item.leaf.kind!s:<16}{item.target:>7}{item.expected_requests:>10}{budget:>8}"
            f"  {item.leaf.path}"
        )
    counts = {
        action: sum(1 for p in plan.leaves if p.action == action) for action in ("generate", "resume", "cached", "skip")
    }
    lines.append(
        f"{len(plan.to_run)} leaves to generate ({counts['generate']} new, {counts['resume']} to resume), "
        f"{counts['cached']} cached, {counts['skip']} not selected; about {plan.expected_requests} requests "
        f"(at most {plan.max_requests}); nothing was sent (--dry-run)"
    )
    return "\n".join(lines)


def render_summary(result: GenerationResult) -> str:
    summary = result.summary
    lines = [f"{'status':<11}{'kept':>6}{'target':>7}{'sent':>7}{'replay':>7}{'failed':>7}  leaf"]
    for row in summary.leaves:
        lines.append(
            f"{row.outcome:<11}{row.kept:>6}{row.target:>7}{row.sent or 0:>7}"
            f"{row.replayed or 0:>7}{row.failed or 0:>7}  {row.leaf}"
        )
    if summary.stages:
        lines += ["", f"{'stage':<24}{'requests':>9}{'sent':>7}{'failed':>7}{'rescued':>8}{'kept':>7}{'dropped':>8}"]
        for stage, stats in summary.stages.items():
            lines.append(
                f"{stage:<24}{stats.requests:>9}{stats.sent:>7}{stats.failed:>7}{stats.rescued:>8}"
                f"{stats.kept:>7}{stats.dropped:>8}"
            )
    lines += [
        "",
        f"{summary.leaves_run} of {summary.leaves_total} leaves run in {summary.seconds:.1f} s: "
        f"{summary.sent} requests sent ({summary.http_requests} teacher calls, retries included), "
        f"{summary.replayed} replayed from the journal, {summary.failed} failed, "
        f"{summary.rescued} rescued by the fallback parser; "
        f"{summary.prompt_tokens} prompt + {summary.completion_tokens} completion tokens",
        f"index: {result.index_path}   run summary: {result.summary_path}",
    ]
    if summary.missing:
        lines.append(f"{len(summary.missing)} leaves have no data (not selected by --base and not cached)")
    return "\n".join(lines)
