"""The training recipe on a tiny offline model, on CPU: both phases, loss, exact resume, LoRA, the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from labtax.cli import main
from labtax.errors import LabtaxError, UsageError
from labtax.train.config import TrainConfig, check_config, load_hyperparameters, parse_override
from labtax.train.recipe import TrainResult, run_training

LONG_LEAF = "knowledge/history/long/qna.yaml"
# Small and fast on two shared CPU cores; a large learning rate so a few steps visibly lower the loss.
FAST: dict[str, Any] = {
    "learning_rate": 3e-3,
    "warmup_steps": 1,
    "max_length": 96,
    "micro_batch_tokens": 192,
    "gradient_accumulation_steps": 2,
    "phase1.epochs": 3,
    "phase2.epochs": 2,
    "checkpoint_every": 2,
}


def sample(question: str, answer: str, leaf: str) -> str:
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return json.dumps({"messages": messages, "metadata": {"leaf": leaf, "leaf_hash": "0" * 64}})


def write_phase_data(directory: Path) -> Path:
    """Curated data in the architecture's Sample format, as `labtax curate` writes it."""
    directory.mkdir(parents=True, exist_ok=True)
    knowledge = [
        sample(
            f"How often do tides rise? ({i})", "Tides rise and fall twice a day.", "knowledge/science/tides/qna.yaml"
        )
        for i in range(12)
    ]
    knowledge.append(sample("Tell me everything. " * 60, "No.", LONG_LEAF))
    skills = [
        sample(
            f"Write a haiku about git ({i}).",
            "Git stores content as blobs and trees.",
            "compositional_skills/haiku/qna.yaml",
        )
        for i in range(12)
    ]
    (directory / "phase1_knowledge.jsonl").write_text("\n".join(knowledge) + "\n", encoding="utf-8")
    (directory / "phase2_skills.jsonl").write_text("\n".join(skills) + "\n", encoding="utf-8")
    return directory


def train(model: Path, data: Path, output: Path, *, resume: bool = False, **overrides: Any) -> TrainResult:
    hyper = load_hyperparameters(None, {**FAST, **overrides})
    return run_training(TrainConfig(str(model), data, output, hyper, resume=resume))


def metric_lines(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def phase_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_phase_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def full_run(tiny_model_dir: Path, phase_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("runs") / "full"
    os.environ["HF_HUB_OFFLINE"] = "1"
    result = train(tiny_model_dir, phase_data, output)
    assert result.completed
    return output


def test_two_phases_lower_the_loss_and_save_a_loadable_model(full_run: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    record = json.loads((full_run / "training.json").read_text(encoding="utf-8"))
    assert record["status"] == "done"
    assert record["data"]["phase1"]["sha256"] and record["hyperparameters"]["learning_rate"] == 3e-3
    phases = record["phases"]
    for number in ("1", "2"):
        assert phases[number]["status"] == "done"
        assert phases[number]["last_loss"] < phases[number]["first_loss"]
        assert phases[number]["packing"].startswith("packed: packed logits match single-sample logits with sdpa")
    lines = metric_lines(full_run)
    assert [(r["phase"], r["step"]) for r in lines] == [(1, s) for s in range(1, 7)] + [(2, s) for s in range(1, 5)]
    assert all(r["tokens_per_s"] > 0 and r["trained_tokens"] > 0 for r in lines)
    assert (full_run / "phase1" / "config.json").is_file()

    model = AutoModelForCausalLM.from_pretrained(full_run / "final")
    tokenizer = AutoTokenizer.from_pretrained(full_run / "final")
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "How often do tides rise?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        generated = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert generated.shape[1] > prompt["input_ids"].shape[1]


def test_overlength_samples_are_reported_per_leaf(full_run: Path) -> None:
    phase1 = json.loads((full_run / "training.json").read_text(encoding="utf-8"))["phases"]["1"]
    assert phase1["rows"] == 13 and phase1["samples"] == 12
    assert phase1["overlength"] == {LONG_LEAF: {"count": 1, "longest": phase1["overlength"][LONG_LEAF]["longest"]}}
    assert phase1["overlength"][LONG_LEAF]["longest"] > 96


def test_the_plan_says_which_samples_are_too_long_before_training(
    tiny_model_dir: Path, phase_data: Path, tmp_path: Path
) -> None:
    plans: list[Any] = []
    hyper = load_hyperparameters(None, {**FAST, "phase1.max_steps": 1, "phase2.max_steps": 1})
    run_training(TrainConfig(str(tiny_model_dir), phase_data, tmp_path / "run", hyper), on_plan=plans.append)
    (plan,) = plans
    assert plan.warnings[0].startswith("phase 1: 1 of 13 samples are longer than max_length=96 tokens (the longest ")
    assert "are skipped; raise max_length" in plan.warnings[0]
    assert not any(w.startswith("phase 2: ") and "max_length" in w for w in plan.warnings)


def test_resumed_run_continues_exactly(tiny_model_dir: Path, phase_data: Path, full_run: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    output = tmp_path / "interrupted"
    halted = train(tiny_model_dir, phase_data, output, halt_after_steps=3)
    assert not halted.completed and halted.phases[0].status == "halted"
    assert (output / "checkpoints" / "phase1-step00000003").is_dir()
    resumed = train(tiny_model_dir, phase_data, output, resume=True)
    assert resumed.completed

    reference = {(r["phase"], r["step"]): r["loss"] for r in metric_lines(full_run)}
    continued = {(r["phase"], r["step"]): r["loss"] for r in metric_lines(output)}
    assert continued.keys() == reference.keys()
    for key, loss in reference.items():
        assert continued[key] == pytest.approx(loss, abs=1e-6), key
    halves, whole = (
        json.loads((run / "training.json").read_text(encoding="utf-8"))["phases"] for run in (output, full_run)
    )
    for key in ("steps_done", "trained_tokens", "input_tokens", "first_loss", "last_loss"):
        assert halves["1"][key] == pytest.approx(whole["1"][key], abs=1e-6), key
    assert not list((output / "checkpoints").iterdir())  # finished phases drop their checkpoints
    final, expected = (
        load_file(output / "final" / "model.safetensors"),
        load_file(full_run / "final" / "model.safetensors"),
    )
    assert all(bool((final[name] - tensor).abs().max() <= 1e-6) for name, tensor in expected.items())


def test_two_processes_train_like_one_process_with_accumulation(
    tiny_model_dir: Path, phase_data: Path, full_run: Path, tmp_path: Path
) -> None:
    """The multi-GPU code path, run on CPU: torchrun starts 2 processes (DDP over gloo) with half the
    accumulation; every step sees the same samples, so the losses match the single-process run."""
    import subprocess
    import sys

    output = tmp_path / "ddp"
    overrides = {**FAST, "gradient_accumulation_steps": 1}
    # --standalone: a free rendezvous port, so parallel test runs on one machine do not collide
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "labtax.cli", "train",
               "--base-model", str(tiny_model_dir), "--data", str(phase_data), "--output", str(output), "--quiet",
               *[arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=240, check=False)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.strip() == str(output / "final")  # printed once, by the main process
    record = json.loads((output / "training.json").read_text(encoding="utf-8"))
    assert record["environment"]["processes"] == 2
    reference = {(r["phase"], r["step"]): r for r in metric_lines(full_run)}
    assert len(metric_lines(output)) == len(reference)
    for line in metric_lines(output):
        expected = reference[(line["phase"], line["step"])]
        assert line["loss"] == pytest.approx(expected["loss"], abs=1e-6)
        assert line["input_tokens"] == expected["input_tokens"]


def test_resume_refuses_different_settings(tiny_model_dir: Path, phase_data: Path, full_run: Path) -> None:
    with pytest.raises(UsageError, match="learning_rate"):
        train(tiny_model_dir, phase_data, full_run, resume=True, learning_rate=1e-4)


def test_incompatible_options_are_refused_before_any_model_loads(
    phase_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hyper = load_hyperparameters(
        None, {"micro_batch_tokens": 64, "max_length": 128, "precision": "bf16", "phase1.epochs": 0}
    )
    config = TrainConfig("/nonexistent/model", phase_data, tmp_path / "out", hyper)
    with pytest.raises(UsageError) as raised:
        run_training(config)
    message = str(raised.value)
    assert "micro_batch_tokens (64) must be at least max_length (128)" in message
    assert "phase1.epochs" in message
    assert not (tmp_path / "out").exists()
    with pytest.raises(UsageError, match="needs a CUDA GPU"):
        check_config(config, cuda_available=False)

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    lora = TrainConfig(
        "/nonexistent/model", phase_data, tmp_path / "out", load_hyperparameters(None, {"method": "lora"})
    )
    with pytest.raises(UsageError, match="method=lora cannot be combined with FSDP"):
        run_training(lora)
    with pytest.raises(UsageError, match="did you mean learning_rate"):
        load_hyperparameters(None, {"learning_rat": 1.0})
    with pytest.raises(UsageError, match="must be an integer"):
        load_hyperparameters(None, {"phase2.epochs": "two"})
    with pytest.raises(UsageError, match="no training data"):
        run_training(TrainConfig("/nonexistent/model", tmp_path, tmp_path / "out", load_hyperparameters()))
    assert parse_override("lr_scheduler=linear") == ("lr_scheduler", "linear")
    assert parse_override('lora_target_modules=["q_proj"]') == ("lora_target_modules", ["q_proj"])


def test_overlength_error_policy_names_the_leaf(tiny_model_dir: Path, phase_data: Path, tmp_path: Path) -> None:
    with pytest.raises(LabtaxError, match=LONG_LEAF):
        train(tiny_model_dir, phase_data, tmp_path / "out", overlength="error")
    assert not (tmp_path / "out").exists()  # the data is encoded before the run directory is written


def cli_train(model: Path | str, data: Path, output: Path, *options: str, **overrides: Any) -> list[str]:
    settings = [arg for key, value in {**FAST, **overrides}.items() for arg in ("--set", f"{key}={value}")]
    return ["train", "--base-model", str(model), "--data", str(data), "--output", str(output), *options, *settings]


def test_a_mistyped_base_model_fails_before_anything_is_written(
    tiny_model_dir: Path, phase_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "run"
    assert main(cli_train("models/tiny-modle", phase_data, output)) == 2
    message = capsys.readouterr().err
    assert "models/tiny-modle: no such local path" in message and "taken as a Hub id" in message
    assert "offline mode" in message  # the tests run with HF_HUB_OFFLINE=1: only the local cache was asked
    assert not output.exists()
    not_a_model = tmp_path / "empty-dir"
    not_a_model.mkdir()
    assert main(cli_train(not_a_model, phase_data, output)) == 2
    assert "taken as a local directory" in capsys.readouterr().err and not output.exists()
    # fixed, the same command runs: nothing was left behind to refuse it
    assert main(cli_train(tiny_model_dir, phase_data, output, "--quiet", **{"phase1.max_steps": 1})) == 0


def test_a_run_killed_before_finishing_anything_is_started_over_by_the_same_command(
    tiny_model_dir: Path, phase_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """kill -9 during phase 1, before any checkpoint: the directory holds a `running` training.json and
    metrics, nothing worth keeping. It used to be refused both ways ("already holds files; pass
    --resume", then "--resume: ... different settings"); now the command starts over."""
    import signal
    import subprocess
    import sys
    import time

    output = tmp_path / "killed"
    slow = {"checkpoint_every": 0, "gradient_accumulation_steps": 1, "micro_batch_tokens": 96, "phase1.epochs": 200}
    command = [sys.executable, "-m", "labtax.cli", *cli_train(tiny_model_dir, phase_data, output, "--quiet", **slow)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (output / "metrics.jsonl").is_file() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        _, stderr = process.communicate(timeout=60)
    assert (output / "metrics.jsonl").is_file(), stderr.decode()[-2000:]
    assert json.loads((output / "training.json").read_text())["status"] == "running"
    assert not (output / "phase1").exists() and not list(output.glob("checkpoints/phase1-step*"))

    # --resume with other settings is not refused for them (there is nothing to resume); this one fails on
    # its data before writing anything, so the killed run's files are still as they were
    before = (output / "training.json").read_bytes()
    assert main(cli_train(tiny_model_dir, phase_data, output, "--resume", "--quiet", overlength="error")) == 2
    assert LONG_LEAF in capsys.readouterr().err
    assert (output / "training.json").read_bytes() == before
    # the same command as at first (settings fixed) starts over and finishes
    assert main(cli_train(tiny_model_dir, phase_data, output, "--quiet")) == 0
    record = json.loads((output / "training.json").read_text())
    assert record["status"] == "done" and record["hyperparameters"]["phase1"]["epochs"] == FAST["phase1.epochs"]
    assert [(line["phase"], line["step"]) for line in metric_lines(output)][:2] == [(1, 1), (1, 2)]
    assert len(metric_lines(output)) == 10  # the killed run's lines are gone


def test_cli_lora_run_merges_the_adapter(
    tiny_model_dir: Path, phase_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    output = tmp_path / "lora"
    overrides = [
        f"{key}={value}"
        for key, value in {**FAST, "method": "lora", "phase1.max_steps": 2, "phase2.max_steps": 1}.items()
    ]
    code = main(["train", "--base-model", str(tiny_model_dir), "--data", str(phase_data), "--output", str(output),
                 "--quiet",
                 *[arg for item in overrides for arg in ("--set", item)]])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.strip() == str(output / "final")
    assert f"warning: {LONG_LEAF}: 1 samples over max_length (skipped" in captured.err
    assert not (output / "final" / "adapter_config.json").exists()
    merged = load_file(output / "final" / "model.safetensors")
    assert not any("lora" in name for name in merged)
    base = load_file(tiny_model_dir / "model.safetensors")
    assert any(bool((merged[name] - base[name]).abs().max() > 0) for name in base if name in merged)
    AutoModelForCausalLM.from_pretrained(output / "final")

    assert main(["train", "--base-model", str(tiny_model_dir), "--data", str(phase_data), "--output", str(output)]) == 2
    assert "pass --resume" in capsys.readouterr().err


def test_packing_falls_back_to_padding_when_the_kernel_lets_samples_see_each_other(
    tiny_model_dir: Path, phase_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real configuration where packing silently breaks: transformers' SDPA kernel registered under a
    new name (as a custom or Hub kernel is). transformers builds no mask for a kernel it has no mask
    function for, so a packed row is one causal sequence, while the model still builds its mask with
    `create_causal_mask` (what the old check looked at). The start-up probe measures it and pads instead;
    padded batches stay exact (right padding under a causal kernel), so the losses equal a padded run's."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    AttentionInterface.register("sdpa_without_mask", sdpa_attention_forward)
    leaky = tmp_path / "leaky"
    steps = {"phase1.max_steps": 3, "phase2.max_steps": 2}
    assert main(cli_train(tiny_model_dir, phase_data, leaky, attn_implementation="sdpa_without_mask", **steps)) == 0
    printed = capsys.readouterr().err
    assert "warning: packing is off: packed logits do not match single-sample logits" in printed
    assert "batches: padded" in printed
    record = json.loads((leaky / "training.json").read_text())
    assert record["plan"]["packing"]["packed"] is False
    assert all(phase["packing"].startswith("padding: ") for phase in record["phases"].values())

    padded = tmp_path / "padded"
    assert main(cli_train(tiny_model_dir, phase_data, padded, "--quiet", packing="false", **steps)) == 0
    assert [line["loss"] for line in metric_lines(leaky)] == pytest.approx(
        [line["loss"] for line in metric_lines(padded)], abs=1e-6
    )
