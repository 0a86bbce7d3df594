"""The `labtax` command line: assembles the verbs, nothing else. Each verb lives in labtax.commands."""

from __future__ import annotations

from collections.abc import Sequence

import typer

from labtax import __version__
from labtax.commands import check, curate, diff, evaluate, generate, model, precheck, release, report, train, validate

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


# In pipeline order, which is the order `labtax --help` lists them in.
app.command("validate")(validate.command)
app.command("check")(check.command)
app.command("diff")(diff.command)
app.command("report")(report.command)
app.command("precheck")(precheck.command)
app.command("generate")(generate.command)
app.command("curate")(curate.command)
app.command("train")(train.command)
app.command("evaluate")(evaluate.command)
app.command("release")(release.command)
app.add_typer(model.app, name="model")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        app(args=list(argv) if argv is not None else None, prog_name="labtax", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
