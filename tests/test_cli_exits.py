"""How `labtax` ends when things go wrong, through a real process: a bug exits 3 and writes the crash
log (labtax, Python, git and dependency versions, the traceback, no secrets), Ctrl-C exits 130 without
a traceback, and a missing optional extra names the `pip install` that adds it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from conftest import REPO_ROOT, needs_extra
from labtax import __version__
from labtax.crash import redact_arguments

# Runs labtax's real entry point after a fault is injected into a *dependency* (never into labtax).
RUNNER = """
import sys
fault = sys.argv.pop(1)
if fault == "yaml-bug":
    import yaml
    def broken(*args, **kwargs):
        raise RuntimeError("boom from a broken dependency, see https://user:hunter2secret@example.com/x")
    yaml.compose = broken
elif fault.startswith("block:"):
    for name in fault[len("block:"):].split(","):
        sys.modules[name] = None  # `import name` now fails as if it were not installed
from labtax.cli import main
sys.exit(main())
"""


def run_labtax(
    fault: str, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUNNER, fault, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_bug_exits_3_with_a_crash_log_naming_the_versions(tmp_path: Path, isolated_environment: Path) -> None:
    env = {**os.environ, "LABTAX_TEACHER_API_KEY": "sk-very-secret-key"}
    leaf = REPO_ROOT / "taxonomy/compositional_skills/writing/freeform/haiku/qna.yaml"
    # Arguments that carry secrets (empty directories here: validation goes on to the real leaf).
    secret_paths = ["https://user:hunter2secret@example.com/leaf", "sk-very-secret-key"]
    for name in secret_paths:
        (tmp_path / name).mkdir(parents=True)
    result = run_labtax("yaml-bug", "validate", *secret_paths, str(leaf), cwd=tmp_path, env=env)
    log = isolated_environment / ".cache" / "labtax" / "labtax.log"
    assert result.returncode == 3, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: an unexpected error occurred (RuntimeError: boom from a broken dependency")
    assert line.endswith(f"the details are in {log}. Please report it.")
    assert "hunter2secret" not in line and "Traceback" not in result.stderr

    text = log.read_text()
    assert f"labtax version: {__version__}" in text
    assert f"sys.version: {' '.join(sys.version.split())}" in text
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    assert f"git --version: {git_version}" in text
    for name in ("pyyaml", "jsonschema", "typer", "gitpython", "pre-commit"):
        assert f"    {name}: {metadata.version(name)}" in text
    assert "libyaml: " in text
    assert "Traceback (most recent call last)" in text and "in broken" in text
    assert "labtax validate https://***@example.com/leaf ***" in text
    # Secrets from the command line, the environment and URLs never reach the log.
    assert "sk-very-secret-key" not in text and "hunter2secret" not in text

    # The next crash replaces the log (it describes the last crash, as pre-commit's does).
    run_labtax("yaml-bug", "check", "--root", str(REPO_ROOT / "taxonomy"), cwd=tmp_path)
    assert log.read_text().count("### version information") == 1 and "labtax check" in log.read_text()


def test_secret_options_are_hidden_in_the_logged_command_line() -> None:
    shown = redact_arguments(["train", "--hub-token", "abc", "--teacher-api-key=xyz", "--target", "4"])
    assert shown == ["train", "--hub-token", "***", "--teacher-api-key=***", "--target", "4"]


def test_a_bug_still_exits_3_when_the_log_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    env = {**os.environ, "LABTAX_CACHE_DIR": str(blocker / "labtax")}
    leaf = REPO_ROOT / "taxonomy/compositional_skills/writing/freeform/haiku/qna.yaml"
    result = run_labtax("yaml-bug", "validate", str(leaf), cwd=tmp_path, env=env)
    assert result.returncode == 3
    [line] = result.stderr.splitlines()
    assert "unexpected error" in line and "details are in" not in line


@needs_extra("generate")
def test_ctrl_c_exits_130_without_a_traceback(tmp_path: Path) -> None:
    """`labtax generate` waits on a teacher that accepts the connection and never answers; Ctrl-C stops it."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.settimeout(120)
    command = [
        sys.executable,
        "-m",
        "labtax.cli",
        "generate",
        "--output",
        str(tmp_path / "gen"),
        "--teacher-url",
        f"http://127.0.0.1:{port}/v1",
        "--teacher-model",
        "silent-teacher",
        "--quiet",
    ]
    # Run in this repository (its taxonomy and documents); only --output is written.
    child = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        connection, _ = listener.accept()  # labtax is now waiting for an answer that never comes
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
        listener.close()
    connection.close()
    assert child.returncode == 130, stderr
    assert "interrupted" in stderr.splitlines()
    assert "Traceback" not in stderr and "unexpected" not in stderr


def test_a_missing_extra_is_named_before_any_work(tmp_path: Path) -> None:
    result = run_labtax("block:peft", "train", "--base-model", "m", "--data", "d", "--output", "o", cwd=tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()  # peft here; in the core install's runs, the first of many missing
    assert re.fullmatch(
        r"error: this needs the 'train' extra, which is not installed \(no module named '\w+'\): "
        r"pip install 'labtax\[train\]'",
        line,
    ), line
    assert not (tmp_path / "o").exists()
    # --help works without the extra.
    assert run_labtax("block:peft", "train", "--help", cwd=tmp_path).returncode == 0


@needs_extra("generate", "train")
def test_a_module_of_an_extra_missing_deeper_down_names_its_extra(tmp_path: Path, tiny_model_dir: Path) -> None:
    """`labtax generate` with a local model as the teacher needs transformers (the `train` extra), which the
    `generate` extra does not bring: the import deep in the teacher becomes the same one-line message."""
    result = run_labtax(
        "block:torch,transformers",
        "generate",
        "--output",
        str(tmp_path / "gen"),
        "--teacher-model",
        str(tiny_model_dir),
        "--target",
        "1",
        cwd=REPO_ROOT,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: this needs the 'train' extra, which is not installed")
    assert result.stderr.splitlines()[-1].endswith("pip install 'labtax[train]'")
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr
