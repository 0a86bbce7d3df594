"""A half-written or changed stage output is never consumed: curation.json and training.json are each
stage's manifest of hashes, written last, and the next stage refuses a directory that does not match
(labtax.fileio.check_hashes): training refuses DATA, evaluation and release refuse RUN/final."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, shipped_project
from full_disk import small_disk
from labtax.cli import main
from openai_server import running_server
from test_train import FAST, write_phase_data

LABTAX = [sys.executable, "-m", "labtax.cli"]

LEAVES = (
    "compositional_skills/writing/freeform/haiku",
    "compositional_skills/extraction/json/invoice_fields",
    "knowledge/science/oceanography/ocean_tides",
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = shipped_project(tmp_path / "project", LEAVES)
    monkeypatch.chdir(root)
    return root


def test_a_half_written_curation_output_is_never_trained_on(project: Path, tiny_model_dir: Path) -> None:
    from labtax.records.curation import PHASE1_FILE, PHASE2_FILE
    from labtax.records.curation import REPORT_FILE as REPORT

    gen = project / "gen"
    with running_server() as teacher:
        assert main(["generate", "-o", str(gen), "--teacher-url", teacher.url, "--teacher-model", "fake-teacher",
                     "--quiet", "--target", "4"]) == 0  # fmt: skip
    # The sizes of a default curation's files, for the disk below (on a disk with room to spare).
    assert main(["curate", "--samples", str(gen), "--output", str(project / "scratch"), "--quiet"]) == 0
    sizes = {name: (project / "scratch" / name).stat().st_size for name in (PHASE1_FILE, PHASE2_FILE)}
    assert sizes[PHASE2_FILE] > (32 << 10)  # the skills file, written second, needs more than the slack left below
    # A first, small curation: one sample per leaf and no seeds. Its phase-1 file is freed when the default
    # run replaces it, so the default phase-2 file must need more than that and the slack left below.
    (project / "one.toml").write_text("[select]\nmax_per_leaf = 1\n\n[mix]\nseeds = false\n")
    environment = dict(os.environ)
    with small_disk(project / "disk", 4 << 20) as disk:
        data = disk.path / "data"
        curate = [*LABTAX, "curate", "--samples", str(gen), "--output", str(data), "--quiet"]
        disk.check([*curate, "--config", str(project / "one.toml")])  # a first, small curation
        small = int(disk.check(["stat", "-c", "%s", str(data / PHASE1_FILE)]))
        assert sizes[PHASE2_FILE] > small + (8 << 10) + (8 << 10), (sizes, small)
        before = {name: disk.check(["sha256sum", str(data / name)]) for name in (PHASE1_FILE, PHASE2_FILE, REPORT)}

        # The default curation, on a disk with room for its phase-1 file but not its phase-2 file: the first
        # is replaced, the second is not, and curation.json still describes the first run.
        disk.fill(leave=sizes[PHASE1_FILE] + (8 << 10))
        stopped = disk.run(curate, cwd=project, env=environment)
        assert stopped.returncode == 1, stopped.stderr
        assert f"error: cannot write {data / PHASE2_FILE} (no space left on the device)" in stopped.stderr
        after = {name: disk.check(["sha256sum", str(data / name)]) for name in before}
        assert after[PHASE1_FILE] != before[PHASE1_FILE]
        assert after[PHASE2_FILE] == before[PHASE2_FILE] and after[REPORT] == before[REPORT]
        disk.free()

        run = disk.path / "run"
        settings = [arg for key, value in {**FAST, "max_length": 4096, "micro_batch_tokens": 8192}.items()
                    for arg in ("--set", f"{key}={value}")]  # fmt: skip
        train = [*LABTAX, "train", "--base-model", str(tiny_model_dir), "--data", str(data), "--output", str(run),
                 *settings]  # fmt: skip
        refused = disk.run(train, cwd=project, env=environment)
        assert refused.returncode == 1, refused.stderr
        assert f"error: {data} does not match {data / 'curation.json'} ({PHASE1_FILE} differs" in refused.stderr
        assert "run `labtax curate` with --output" in refused.stderr
        assert disk.run(["test", "-e", str(run)]).returncode == 1  # refused before anything was written

        disk.check(curate)  # the same command again, with space: the files match their manifest
        check = "import sys, pathlib, labtax.records.curation as c; c.check_curated_data(pathlib.Path(sys.argv[1]))"
        disk.check([sys.executable, "-c", check, str(data)])


def test_evaluation_refuses_a_model_of_an_unfinished_or_changed_training_run(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_phase_data(tmp_path / "data")
    run = tmp_path / "run"
    settings = [arg for key, value in {**FAST, "phase1.epochs": 1, "phase2.epochs": 1}.items()
                for arg in ("--set", f"{key}={value}")]  # fmt: skip
    assert main(["train", "--base-model", str(tiny_model_dir), "--data", str(data), "--output", str(run),
                 "--quiet", *settings]) == 0  # fmt: skip
    record = json.loads((run / "training.json").read_text())
    assert record["status"] == "done"
    assert set(record["outputs"]) == {f"final/{p.name}" for p in (run / "final").iterdir()}

    def evaluate() -> tuple[int, str]:
        code = main(["evaluate", "--model", str(run / "final"), "--baseline", str(tiny_model_dir),
                     "--root", str(REPO_ROOT / "taxonomy"), "--output", str(tmp_path / "eval.json")])  # fmt: skip
        return code, capsys.readouterr().err

    capsys.readouterr()
    config = run / "final" / "config.json"
    config.write_text(config.read_text().replace('"use_cache": true', '"use_cache": false'))
    code, message = evaluate()
    assert code == 1
    assert f"error: {run / 'final'} does not match {run / 'training.json'} (config.json differs" in message

    record["status"] = "running"
    (run / "training.json").write_text(json.dumps(record))
    code, message = evaluate()
    assert code == 1 and "belongs to a training run that has not finished (status 'running')" in message

    # A damaged record names its file and field; one of a newer labtax is never guessed at.
    (run / "training.json").write_text(json.dumps({**record, "phases": {"1": {"status": "done"}}}))
    code, message = evaluate()
    assert code == 1 and f"{run / 'training.json'}: phases.1.phase: Field required" in message
    assert f"remove {run} (or train into another --output) and run again" in message and "Traceback" not in message
    # An older record of the same format, without the resolved base model, is still read.
    (run / "training.json").write_text(json.dumps({k: v for k, v in record.items() if k != "base_model_resolved"}))
    code, message = evaluate()
    assert code == 1 and "belongs to a training run that has not finished (status 'running')" in message
    (run / "training.json").write_text(json.dumps({**record, "format": "labtax-training/2"}))
    code, message = evaluate()
    assert code == 2 and "written by a newer labtax" in message
    assert not (tmp_path / "eval.json").exists()
