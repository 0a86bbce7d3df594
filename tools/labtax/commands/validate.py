"""`labtax validate`: check qna.yaml leaves (the pre-commit hook and CI run exactly this)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from labtax.cli_utils import FormatOption, QuietOption, RootOption, echo, entry
from labtax.output import Format


@entry
def command(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Files or directories to check (default: the whole taxonomy).", show_default=False),
    ] = None,
    root: RootOption = None,
    output_format: FormatOption = Format.TEXT,
    check_documents: Annotated[
        bool,
        typer.Option(
            "--check-documents",
            help="Also fetch remote knowledge documents at their pinned commit (cached; documents kept in this "
            "repository are always checked).",
        ),
    ] = False,
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            help="Fail only on problems in what the change since the merge-base with this git ref touches; "
            "problems elsewhere are listed as pre-existing notices (docs/adopting.md).",
            show_default=False,
        ),
    ] = None,
    touched: Annotated[
        bool,
        typer.Option(
            "--touched",
            help="PATHS are the files a commit touches (the pre-commit hook passes them): validate their leaves; "
            "problems in the leaves' other files block only a new leaf.",
        ),
    ] = False,
    teacher_context: Annotated[
        int | None,
        typer.Option(
            "--teacher-context",
            help="Also check that every seed and document chunk fits a teacher context of this many tokens.",
            show_default=False,
        ),
    ] = None,
    quiet: QuietOption = False,
) -> int:
    """Validate taxonomy leaves: schema, lint, limits, document pins and attribution.

    Exit code 0 when clean (warnings and notices allowed), 1 when any blocking error is found, 2 for usage
    errors.
    """
    from labtax.config import load_config
    from labtax.errors import Diagnostic, UsageError
    from labtax.output import render
    from labtax.validate import validate_paths
    from labtax.validate.scope import ChangeScope, recheck_touched_documents

    if base is not None and touched:
        raise UsageError("--base and --touched exclude each other: --touched takes the change from the paths")
    if teacher_context is not None and teacher_context < 256:
        raise UsageError(f"--teacher-context {teacher_context}: a teacher's context is at least 256 tokens")
    config = load_config(taxonomy=root)
    scope = None
    targets = paths or None
    if touched:
        if not paths:
            return 0  # pre-commit passes no file when the commit touches none
        scope, targets = ChangeScope.of_files(config, paths)
    elif base is not None:
        scope = ChangeScope.since(config, base)
    result = validate_paths(
        config,
        targets,
        # With --base, remote documents are fetched for the leaves the change touches only.
        check_documents=check_documents and (scope is None or touched),
        teacher_context=teacher_context,
    )
    diagnostics, notices = result.diagnostics, list[Diagnostic]()
    if scope is not None:
        if check_documents and not touched:
            result = recheck_touched_documents(config, result, scope, teacher_context)
        diagnostics, notices = scope.split(result.diagnostics)
    if output_format is Format.JSON:
        echo(render([*diagnostics, *notices], output_format))  # one array; notices have severity "notice"
    else:
        rendered = render(diagnostics, output_format)
        if rendered:
            echo(rendered)
        if notices:
            if output_format is Format.TEXT and not quiet and scope is not None:
                echo(
                    f"{len(notices)} pre-existing problems in files this change does not touch ({scope.description}):",
                    err=True,
                )
            echo(render(notices, output_format))
    errors = sum(1 for d in diagnostics if d.severity == "error")
    warnings = sum(1 for d in diagnostics if d.severity == "warning")
    if output_format is Format.TEXT and not quiet:
        summary = f"{result.files_checked} leaves checked: {errors} errors, {warnings} warnings"
        if scope is not None:
            summary += f", {len(notices)} pre-existing (not blocking)"
        echo(summary, err=True)
    return 1 if errors else 0
