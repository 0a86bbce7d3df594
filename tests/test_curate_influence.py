"""Influence scoring with a real tiny model on CPU: one SGD step per candidate, weights restored
between candidates, scores journalled (a rerun resumes), unhelpful samples dropped, the reference set
kept apart from the evaluation's held-out seeds, and chosen/rejected pairs of the teacher's own answers
to one prompt written as a preference dataset."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path
from typing import Any

import pytest

from labtax.curate import CurationConfig, InfluenceSettings, run_curation
from labtax.curate.influence import ReferenceExample, encode_exchange, score_candidates
from labtax.curate.samples import candidate, read_candidates
from labtax.records.generation import read_generation_index
from test_curate_support import (
    HAIKU,
    TIDES,
    UNITS,
    candidate_answers,
    knowledge_rows,
    make_project,
    one_request,
    project_leaves,
    unit_rows,
    write_generation,
)

SETTINGS = {"reference_size": 4, "max_tokens": 96, "learning_rate": 0.05}
CANDIDATES_KM = [
    "Multiply by 0.621371: 12 kilometres is about 7.46 miles.",
    "12 km × 0.621371 = 7.456 mi, so roughly 7.5 miles.",
    "About seven and a half miles.",
]
CANDIDATES_OZ = [
    "One ounce is 28.3495 grams, so 3 ounces are about 85.05 grams.",
    "3 × 28.35 g ≈ 85 g.",
    "Roughly eighty-five grams.",
]
SCORED = 16  # 5 knowledge samples, 5 unit conversions, 2 prompts × 3 candidate answers


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("influence")
    project = make_project(base / "project")
    leaves = project_leaves(project)
    by_path = {leaf.path: leaf for leaf in leaves}
    rng = random.Random(11)
    units = by_path[UNITS]
    candidates = [  # the teacher answered each of these two prompts three times: material for pairs
        *candidate_answers(units, "Convert 12 kilometres to miles.", CANDIDATES_KM),
        *candidate_answers(units, "How many grams are there in 3 ounces?", CANDIDATES_OZ),
    ]
    rows = {TIDES: knowledge_rows(project, by_path[TIDES], 5, rng), UNITS: [*unit_rows(units, 5, rng), *candidates]}
    write_generation(base / "gen", [by_path[TIDES], units], rows)
    return {"base": base, "project": project, "leaves": leaves}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_influence_drops_unhelpful_samples_exports_pairs_and_resumes(
    setup: dict[str, Any], tiny_model_dir: Path
) -> None:
    base, leaves = setup["base"], setup["leaves"]
    data = base / "data"
    settings = InfluenceSettings(enabled=True, student=tiny_model_dir, **SETTINGS)
    config = CurationConfig(
        samples_dir=base / "gen", output_dir=data, taxonomy_root=setup["project"], influence=settings
    )
    first = run_curation(config, leaves)
    journal = read_jsonl(data / "influence_journal.jsonl")
    assert len(journal) == SCORED and first.influence_seconds_per_candidate is not None
    report = json.loads((data / "curation.json").read_text())
    assert report["influence"]["candidates_scored"] == SCORED and report["influence"]["reference_examples"] == 4

    # Keep only the better half: the rerun reads every score from the journal instead of recomputing.
    scores = sorted(record["influence"] for record in journal)
    bar = statistics.median(scores)
    stricter = CurationConfig(
        samples_dir=base / "gen",
        output_dir=data,
        taxonomy_root=setup["project"],
        influence=InfluenceSettings(enabled=True, student=tiny_model_dir, min_influence=bar, **SETTINGS),
    )
    second = run_curation(stricter, leaves)
    assert len(read_jsonl(data / "influence_journal.jsonl")) == SCORED, "resumed from the journal, nothing rescored"
    report = json.loads((data / "curation.json").read_text())
    dropped = report["drops"]["influence"]["reasons"]["not-helpful"]["count"]
    assert dropped == sum(1 for s in scores if s <= bar) and second.totals.kept == SCORED - dropped

    # Pairs only where the teacher answered one prompt several times: the two prompts with candidates.
    pairs = read_jsonl(data / "preference_pairs.jsonl")
    assert len(pairs) == 2 and report["influence"]["preference_pairs"] == 2
    answers = {tuple(CANDIDATES_KM), tuple(CANDIDATES_OZ)}
    for pair in pairs:
        meta = pair["metadata"]
        assert meta["leaf"] == UNITS and meta["prompt_stage"] == "response"
        assert meta["chosen_influence"] > meta["rejected_influence"]
        assert [m["role"] for m in pair["prompt"]] == ["system", "user"]  # the conversation the teacher had
        chosen, rejected = (pair[side][0]["content"] for side in ("chosen", "rejected"))
        assert any({chosen, rejected} <= set(group) for group in answers) and chosen != rejected

    from datasets import load_dataset

    loaded = load_dataset("json", data_files=str(data / "preference_pairs.jsonl"), split="train")
    assert set(loaded.column_names) >= {"prompt", "chosen", "rejected"}


def test_weights_are_restored_between_candidates(setup: dict[str, Any], tiny_model_dir: Path, tmp_path: Path) -> None:
    leaves = {leaf.path: leaf for leaf in setup["leaves"]}
    entry = read_generation_index(setup["base"] / "gen").entry(UNITS)
    assert entry is not None
    candidates, _ = read_candidates(setup["base"] / "gen", entry)
    reference = [
        ReferenceExample(UNITS, ({"role": "user", "content": p.question}, {"role": "assistant", "content": p.answer}))
        for p in leaves[UNITS].qna_pairs[:3]
    ]
    settings = InfluenceSettings(enabled=True, student=tiny_model_dir, **SETTINGS)
    both = score_candidates(candidates[:2], reference, settings, 0, tmp_path / "a.jsonl")
    alone = score_candidates(candidates[1:2], reference, settings, 0, tmp_path / "b.jsonl")
    second = candidates[1].sample_id
    assert both.scores[second] == alone.scores[second], "the first candidate's step was undone"
    assert both.reference_loss == alone.reference_loss
    assert both.scores[candidates[0].sample_id] != both.scores[second]


def test_long_prompts_are_cut_from_the_start_so_the_answer_is_learned(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [
        {"role": "user", "content": "context " * 400 + "What is the tide?"},
        {"role": "assistant", "content": "The sea rising."},
    ]
    ids, labels = encode_exchange(tokenizer, messages, 64)
    assert len(ids) == 64
    learned = tokenizer.decode([i for i, label in zip(ids, labels, strict=True) if label != -100])
    assert learned.startswith("The sea rising.")


def test_pairs_hold_two_answers_to_the_same_prompt_best_against_worst(setup: dict[str, Any]) -> None:
    from labtax.curate.influence import preference_pairs
    from labtax.curate.settings import InfluenceSettings as Settings

    leaves = {leaf.path: leaf for leaf in setup["leaves"]}

    def scored(samples: list[Any], *influences: float) -> list[Any]:
        made = [candidate(s, s.metadata.leaf, "x", n) for n, s in enumerate(samples, start=1)]
        for c, influence in zip(made, influences, strict=True):
            c.influence = influence
        return made

    four = scored(
        candidate_answers(leaves[HAIKU], "Write a haiku about snow.", ["snow a", "snow b", "snow c", "snow d"]),
        0.3, -0.2, 0.1, -0.5,
    )  # fmt: skip
    two = scored(candidate_answers(leaves[HAIKU], "Write a haiku about ice.", ["ice a", "ice b"]), 0.2, 0.2)
    # A knowledge request's pairs share one prompt but are parts of one answer: nothing to prefer.
    one_answer = scored(one_request(leaves[TIDES], [("What is a tide?", "The sea rising."), ("Why?", "The Moon.")]),
                        0.4, -0.4)  # fmt: skip
    pairs = preference_pairs([*four, *two, *one_answer], Settings(pairs_per_prompt=2))
    assert [(p.metadata.chosen_sample_id, p.metadata.rejected_sample_id) for p in pairs] == [
        (four[0].sample_id, four[3].sample_id),
        (four[2].sample_id, four[1].sample_id),
    ]  # best against worst, then second best against second worst; equal answers make no pair
    answered = four[0].answered_by
    assert answered is not None
    for pair in pairs:
        assert pair.prompt == answered.messages  # the prompt the teacher was sent, as generation recorded it
        assert pair.metadata.prompt_stage == "response" and pair.metadata.group == f"{HAIKU}#{answered.request_id}"
    assert [p.chosen[0].content for p in pairs] == ["snow a", "snow c"]
    assert [p.rejected[0].content for p in pairs] == ["snow d", "snow b"]


def test_reference_set_is_the_training_seeds_never_the_held_out_ones(setup: dict[str, Any]) -> None:
    from labtax.curate.influence import reference_set
    from labtax.taxonomy.leaf import heldout_pairs, training_seeds

    leaves = setup["leaves"]
    reference = reference_set(leaves, 1000, 0)
    asked = {example.messages[0]["content"].rpartition("\n\n")[2] for example in reference}
    held_out = {pair.question for leaf in leaves for _, pair in heldout_pairs(leaf)}
    assert held_out and not asked & held_out, "influence must not select data for the evaluation's questions"
    trained = {pair.question for leaf in leaves for seed in training_seeds(leaf) for pair in seed.qna}
    assert asked == trained - held_out
    assert len(reference_set(leaves, 4, 0)) == 4


def test_cli_influence(
    setup: dict[str, Any],
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from labtax.cli import main

    monkeypatch.chdir(setup["project"])
    settings = tmp_path / "curate.toml"
    settings.write_text("[influence]\nreference_size = 4\nmax_tokens = 96\nmax_candidates = 3\n")
    args = [
        "curate",
        "--samples",
        str(setup["base"] / "gen"),
        "--output",
        str(tmp_path / "data"),
        "--config",
        str(settings),
    ]
    assert (
        main([*args, "--influence", "--student", str(tiny_model_dir), "--root", str(setup["project"] / "taxonomy")])
        == 0
    )
    captured = capsys.readouterr()
    assert "s per candidate" in captured.err
    report = json.loads((tmp_path / "data" / "curation.json").read_text())
    assert report["influence"]["candidates_scored"] == 3 and report["influence"]["candidates_unscored"] == SCORED - 3
    assert report["settings"]["influence"]["student"] == str(tiny_model_dir.resolve())
