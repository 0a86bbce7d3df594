"""Training on what the pipeline really produces from the shipped taxonomy: `labtax generate` with the
stand-in teacher, `labtax curate`, then the step plan at default settings and the README's offline run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from labtax.cli import main
from openai_server import running_server


def curated(output: Path, monkeypatch: pytest.MonkeyPatch, *generate_options: str, curate_config: str = "") -> Path:
    """`labtax generate` over the shipped taxonomy with the stand-in teacher, then `labtax curate`: DATA."""
    monkeypatch.chdir(REPO_ROOT)
    with running_server() as teacher:
        command = ["generate", "--output", str(output / "gen"), "--teacher-url", teacher.url]
        assert main([*command, "--teacher-model", "fake-teacher", "--quiet", *generate_options]) == 0
    settings = []
    if curate_config:
        (output / "curate.toml").write_text(curate_config)
        settings = ["--config", str(output / "curate.toml")]
    assert main(["curate", "--samples", str(output / "gen"), "--output", str(output / "data"), *settings]) == 0
    return output / "data"


def test_every_phase_of_the_shipped_taxonomy_gets_enough_steps_at_default_settings(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Default generation targets (100 knowledge, 50 skill samples per leaf), default training settings:
    each phase gets at least 20 optimizer steps, warms up over a few and reaches its peak (LAB's fixed
    131k-token batch gave each phase 3 steps, all inside a 25-step warm-up)."""
    from transformers import AutoTokenizer

    from labtax.train.config import PHASE_FILES, load_hyperparameters
    from labtax.train.data import encode_rows, read_sample_rows
    from labtax.train.plan import lr_factor, plan_phase

    data = curated(tmp_path, monkeypatch)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    defaults = load_hyperparameters()
    for number, name in PHASE_FILES.items():
        rows = read_sample_rows(data / name)
        encoded = encode_rows(tokenizer, rows, max_length=2048, assistant_only_loss=True, overlength="skip")
        plan = plan_phase(encoded, defaults, number, processes=1, packing=True).plan
        assert plan.samples >= 100, plan
        assert plan.steps >= 20 and plan.warnings == (), plan
        assert 1 <= plan.warmup_steps < plan.steps, plan
        first = lr_factor(0, steps=plan.steps, warmup=plan.warmup_steps, scheduler=plan.lr_scheduler)
        assert first > 0 and plan.learning_rate == 2e-5


def test_the_readme_offline_pipeline_lowers_the_held_out_loss(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """README.md's "whole pipeline, offline", its stand-in variant (tests/test_generate_real.py runs the real
    model's), with default training settings: the tiny model's held-out
    loss goes down (it used to train at learning rate 0, leaving the base weights unchanged)."""
    from safetensors.torch import load_file

    # Knowledge as bare question-answer pairs: the tiny model's 512-token BPE vocabulary spends about four
    # tokens a word, so rows with their documents (test_curate.py, benchmarks/knowledge_mixing.py) would pass
    # the default max_length of 2,048 tokens (a real tokenizer's would not) and cost minutes of CPU here.
    smaller = "[knowledge]\ngrounded_share = 0.0\nraft_share = 0.0\nplain_share = 1.0\n"
    data = curated(tmp_path, monkeypatch, "--target", "8", curate_config=smaller)
    run = tmp_path / "run"
    capsys.readouterr()
    assert main(["train", "--base-model", str(tiny_model_dir), "--data", str(data), "--output", str(run)]) == 0
    printed = capsys.readouterr().err
    assert "phase 1:" in printed and "optimizer steps" in printed and "peak learning rate 2e-05" in printed
    assert "warning" not in printed
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(line["learning_rate"] > 0 for line in metrics)
    trained, base = load_file(run / "final" / "model.safetensors"), load_file(tiny_model_dir / "model.safetensors")
    assert any(bool((trained[name] - base[name]).abs().max() > 0) for name in base)

    evaluation = tmp_path / "eval.json"
    command = ["evaluate", "--model", str(run / "final"), "--baseline", str(tiny_model_dir), "--quiet"]
    assert main([*command, "--output", str(evaluation), "--max-new-tokens", "1"]) == 0
    overall = json.loads(evaluation.read_text())["overall"]
    assert overall["model"]["loss"] < overall["baseline"]["loss"] - 0.02, overall
