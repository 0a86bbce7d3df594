"""`labtax evaluate` on a tiny offline model: eval.json and eval.md per leaf, and the regression gate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from labtax.cli import main
from labtax.markdown import text
from labtax.train.evaluate import exact_match, normalise_answer, token_f1

REPO_TAXONOMY = Path(__file__).resolve().parents[1] / "taxonomy"
LEAVES = ("knowledge/science/oceanography/ocean_tides", "compositional_skills/writing/freeform/haiku")
TIDES = "knowledge/science/oceanography/ocean_tides/qna.yaml"
HAIKU = "compositional_skills/writing/freeform/haiku/qna.yaml"


@pytest.fixture(scope="module")
def taxonomy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-leaf taxonomy (one knowledge leaf, one freeform skill) copied from the repository's own."""
    root = tmp_path_factory.mktemp("project") / "taxonomy"
    for leaf in LEAVES:
        shutil.copytree(REPO_TAXONOMY / leaf, root / leaf)
    return root


@pytest.fixture(scope="module")
def first_eval(tiny_model_dir: Path, taxonomy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("eval") / "v1" / "eval.json"
    code = main(["evaluate", "--model", str(tiny_model_dir), "--baseline", str(tiny_model_dir), "--root", str(taxonomy),
                 "--output", str(output), "--max-new-tokens", "6", "--quiet"])  # fmt: skip
    assert code == 0
    return output


def test_eval_json_scores_every_leaf_for_model_and_baseline(first_eval: Path) -> None:
    report = json.loads(first_eval.read_text(encoding="utf-8"))
    assert report["format"] == "labtax-eval/1"
    leaves = {leaf["leaf"]: leaf for leaf in report["leaves"]}
    assert set(leaves) == {TIDES, HAIKU}
    tides, haiku = leaves[TIDES], leaves[HAIKU]
    assert tides["pairs"] == 5 and haiku["pairs"] == 1  # the last pair of each knowledge seed; the last skill seed
    for leaf in (tides, haiku):
        assert leaf["model"]["tokens"] > 0 and leaf["model"]["perplexity"] > 1
        assert leaf["model"]["loss"] == pytest.approx(leaf["baseline"]["loss"])  # the same weights on both sides
    assert tides["model"]["answers"] == 5 and len(tides["answers"]) == 5
    assert {"answer", "exact_match", "f1"} <= set(tides["answers"][0]["model"])
    assert haiku["model"]["exact_match"] is None  # skills are scored by loss only
    # No previous release: the gate compares with the base model (the same weights here, so it passes).
    assert report["gate"]["status"] == "pass" and report["gate"]["compared_with"] == ["base model"]
    markdown = first_eval.with_suffix(".md").read_text(encoding="utf-8")
    assert f"| {text(TIDES)} | knowledge | 5 |" in markdown and "**overall**" in markdown


def test_gate_passes_against_an_equal_release_and_leaked_questions_are_reported(
    tiny_model_dir: Path, taxonomy: Path, first_eval: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    leaked = next(
        leaf for leaf in json.loads(first_eval.read_text(encoding="utf-8"))["leaves"] if leaf["leaf"] == TIDES
    )
    question = leaked["answers"][0]["question"]
    data = tmp_path / "data"
    data.mkdir()
    row = {
        "messages": [
            {"role": "user", "content": f"Quick one: {question.upper()}"},
            {"role": "assistant", "content": "x"},
        ]
    }
    (data / "phase1_knowledge.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    output = tmp_path / "eval.json"
    code = main(["evaluate", "--model", str(tiny_model_dir), "--baseline", str(tiny_model_dir), "--root", str(taxonomy),
                 "--output", str(output), "--previous", str(first_eval), "--max-new-tokens", "6",
                 "--data", str(data), "--quiet"])  # fmt: skip
    assert code == 0
    assert f"warning: {TIDES}: held-out question found in the training data: {question}" in capsys.readouterr().err
    report = json.loads(output.read_text(encoding="utf-8"))
    assert {leaf["leaf"]: leaf["contaminated"] for leaf in report["leaves"]} == {TIDES: [question], HAIKU: []}
    gate = report["gate"]
    assert gate["status"] == "pass" and gate["compared_leaves"] == 2 and gate["failures"] == []


def test_gate_fails_on_a_regression(
    tiny_model_dir: Path, taxonomy: Path, first_eval: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The previous release did much better on the tides leaf; its haiku pairs changed since,
    # so that leaf is not compared.
    previous = json.loads(first_eval.read_text(encoding="utf-8"))
    for leaf in previous["leaves"]:
        if leaf["leaf"] == TIDES:
            leaf["model"]["nll_sum"] /= 2
            leaf["model"]["exact_matches"], leaf["model"]["f1_sum"] = 5, 5.0
        else:
            leaf["heldout_hash"] = "0" * 64
    better = tmp_path / "previous.json"
    better.write_text(json.dumps(previous), encoding="utf-8")
    output = tmp_path / "eval.json"
    code = main(["evaluate", "--model", str(tiny_model_dir), "--baseline", str(tiny_model_dir), "--root", str(taxonomy),
                 "--output", str(output), "--previous", str(better), "--max-new-tokens", "6"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "regression gate failed" in err
    assert f"{TIDES}: held-out loss rose 100.0%" in err
    assert "knowledge exact match fell 1.000" in err
    gate = json.loads(output.read_text(encoding="utf-8"))["gate"]
    assert gate["status"] == "fail" and gate["compared_leaves"] == 1
    assert "## Regression gate: fail" in output.with_suffix(".md").read_text(encoding="utf-8")

    # Thresholds are configurable: loose enough, the same comparison passes.
    loose = [
        "--max-loss-increase",
        "2",
        "--max-leaf-loss-increase",
        "2",
        "--max-exact-match-drop",
        "1",
        "--max-f1-drop",
        "1",
    ]
    assert main(["evaluate", "--model", str(tiny_model_dir), "--baseline", str(tiny_model_dir), "--root", str(taxonomy),
                 "--output", str(output), "--previous", str(better), "--max-new-tokens", "6", "--quiet",
                 *loose]) == 0  # fmt: skip


def test_bad_previous_file_is_a_usage_error_before_models_load(
    taxonomy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "eval.json"
    bogus.write_text('{"format": "something-else"}', encoding="utf-8")
    code = main(["evaluate", "--model", "/nonexistent", "--baseline", "/nonexistent", "--root", str(taxonomy),
                 "--previous", str(bogus), "--output", str(tmp_path / "out.json")])  # fmt: skip
    assert code == 2
    assert "not a labtax eval.json" in capsys.readouterr().err
    assert main(["evaluate", "--model", "/x", "--baseline", "/x", "--root", str(taxonomy), "--max-f1-drop", "-1"]) == 2


def test_answer_scoring_follows_squad_normalisation() -> None:
    assert normalise_answer("The Tides, rise!") == "tides rise"
    assert exact_match("the answer is 42.", "Answer is 42")
    assert not exact_match("42", "forty-two")
    assert token_f1("tides rise twice", "tides rise and fall twice a day") == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0
