"""`labtax diff`: which leaves a change touches (added, modified, renamed, deleted), with their hashes."""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from labtax.cli_utils import BaseOption, RootOption, echo, entry


class DiffFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


@entry
def command(
    base: BaseOption = None,
    root: RootOption = None,
    output_format: Annotated[
        DiffFormat, typer.Option("--format", "-f", help="Output format: text (one line per leaf) or json.")
    ] = DiffFormat.TEXT,
) -> int:
    """List the leaves changed in the working tree since the merge-base of HEAD and the base.

    Staged, unstaged and untracked (not ignored) files count; a change to a leaf's attribution.txt or to
    the in-repository documents it references is a change of that leaf. Outside git, every leaf is added.
    Exit code 0 (also when nothing changed), 2 for usage errors (an unknown base, a shallow clone).
    """
    import json

    from labtax.config import load_config
    from labtax.gitdiff import changed_leaves

    config = load_config(start=root, taxonomy=root)
    result = changed_leaves(config, base)
    if output_format is DiffFormat.JSON:
        echo(json.dumps([change.as_json() for change in result.changes], indent=2, ensure_ascii=False))
        return 0
    for change in result.changes:
        where = f"{change.old_path} -> {change.path}" if change.status == "renamed" else change.path
        note = " (content unchanged)" if change.is_pure_rename else ""
        echo(f"{change.status:<9} {where}{note}")
    against = (
        "everything is new"
        if result.everything_new
        else f"compared with {result.base_ref} at merge-base {(result.base_commit or '')[:12]}"
    )
    echo(f"{len(result.changes)} leaves changed ({against})", err=True)
    return 0
