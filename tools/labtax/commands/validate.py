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
            help="Also resolve knowledge documents: fetch the pinned commit (cached) or read the local path.",
        ),
    ] = False,
    quiet: QuietOption = False,
) -> int:
    """Validate taxonomy leaves: schema, lint, limits, document pins and attribution.

    Exit code 0 when clean (warnings allowed), 1 when any error is found, 2 for usage errors.
    """
    from labtax.config import load_config
    from labtax.output import render
    from labtax.validate import validate_paths

    config = load_config(taxonomy=root)
    result = validate_paths(config, paths or None, check_documents=check_documents)
    rendered = render(result.diagnostics, output_format)
    if rendered:
        echo(rendered)
    if output_format is Format.TEXT and not quiet:
        echo(
            f"{result.files_checked} leaves checked: {result.errors} errors, {result.warnings} warnings",
            err=True,
        )
    return 1 if result.errors else 0
