"""`labtax check`: validate the whole taxonomy and print a one-screen summary."""

from __future__ import annotations

from typing import Annotated

import typer

from labtax.cli_utils import RootOption, echo, entry


@entry
def command(
    root: RootOption = None,
    check_documents: Annotated[
        bool,
        typer.Option(
            "--check-documents/--no-check-documents",
            help="Fetch remote knowledge documents too (documents kept in this repository are always checked).",
        ),
    ] = True,
) -> int:
    """Validate the whole taxonomy and summarise it: leaves per branch and kind, seeds, warnings, errors."""
    from labtax.config import load_config
    from labtax.output import Format, render
    from labtax.summary import summarise
    from labtax.validate import validate_paths

    config = load_config(taxonomy=root)
    result = validate_paths(config, check_documents=check_documents)
    if result.diagnostics:
        echo(render(result.diagnostics, Format.TEXT))
        echo()
    echo(summarise(result, config))
    return 1 if result.errors else 0
