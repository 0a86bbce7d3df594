"""The pre-commit hook must start fast: `labtax.cli` (and so every command module) may not pull in
the heavy stacks at import time. This runs a fresh interpreter, so earlier tests cannot hide it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = (
    "torch",
    "transformers",
    "datasets",
    "peft",
    "accelerate",
    "huggingface_hub",
    "datasketch",
    "httpx",
    "aiohttp",
    "numpy",
)


def test_cli_import_pulls_in_no_heavy_module() -> None:
    code = "import sys, labtax.cli; print('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(result.stdout.split())
    assert not [name for name in HEAVY if name in loaded]


def test_every_command_has_help() -> None:
    from labtax.cli import app, main

    names = [command.name for command in app.registered_commands]
    assert names == [
        "validate",
        "check",
        "diff",
        "report",
        "precheck",
        "generate",
        "curate",
        "train",
        "evaluate",
        "release",
    ]
    for name in names:
        assert main([name, "--help"]) == 0


def test_a_closed_pipe_is_not_reported_as_a_bug(tmp_path: Path) -> None:
    # `labtax validate | head -c 1`: the reader leaves early. Output far larger than a pipe buffer
    # makes the write fail for certain; that is no bug of ours: no "unexpected error", no traceback.
    leaf = tmp_path / "taxonomy" / "compositional_skills" / "noisy" / "qna.yaml"
    leaf.parent.mkdir(parents=True)
    leaf.write_text("version: 3\n" + "# trailing \n" * 5000)
    labtax = f"{sys.executable} -m labtax.cli"  # the suite may run without the venv's bin/ on PATH (as in CI)
    script = f"{labtax} validate --root {tmp_path / 'taxonomy'} | head -c 1 >/dev/null; echo ${{PIPESTATUS[0]}}"
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False, cwd=tmp_path)
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr
    assert result.stdout.strip() == "141"
