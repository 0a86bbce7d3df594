"""A full disk at any stage: one clear message that names the file, the space it needed and what is free
(exit 1, never a traceback), nothing half-written left behind to be read, and the same command, run again
after space is freed, finishes with exactly what an uninterrupted run writes.

On a real full file system: a small tmpfs in a private mount namespace (tests/full_disk.py), filled with a
ballast file that the test deletes to "free some space"."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from full_disk import small_disk
from labtax.cli import main
from test_train import FAST, metric_lines, write_phase_data

LABTAX = [sys.executable, "-m", "labtax.cli"]


def test_an_atomic_write_on_a_full_disk_names_the_file_and_keeps_the_previous_one(tmp_path: Path) -> None:
    write = (
        "import sys; from pathlib import Path; from labtax.fileio import DiskFullError, write_bytes_atomic\n"
        "try:\n"
        "    write_bytes_atomic(Path(sys.argv[1]), sys.argv[2].encode() * int(sys.argv[3]))\n"
        "except DiskFullError as exc:\n"
        "    print(exc, file=sys.stderr); sys.exit(exc.exit_code)\n"
    )
    with small_disk(tmp_path / "disk", 1 << 20) as disk:
        target = disk.path / "data" / "curation.json"
        disk.check([sys.executable, "-c", write, str(target), "old\n", "1"])
        disk.fill(leave=0)

        failed = disk.run([sys.executable, "-c", write, str(target), "x", str(300_000)])

        assert failed.returncode == 1, failed.stderr
        message = failed.stderr.strip()
        assert message.startswith(f"cannot write {target} (no space left on the device): it needed 293.0 KiB")
        assert "free there" in message and "run the same command again" in message
        assert disk.check(["cat", str(target)]) == "old\n"  # the previous version is untouched
        assert disk.check(["ls", "-A", str(target.parent)]).split() == ["curation.json"]  # no temporary file left

        disk.free()
        disk.check([sys.executable, "-c", write, str(target), "x", str(300_000)])
        assert disk.check(["wc", "-c", str(target)]).split()[0] == "300000"


def test_a_library_that_runs_out_of_space_gets_the_same_message_not_a_crash(tmp_path: Path) -> None:
    """safetensors (what save_pretrained writes with) reports a full disk in its own exception type;
    `entry` maps it to the one message and exit 1 instead of a bug report with a crash log."""
    save = (
        "import sys, torch; from safetensors.torch import save_file; import typer\n"
        "from labtax.cli_utils import entry\n"
        "@entry\n"
        "def command() -> int:\n"
        "    save_file({'weight': torch.zeros(200_000)}, sys.argv[1])\n"
        "    return 0\n"
        "try:\n"
        "    command()\n"
        "except typer.Exit as exc:\n"
        "    sys.exit(exc.exit_code)\n"
    )
    with small_disk(tmp_path / "disk", 256 << 10) as disk:
        failed = disk.run([sys.executable, "-c", save, str(disk.path / "model.safetensors")], env=dict(os.environ))

    assert failed.returncode == 1, failed.stderr
    assert failed.stderr.startswith("error: a write failed (no space left on the device)")
    assert "unexpected error" not in failed.stderr and "Traceback" not in failed.stderr
    assert not (Path(os.environ["LABTAX_CACHE_DIR"]) / "labtax.log").exists()  # no crash log: not a bug


def test_training_stopped_by_a_full_disk_resumes_exactly_once_space_is_freed(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_phase_data(tmp_path / "data")
    settings = [arg for key, value in FAST.items() for arg in ("--set", f"{key}={value}")]
    reference = tmp_path / "reference"
    assert main(["train", "--base-model", str(tiny_model_dir), "--data", str(data), "--output", str(reference),
                 "--quiet", *settings]) == 0  # fmt: skip
    capsys.readouterr()

    with small_disk(tmp_path / "disk", 32 << 20) as disk:
        run = disk.path / "run"
        command = [*LABTAX, "train", "--base-model", str(tiny_model_dir), "--data", str(data), "--output", str(run),
                   "--quiet", *settings]  # fmt: skip
        # Room for the first checkpoint (about 1.3 MB: weights and AdamW's moments), not for the second.
        disk.fill(leave=2 << 20)

        stopped = disk.run(command, env=dict(os.environ))

        assert stopped.returncode == 1, stopped.stderr[-3000:]
        error = stopped.stderr.strip().splitlines()[-1]
        assert error.startswith(f"error: cannot write {run / 'checkpoints'}/.phase1-step"), error
        assert "(no space left on the device): it needed " in error and "free there" in error
        assert error.endswith("(with --resume, to continue this run)") and "Traceback" not in stopped.stderr
        assert "phase1-step00000002" in disk.check(["ls", str(run / "checkpoints")])

        disk.free()
        resumed = disk.run([*command, "--resume"], env=dict(os.environ))

        assert resumed.returncode == 0, resumed.stderr[-3000:]
        disk.copy_out(run, tmp_path / "resumed")
    from safetensors.torch import load_file

    resumed_run = tmp_path / "resumed"
    expected = {(line["phase"], line["step"]): line["loss"] for line in metric_lines(reference)}
    found = {(line["phase"], line["step"]): line["loss"] for line in metric_lines(resumed_run)}
    assert found.keys() == expected.keys()
    assert all(found[key] == pytest.approx(loss, abs=1e-6) for key, loss in expected.items())
    weights, reference_weights = (load_file(run_dir / "final" / "model.safetensors") for run_dir in
                                  (resumed_run, reference))  # fmt: skip
    assert all(bool((weights[name] - tensor).abs().max() <= 1e-6) for name, tensor in reference_weights.items())
    assert json.loads((resumed_run / "training.json").read_text())["status"] == "done"
