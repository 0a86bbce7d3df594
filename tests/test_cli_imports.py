"""The pre-commit hook must start fast: `labtax.cli` (and so every command module) may not pull in
the heavy stacks at import time. This runs a fresh interpreter, so earlier tests cannot hide it."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "datasets", "peft", "accelerate", "huggingface_hub", "datasketch", "httpx", "numpy")


def test_cli_import_pulls_in_no_heavy_module() -> None:
    code = "import sys, labtax.cli; print('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(result.stdout.split())
    assert not [name for name in HEAVY if name in loaded]


def test_every_command_has_help() -> None:
    from labtax.cli import app, main

    names = [command.name for command in app.registered_commands]
    assert {"validate", "check"} <= set(names)
    for name in names:
        assert main([name, "--help"]) == 0
