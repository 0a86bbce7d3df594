"""`labtax report`: the reviewer's markdown page about the leaves a change touches."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from labtax.cli_utils import BaseOption, RootOption, echo, entry


def _default_repository_url() -> str | None:
    """On GitHub Actions, the repository's web address (for links to in-repository documents)."""
    server, repository = os.environ.get("GITHUB_SERVER_URL"), os.environ.get("GITHUB_REPOSITORY")
    return f"{server.rstrip('/')}/{repository}" if server and repository else None


@entry
def command(
    base: BaseOption = None,
    root: RootOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write the markdown to this file (atomically) instead of stdout.", show_default=False
        ),
    ] = None,
    repository_url: Annotated[
        str | None,
        typer.Option(
            "--repository-url",
            help="Web address of this repository, for links to in-repository documents at HEAD "
            "(default on GitHub Actions: $GITHUB_SERVER_URL/$GITHUB_REPOSITORY; otherwise links are relative).",
            show_default=False,
        ),
    ] = None,
) -> int:
    """Write the reviewer report (markdown) for the leaves changed since the merge-base with the base.

    Per leaf: change, seeds and words, the seeds added, removed, edited (word diff) and moved, a changed
    document pin, validation problems, attribution and licence, document link, near-duplicate seeds
    elsewhere in the taxonomy, and the teacher requests generation will make. `labtax precheck` adds
    what the current model answers.
    Exit code 0 (validation problems are reported, not fatal: `labtax validate` gates), 2 for usage errors.
    """
    from labtax.config import load_config
    from labtax.fileio import write_text_atomic
    from labtax.report import reviewer_report

    config = load_config(start=root, taxonomy=root)
    markdown = reviewer_report(config, base, repository_url=repository_url or _default_repository_url())
    if output is None:
        echo(markdown.rstrip("\n"))
    else:
        write_text_atomic(output, markdown)
        echo(f"report written to {output}", err=True)
    return 0
