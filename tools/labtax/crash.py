"""The crash log: what a maintainer needs to reproduce an unexpected error (a bug, exit code 3).

Modelled on pre-commit's `~/.cache/pre-commit/pre-commit.log`: one markdown file, rewritten on every
crash, with the versions (labtax, Python, git, libyaml and the key dependencies, read from package
metadata without importing them), the command line and the traceback, ready to paste into an issue.
Secrets never reach it: credentials in URLs, the values of `--*key*`/`--*token*`/`--*secret*`/
`--*password*` options and the values of secret environment variables are replaced by `***`.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import traceback
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from labtax import __version__
from labtax.fileio import write_text_atomic

# The distributions whose versions decide labtax's behaviour: the core install's, then each extra's.
KEY_DEPENDENCIES = (
    "pyyaml",
    "jsonschema",
    "fastjsonschema",
    "typer",
    "click",
    "gitpython",
    "pre-commit",
    "aiohttp",
    "tqdm",
    "datasketch",
    "numpy",
    "xxhash",
    "py3langid",
    "torch",
    "transformers",
    "tokenizers",
    "peft",
    "accelerate",
    "huggingface_hub",
)
SECRET_ENVIRONMENT = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "LABTAX_TEACHER_API_KEY", "OPENAI_API_KEY", "GITHUB_TOKEN")
_SECRET_OPTION = re.compile(r"^--?[\w-]*(key|token|secret|password)[\w-]*$", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")


def log_path() -> Path:
    """$LABTAX_CACHE_DIR/labtax.log, else $XDG_CACHE_HOME/labtax/labtax.log, else ~/.cache/labtax/labtax.log."""
    root = os.environ.get("LABTAX_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "labtax"
    )
    return Path(root) / "labtax.log"


def redact(text: str) -> str:
    """`text` with URL credentials and the values of secret environment variables replaced by ***."""
    text = _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)
    for name in SECRET_ENVIRONMENT:
        value = os.environ.get(name, "")
        if len(value) >= 4:
            text = text.replace(value, "***")
    return text


def redact_arguments(arguments: Sequence[str]) -> list[str]:
    """The command line with the values of secret-looking options hidden (`--api-key X`, `--token=X`)."""
    shown: list[str] = []
    hide_next = False
    for argument in arguments:
        if hide_next:
            shown.append("***")
            hide_next = False
            continue
        name, equals, _ = argument.partition("=")
        if _SECRET_OPTION.match(name):
            if equals:
                shown.append(f"{name}=***")
            else:
                shown.append(argument)
                hide_next = True
            continue
        shown.append(argument)
    return [redact(argument) for argument in shown]


def _distribution_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_version() -> str:
    try:
        result = subprocess.run(["git", "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unavailable ({type(exc).__name__})"
    return result.stdout.strip() or f"unavailable (exit {result.returncode})"


def _libyaml_version() -> str:
    try:
        from yaml import _yaml  # type: ignore[attr-defined]

        return str(_yaml.get_version_string())
    except Exception:  # no C extension: PyYAML's pure-Python loader
        return "not available (pure-Python loader)"


def version_information() -> str:
    """The version block of the log (also what a bug report should quote)."""
    lines = [
        f"labtax version: {__version__}",
        f"git --version: {_git_version()}",
        f"sys.version: {' '.join(sys.version.split())}",
        f"sys.executable: {sys.executable}",
        f"platform: {platform.platform()}",
        f"libyaml: {_libyaml_version()}",
        "dependencies:",
        *(f"    {name}: {_distribution_version(name)}" for name in KEY_DEPENDENCIES),
    ]
    return "\n".join(lines)


def format_crash_log(arguments: Sequence[str], exc: BaseException) -> str:
    command = " ".join(["labtax", *redact_arguments(arguments)])
    error = f"An unexpected error has occurred: {type(exc).__name__}: {exc}"
    trace = "".join(traceback.format_exception(exc))
    return redact(
        "### version information\n\n```\n"
        f"{version_information()}\n```\n\n"
        "### error information\n\n```\n"
        f"{command}\n{error}\n```\n\n```\n{trace.rstrip()}\n```\n"
    )


def write_crash_log(arguments: Sequence[str], exc: BaseException) -> Path | None:
    """Write the log for `exc` (replacing the previous crash's); its path, or None when it cannot be written."""
    path = log_path()
    try:
        write_text_atomic(path, format_crash_log(arguments, exc))
    except OSError:
        return None
    return path
