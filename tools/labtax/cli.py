"""The `labtax` command line: assembles the verbs, nothing else. Each verb lives in labtax.commands."""

from __future__ import annotations

from collections.abc import Sequence

import typer

from labtax import __version__
from labtax.commands import check, validate
from labtax.commands import curate as curate_command
from labtax.commands import diff as diff_command
from labtax.commands import evaluate as evaluate_command
from labtax.commands import generate as generate_command
from labtax.commands import release as release_command
from labtax.commands import report as report_command
from labtax.commands import train as train_command

app = typer.Typer(
    name="labtax",
    help=(
        "A git-native taxonomy for LAB-style alignment: "
        "validate leaves, report changes, generate, curate, train, release."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"labtax {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """labtax: taxonomy tooling for LAB-style alignment."""


app.command("validate")(validate.command)
app.command("check")(check.command)
app.command("train")(train_command.command)
app.command("evaluate")(evaluate_command.command)
app.command("diff")(diff_command.command)
app.command("report")(report_command.command)
app.command("generate")(generate_command.command)
app.command("release")(release_command.command)
app.command("curate")(curate_command.command)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        app(args=list(argv) if argv is not None else None, prog_name="labtax", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
