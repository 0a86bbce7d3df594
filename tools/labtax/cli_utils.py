"""What every command shares: option declarations (once, as Annotated aliases), error handling, output.

A command is a function returning an exit code, wrapped by `entry`: LabtaxError prints its message
and exits with its code (2 for usage), a missing optional extra names the `pip install` that adds it
(labtax.extras), a full disk that a library reported in its own words (torch.save, save_pretrained)
gets labtax.fileio's one message and exit 1, Ctrl-C exits 130, and an unexpected exception (a bug)
exits 3 after writing the crash log (labtax.crash: versions and traceback) to a file the message names.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn, ParamSpec

import typer

from labtax.errors import LabtaxError
from labtax.extras import missing_extra_error
from labtax.fileio import DiskFullError, disk_full_error, is_disk_full
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
        except ModuleNotFoundError as exc:
            missing = missing_extra_error(exc)
            if missing is None:
                _report_bug(exc)
            echo(f"error: {missing}", err=True)
            raise typer.Exit(missing.exit_code) from None
        except Exception as exc:
            if is_disk_full(exc):  # not a bug: the same message as labtax's own writes give
                echo(f"error: {disk_full_error(getattr(exc, 'filename', None), None, exc)}", err=True)
                raise typer.Exit(DiskFullError.exit_code) from None
            _report_bug(exc)
        raise typer.Exit(code)

    return wrapper


def _report_bug(exc: BaseException) -> NoReturn:
    """An unexpected error: write the crash log, say where it is, exit 3."""
    from labtax.crash import redact, write_crash_log

    path = write_crash_log(sys.argv[1:], exc)
    where = f"; the details are in {path}" if path is not None else ""
    summary = redact(f"{type(exc).__name__}: {exc}")
    echo(f"error: an unexpected error occurred ({summary}){where}. Please report it.", err=True)
    raise typer.Exit(3) from None
