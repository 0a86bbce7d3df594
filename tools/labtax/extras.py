"""Which optional extra a stage needs, and the one error that says how to install it.

The core install (`pip install labtax`: validate, check, diff, report and the pre-commit hook) carries
only what those need. The heavy stages live behind extras (pyproject.toml):

    pdf        PDF text (pypdfium2)                       PDF documents (validate --check-documents,
                                                          generate); the exported hook installs it
    generate   the teacher client                         labtax generate
    curate     MinHash dedup, language id                 labtax curate
    train      torch, transformers, peft, accelerate      labtax train, evaluate, model import (and a local
                                                          teacher, embedding selection, influence scoring)
    release    the Hub client, and all of the above       labtax release
    all        everything

A command that needs an extra says so with `@needs_extra(...)` under `@entry`: it stops before any
work with one line naming the `pip install` that adds it. A module of an extra that is missing deeper
down (torch for `labtax curate --influence`, say) is turned into the same message by `entry`, through
`missing_extra_error`, instead of being reported as a bug.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from labtax.errors import LabtaxError

P = ParamSpec("P")
R = TypeVar("R")

# The import names each extra adds, in step with [project.optional-dependencies] in pyproject.toml
# (tests/test_extras.py holds the two together). An extra's own modules only: `release` also needs
# everything `pdf`, `generate`, `curate` and `train` need (see INCLUDES).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "pdf": ("pypdfium2",),
    "generate": ("aiohttp", "tqdm"),
    "curate": ("datasketch", "numpy", "py3langid", "xxhash"),
    "train": ("accelerate", "gguf", "peft", "tokenizers", "torch", "tqdm", "transformers"),
    "release": ("huggingface_hub",),
}
INCLUDES: dict[str, tuple[str, ...]] = {
    "release": ("pdf", "generate", "curate", "train"),
    "all": ("pdf", "generate", "curate", "train", "release"),
}


class MissingExtraError(LabtaxError):
    """A module of an optional extra is not installed (exit code 2): the message names the pip install."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"this needs the '{extra}' extra, which is not installed (no module named '{module}'): "
            f"pip install 'labtax[{extra}]'"
        )
        self.extra = extra
        self.module = module


def modules_of(extra: str) -> tuple[str, ...]:
    """Every import name `extra` provides, its included extras' too (sorted, no repeats)."""
    if extra not in EXTRA_MODULES and extra not in INCLUDES:
        raise ValueError(f"unknown extra {extra!r}")
    names = set(EXTRA_MODULES.get(extra, ()))
    for included in INCLUDES.get(extra, ()):
        names.update(modules_of(included))
    return tuple(sorted(names))


def _is_installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or a module blocked with sys.modules[name] = None
        return False


def require_extra(extra: str) -> None:
    """Raise MissingExtraError unless every module of `extra` can be imported (nothing is imported here)."""
    for module in modules_of(extra):
        if not _is_installed(module):
            raise MissingExtraError(extra, module)


def needs_extra(extra: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a command (under `@entry`) so that it stops before any work when `extra` is missing.

    `--help` still works without the extra: the check runs when the command runs.
    """
    modules_of(extra)  # an unknown extra is a programming error: fail at import, not at run time

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            require_extra(extra)
            return func(*args, **kwargs)

        return wrapper

    return decorate


def missing_extra_error(exc: ModuleNotFoundError) -> MissingExtraError | None:
    """The MissingExtraError for a failed import of a module some extra provides; None for any other module.

    The smallest extra that provides the module is named (torch: `train`, not `release`).
    """
    top = (exc.name or "").partition(".")[0]
    if not top:
        return None
    for extra in sorted(EXTRA_MODULES, key=lambda name: len(modules_of(name))):
        if top in EXTRA_MODULES[extra]:
            return MissingExtraError(extra, top)
    return None
