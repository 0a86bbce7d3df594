"""Influence scoring with a real tiny model on CPU: one SGD step per candidate, weights restored
between candidates, scores journalled (a rerun resumes), unhelpful samples dropped, and
chosen/rejected pairs per teacher prompt written as a preference dataset."""

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
from labtax.records.sample import QUESTION
from test_curate_support import (
    TIDES,
    UNITS,
    knowledge_rows,
    make_project,
    one_request,
    project_leaves,
    unit_rows,
    write_generation,
)

SETTINGS = {"reference_size": 4, "max_tokens": 96, "learning_rate": 0.05}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("influence")
    project = make_project(base / "project")
    leaves = project_leaves(project)
    by_path = {leaf.path: leaf for leaf in leaves}
    rng = random.Random(11)
    rows = {TIDES: knowledge_rows(project, by_path[TIDES], 5, rng), UNITS: unit_rows(by_path[UNITS], 5, rng)}
    write_generation(base / "gen", [by_path[TIDES], by_path[UNITS]], rows)
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
    assert len(journal) == 10 and first.influence_seconds_per_candidate is not None
    report = json.loads((data / "curation.json").read_text())
    assert report["influence"]["candidates_scored"] == 10 and report["influence"]["reference_examples"] == 4

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
    assert len(read_jsonl(data / "influence_journal.jsonl")) == 10, "resumed from the journal, nothing rescored"
    report = json.loads((data / "curation.json").read_text())
    dropped = report["drops"]["influence"]["reasons"]["not-helpful"]["count"]
    assert dropped == sum(1 for s in scores if s <= bar) and second.totals.kept == 10 - dropped

    pairs = read_jsonl(data / "preference_pairs.jsonl")
    assert pairs and report["influence"]["preference_pairs"] == len(pairs)
    for pair in pairs:
        meta = pair["metadata"]
        assert meta["chosen_influence"] > bar >= meta["rejected_influence"]
        assert meta["leaf"] in (TIDES, UNITS) and pair["prompt"][0]["role"] == "system"
        assert pair["chosen"][0]["content"] != pair["rejected"][0]["content"]

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


def test_pairs_are_made_per_teacher_prompt_best_against_worst(setup: dict[str, Any]) -> None:
    from labtax.curate.influence import preference_pairs
    from labtax.curate.settings import InfluenceSettings as Settings

    tides = next(leaf for leaf in setup["leaves"] if leaf.path == TIDES)
    facts = [
        "Tides rise and fall twice a day.",
        "Spring tides follow new and full moons.",
        "Neap tides follow the quarter moons.",
        "The Moon's pull is about twice the Sun's.",
    ]

    def request(*influences: float) -> list[Any]:
        """Candidates proposed by one teacher request (one knowledge_qa answer), with their influence."""
        pairs = [(f"Which fact is number {i} of {influences}?", facts[i % len(facts)]) for i in range(len(influences))]
        made = [candidate(s, TIDES, "knowledge", n) for n, s in enumerate(one_request(tides, pairs), start=1)]
        for c, influence in zip(made, influences, strict=True):
            c.influence = influence
        return made

    first, second, third = request(0.3, -0.2, 0.1, -0.5), request(0.2, 0.0), request(0.4)  # third: nothing bad
    pairs = preference_pairs([*first, *second, *third], Settings(pairs_per_prompt=2))
    by_group = {}
    for pair in pairs:
        by_group.setdefault(pair.metadata.group, []).append(pair)
    assert len(by_group) == 2 and len(pairs) == 3
    ids = {(p.metadata.chosen_sample_id, p.metadata.rejected_sample_id) for p in pairs}
    assert ids == {
        (first[0].sample_id, first[3].sample_id),
        (first[2].sample_id, first[1].sample_id),
        (second[0].sample_id, second[1].sample_id),
    }
    for group, made in ((first[0].group, first), (second[0].group, second)):
        asked = made[0].sample.metadata.exchange_that_wrote(QUESTION)
        assert asked is not None
        for pair in by_group[group]:
            assert pair.prompt == asked.messages  # the prompt the teacher was sent, as generation recorded it
            assert pair.metadata.prompt_stage == "knowledge_qa"
            chosen = next(c for c in made if c.sample_id == pair.metadata.chosen_sample_id)
            # the sample's own part of the teacher's answer, in the stage's free-text format
            assert pair.chosen[0].content == f"Q: {chosen.question}\nA: {chosen.answer}"


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
    assert report["influence"]["candidates_scored"] == 3 and report["influence"]["candidates_unscored"] == 7
    assert report["settings"]["influence"]["student"] == str(tiny_model_dir.resolve())
