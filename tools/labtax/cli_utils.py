"""What every command shares: option declarations (once, as Annotated aliases), error handling, output.

A command is a function returning an exit code, wrapped by `entry`: LabtaxError prints its message
and exits with its code (2 for usage), Ctrl-C exits 130, and an unexpected exception (a bug) exits 3
after writing the traceback to a log file the message names.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec

import typer

from labtax.errors import LabtaxError
from labtax.output import Format

P = ParamSpec("P")

RootOption = Annotated[
    Path | None,
    typer.Option(
        "--root", help="Taxonomy root directory (default: [tool.labtax] taxonomy, else ./taxonomy).", show_default=False
    ),
]
FormatOption = Annotated[
    Format, typer.Option("--format", "-f", help="Output format: text, github (annotations) or json.")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print only problems, no summary or progress.")]
BaseOption = Annotated[
    str | None,
    typer.Option(
        "--base",
        help=(
            "Git ref to compare against (merge-base with HEAD); default origin/main, else main. "
            "'empty' = everything is new."
        ),
    ),
]


def log_path() -> Path:
    root = os.environ.get("LABTAX_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "labtax"
    )
    return Path(root) / "labtax.log"


def echo(message: str = "", *, err: bool = False) -> None:
    """All command output goes through here (stdout for results, stderr for messages)."""
    stream = sys.stderr if err else sys.stdout
    print(message, file=stream, flush=True)


def entry(func: Callable[P, int]) -> Callable[P, None]:
    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            code = func(*args, **kwargs)
        except LabtaxError as exc:
            echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # The reader went away (`labtax diff | head`): not an error of ours. Point stdout at
            # /dev/null so the interpreter's final flush does not raise again, and exit like a shell.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(141) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:
            path = log_path()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a", encoding="utf-8") as handle:
                    handle.write(f"labtax {' '.join(sys.argv[1:])}\n{traceback.format_exc()}\n")
                where = f"; the details are in {path}"
            except OSError:
                where = ""
            echo(
                f"error: an unexpected error occurred ({type(exc).__name__}: {exc}){where}. Please report it.", err=True
            )
            raise typer.Exit(3) from None
        raise typer.Exit(code)

    return wrapper
