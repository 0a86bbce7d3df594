"""Curation end to end on a real (copied) taxonomy and a generation directory in `labtax generate`'s
layout: every junk row is dropped for its own reason, held-out questions never reach training data,
outputs load with `datasets`, and the same inputs and seed give the same bytes."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from labtax.cli import main
from labtax.config import load_config
from labtax.curate import (
    CurationConfig,
    DedupSettings,
    FilterSettings,
    KnowledgeSettings,
    MixSettings,
    SelectSettings,
    run_curation,
)
from labtax.curate.filters import build_filters, first_failure
from labtax.curate.samples import Candidate
from labtax.curate.samples import candidate as make_candidate
from labtax.curate.select import k_center_greedy, ngram_vectors, select_diverse
from labtax.errors import UsageError
from labtax.neardup import find_near_duplicates
from labtax.taxonomy.leaf import Leaf, heldout_pairs
from labtax.text import jaccard, normalise, shingles
from labtax.validate import load_leaves
from test_curate_support import (
    DOCUMENTS,
    GIT,
    HAIKU,
    REPO_ROOT,
    TIDES,
    UNITS,
    build_generation,
    knowledge_rows,
    make_project,
    project_leaves,
    row,
    unit_rows,
    write_generation,
)

OUTPUT_FILES = ("phase1_knowledge.jsonl", "phase2_skills.jsonl", "curation.json", "dropped.jsonl")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def curated(project: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One default curation run shared by the read-only assertions."""
    base = tmp_path_factory.mktemp("curated")
    generation = build_generation(project, base / "gen")
    config = CurationConfig(
        samples_dir=generation.directory, output_dir=base / "data", taxonomy_root=project / "taxonomy"
    )
    result = run_curation(config)
    report = json.loads((base / "data" / "curation.json").read_text(encoding="utf-8"))
    return {"generation": generation, "config": config, "result": result, "report": report, "data": base / "data"}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@functools.cache
def tides_leaf() -> Leaf:
    return next(leaf for leaf in load_leaves(load_config(REPO_ROOT)).leaves if leaf.path == TIDES)


def candidate(question: str, answer: str, *, finish_reason: str = "stop") -> Candidate:
    """A knowledge sample of the tides leaf, as generation writes it."""
    return make_candidate(row(tides_leaf(), question, answer, finish_reason=finish_reason), TIDES, "knowledge", 1)


# --- filters, one at a time ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "answer", "metadata", "reason"),
    [
        ("What is a tide?", "", {}, "empty:empty-answer"),
        ("", "Tides are the rise and fall of the sea.", {}, "empty:empty-question"),
        ("What is a tide?", "Tides rise and fall twice a day.", {"finish_reason": "length"}, "truncated:truncated"),
        ("Tide?", "Tides rise and fall twice a day.", {}, "length:question-too-short"),
        ("What is a tide?", "word " * 2500 + "end.", {}, "length:answer-too-long"),
        ("What is a tide?", "As an AI, I do not have a view on the sea.", {}, "refusal:refusal"),
        ("What is a tide?", "I cannot help with that request.", {}, "refusal:refusal"),
        ("Why is the sky blue today?", "Why is the sky blue today", {}, "copies-question:copies-question"),
        ("Who wrote the report?", "Ask jane.doe@acme-corp.com for the report.", {}, "pii:pii-email"),
        ("Who do I call?", "Call (555) 123-4567 after nine in the morning.", {}, "pii:pii-phone"),
        ("Which token?", "Use ghp_" + "a1B2" * 9 + " for the repository.", {}, "pii:pii-github-token"),
        (
            "Which token?",
            "Set HF_TOKEN to hf_" + "AbCdEfGhIj" * 3 + "Kl in the shell.",
            {},
            "pii:pii-huggingface-token",
        ),
        ("What is the config?", "password = 'hunter2hunter2hunter2'", {}, "pii:pii-credential-assignment"),
        (
            "Was ist eine Springflut?",
            "Eine Springflut entsteht, wenn Sonne und Mond in einer Linie stehen.",
            {},
            "language:wrong-language",
        ),
    ],
)
def test_each_filter_drops_its_junk(question: str, answer: str, metadata: dict[str, Any], reason: str) -> None:
    failure = first_failure(build_filters(FilterSettings()), candidate(question, answer, **metadata))
    assert failure is not None
    name, verdict = failure
    assert f"{name}:{verdict.reason}" == reason


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("How long is a lunar day?", "About 24 hours and 50 minutes."),
        ("Give an example e-mail address for documentation.", "Use someone@example.com, a reserved example domain."),
        (
            "Write a haiku about rain.",
            "Grey light on the stones\nthe river carries what it cannot keep\nnobody answers.",
        ),
        ("What is 1.5 kWh in MJ?", "5.4 MJ"),  # too short for the language check: kept
        ("Write Python that adds one.", "```python\ndef add_one(x):\n    return x + 1\n```"),
        ("When did Apollo 11 land?", "On 20 July 1969, at 20:17 UTC, in the Sea of Tranquillity."),
    ],
)
def test_good_samples_pass_every_filter(question: str, answer: str) -> None:
    assert first_failure(build_filters(FilterSettings()), candidate(question, answer)) is None


def test_filters_can_be_switched_off_and_translation_leaves_skipped() -> None:
    german = candidate(
        "Übersetze bitte diesen Satz ins Deutsche.", "Die Katze sitzt auf der warmen Fensterbank in der Sonne."
    )
    assert first_failure(build_filters(FilterSettings(enabled=("empty",))), german) is None
    skipping = FilterSettings(language_skip_leaves=("knowledge/science/*",))
    assert first_failure(build_filters(skipping), german) is None


# --- the whole stage --------------------------------------------------------------------------------


def test_every_junk_row_is_dropped_for_its_reason_and_every_good_row_kept(curated: dict[str, Any]) -> None:
    report, generation = curated["report"], curated["generation"]
    found: dict[str, int] = {}
    for stage, entry in report["drops"].items():
        for reason, detail in entry["reasons"].items():
            found[f"{stage}/{reason}"] = detail["count"]
            assert detail["examples"], "every reason comes with examples"
    assert found == generation.expected_drops
    assert report["totals"]["kept"] == generation.good_rows
    assert report["totals"]["read"] == generation.good_rows + sum(generation.expected_drops.values())


def test_counts_per_leaf_add_up(curated: dict[str, Any]) -> None:
    report = curated["report"]
    for leaf, counts in report["leaves"].items():
        assert counts["read"] == counts["kept"] + sum(counts["dropped"].values()), leaf
    assert report["leaves"][TIDES]["dropped"]["filter/language:wrong-language"] == 1
    # The report may be published with the data: PII drops show where, never what.
    published = json.dumps(report) + (curated["data"] / "dropped.jsonl").read_text()
    assert (
        "john.smith" not in published
        and "mary.jones" not in published
        and "7946 0958" not in published
        and "AKIAIOSFODNN7EXAMPLE" not in published
    )
    assert report["leaves"][GIT]["kind"] == "knowledge"
    units = report["leaves"][UNITS]  # its kept samples and its training seeds ([mix] seeds), nothing else
    assert units["seeds"] > 0 and units["phase2_rows"] == units["kept"] + units["seeds"]
    assert report["totals"]["seeds_added"] == sum(c["seeds"] for c in report["leaves"].values())
    assert sum(c["phase1_rows"] for c in report["leaves"].values()) == report["mix"]["phase1_rows"]


def test_every_training_seed_joins_its_phase_and_no_held_out_seed_does(curated: dict[str, Any]) -> None:
    from labtax.taxonomy.leaf import LeafKind, training_seeds

    rows = {name: read_jsonl(curated["data"] / name) for name in OUTPUT_FILES[:2]}
    for leaf in curated["generation"].leaves:
        phase = OUTPUT_FILES[0] if leaf.kind is LeafKind.KNOWLEDGE else OUTPUT_FILES[1]
        seeds = [
            row for row in rows[phase] if row["metadata"]["leaf"] == leaf.path and row["metadata"]["pipeline"] == "seed"
        ]
        asked = {row["messages"][0]["content"].rpartition("\n\n")[2] for row in seeds}
        wanted = {pair.question for seed in training_seeds(leaf) for pair in seed.qna}
        assert wanted and wanted <= asked, leaf.path  # knowledge seeds with their documents, as generated pairs are
        assert not {pair.question for _, pair in heldout_pairs(leaf)} & asked, leaf.path


def test_no_held_out_question_reaches_training_data(curated: dict[str, Any]) -> None:
    held_out = {normalise(pair.question) for leaf in curated["generation"].leaves for _, pair in heldout_pairs(leaf)}
    for name in OUTPUT_FILES[:2]:
        for sample in read_jsonl(curated["data"] / name):
            for message in sample["messages"]:
                text = f" {normalise(message['content'])} "
                assert not any(f" {question} " in text for question in held_out), message["content"]


def test_phase1_is_knowledge_short_answers_first_and_phase2_is_skills_plus_replay(curated: dict[str, Any]) -> None:
    phase1 = read_jsonl(curated["data"] / "phase1_knowledge.jsonl")
    phase2 = read_jsonl(curated["data"] / "phase2_skills.jsonl")
    assert {r["metadata"]["leaf"] for r in phase1} == {TIDES, GIT}
    forms = [r["metadata"]["form"] for r in phase1]
    assert forms == sorted(forms, key=["grounded", "raft", "plain"].index), "documents first, then RAFT rows"
    for form in set(forms):  # within a form, short answers first
        lengths = [len(r["messages"][-1]["content"].split()) for r in phase1 if r["metadata"]["form"] == form]
        assert lengths == sorted(lengths)
    replay = [r for r in phase2 if r["metadata"].get("replay") == "phase1"]
    skills = [r for r in phase2 if "replay" not in r["metadata"]]
    assert {r["metadata"]["leaf"] for r in skills} == {HAIKU, UNITS}
    phase1_ids = {r["metadata"]["sample_id"] for r in phase1}
    assert {r["metadata"]["sample_id"] for r in replay} <= phase1_ids
    mix = curated["report"]["mix"]
    assert mix["phase2_replay_phase1_rows"] == len(replay) == round(0.3 * len(phase1))
    assert mix["phase2_knowledge_share"] >= MixSettings().min_knowledge_share
    assert mix["phase2_replay_phase1_repeated_rows"] == 0
    assert len({(r["metadata"]["sample_id"], r["metadata"]["form"]) for r in replay}) == len(replay), "no duplicates"


def test_outputs_load_with_datasets(curated: dict[str, Any]) -> None:
    from datasets import load_dataset

    for name in OUTPUT_FILES[:2]:
        dataset = load_dataset("json", data_files=str(curated["data"] / name), split="train")
        assert len(dataset) == len(read_jsonl(curated["data"] / name))
        assert dataset[0]["messages"][0]["role"] == "user"
    report = load_dataset("json", data_files=str(curated["data"] / "curation.json"), split="train")
    assert report[0]["format"] == "labtax-curation/2"
    dropped = load_dataset("json", data_files=str(curated["data"] / "dropped.jsonl"), split="train")
    totals = curated["report"]["totals"]
    assert len(dropped) == totals["read"] - totals["kept"]
    assert {f"{row['stage']}/{row['reason']}" for row in dropped} == set(curated["generation"].expected_drops)


def test_report_records_inputs_and_outputs_by_hash(curated: dict[str, Any]) -> None:
    report, data = curated["report"], curated["data"]
    for name in OUTPUT_FILES[:2]:
        digest = hashlib.sha256((data / name).read_bytes()).hexdigest()
        assert report["outputs"][name]["sha256"] == digest
    generation_dir = curated["generation"].directory
    assert (
        report["inputs"]["generation.json"]
        == hashlib.sha256((generation_dir / "generation.json").read_bytes()).hexdigest()
    )
    assert len(report["inputs"]) == 1 + 4
    assert report["seed"] == 0 and report["settings"]["dedup"]["near_duplicate_threshold"] == 0.7


def test_same_inputs_and_seed_give_identical_bytes(curated: dict[str, Any], tmp_path: Path) -> None:
    again = dataclasses.replace(curated["config"], output_dir=tmp_path / "again")
    run_curation(again)
    for name in OUTPUT_FILES:
        assert (tmp_path / "again" / name).read_bytes() == (curated["data"] / name).read_bytes(), name
    other_seed = dataclasses.replace(curated["config"], output_dir=tmp_path / "seed1", seed=1)
    run_curation(other_seed)
    assert (tmp_path / "seed1" / "phase2_skills.jsonl").read_bytes() != (
        curated["data"] / "phase2_skills.jsonl"
    ).read_bytes()


# --- dedup, selection, mixing -------------------------------------------------------------------------


def test_near_duplicates_agree_with_an_exact_jaccard_scan() -> None:
    rng = random.Random(3)
    vocabulary = [f"word{i}" for i in range(3000)]
    texts = [" ".join(rng.choices(vocabulary, k=40)) for _ in range(300)]
    for index in range(0, 300, 6):
        tokens = texts[index].split()
        tokens[20] = "changed"
        texts[index + 1] = " ".join(tokens)
        tokens[5:8] = ["three", "words", "changed"]
        texts[index + 2] = " ".join(tokens)
    found = {d.index: d.kept for d in find_near_duplicates(texts, threshold=0.7)}
    token_sets = [shingles(text, 3) for text in texts]

    def has_earlier_match(j: int, threshold: float) -> bool:
        return any(jaccard(token_sets[i], token_sets[j]) >= threshold for i in range(j))

    exact = {j for j in range(300) if has_earlier_match(j, 0.7)}
    assert len(exact) == 100
    assert all(has_earlier_match(j, 0.6) for j in found), "LSH reports only samples that really are near duplicates"
    assert len(set(found) & exact) >= 0.95 * len(exact), "recall of the LSH against the exact scan"


def test_k_center_picks_one_sample_from_each_cluster() -> None:
    topics = [
        "tides and the moon",
        "git objects and trees",
        "haiku about winter",
        "kilometres to miles",
        "the SI units",
    ]
    texts = []
    for variant in range(6):
        for topic in topics:
            texts.append(f"{topic} {topic} {topic} note {variant}")
    chosen = k_center_greedy(ngram_vectors(texts), 5)
    assert sorted(texts[i].split(" note")[0].split(" ")[0] for i in chosen) == sorted(t.split(" ")[0] for t in topics)
    assert select_diverse(texts, 50, ngram_max=2, features=256, embedding_model=None) == list(range(len(texts)))


def test_selection_trims_a_leaf_over_its_target_and_reports_it(project: Path, tmp_path: Path) -> None:
    leaves = project_leaves(project)
    units = next(leaf for leaf in leaves if leaf.path == UNITS)
    write_generation(tmp_path / "gen", [units], {UNITS: unit_rows(units, 30, random.Random(1))}, targets={UNITS: 12})
    config = CurationConfig(
        samples_dir=tmp_path / "gen", output_dir=tmp_path / "data", taxonomy_root=project / "taxonomy"
    )
    result = run_curation(config, leaves)
    report = json.loads(result.files["report"].read_text())
    assert report["leaves"][UNITS]["kept"] == 12
    assert report["drops"]["selection"]["reasons"]["not-selected"]["count"] == 18
    phase2 = read_jsonl(tmp_path / "data" / "phase2_skills.jsonl")
    kinds = {r["messages"][0]["content"].split(" ")[-1] for r in phase2}
    assert len(kinds) >= 5, "the kept conversions cover many unit pairs"
    assert "no generated samples" in " ".join(report["notes"])

    overridden = dataclasses.replace(config, output_dir=tmp_path / "data8", select=SelectSettings(max_per_leaf=8))
    assert run_curation(overridden, leaves).totals.kept == 8


def test_selection_with_a_local_embedding_model(project: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    leaves = project_leaves(project)
    units = next(leaf for leaf in leaves if leaf.path == UNITS)
    write_generation(tmp_path / "gen", [units], {UNITS: unit_rows(units, 16, random.Random(2))}, targets={UNITS: 6})
    config = CurationConfig(
        samples_dir=tmp_path / "gen",
        output_dir=tmp_path / "data",
        taxonomy_root=project / "taxonomy",
        select=SelectSettings(embedding_model=tiny_model_dir),
    )
    assert run_curation(config, leaves).totals.kept == 6


def small_project_generation(project: Path, directory: Path, knowledge: int, skills: int) -> list[Any]:
    leaves = project_leaves(project)
    by_path = {leaf.path: leaf for leaf in leaves}
    rng = random.Random(5)
    rows = {
        TIDES: knowledge_rows(project, by_path[TIDES], knowledge, rng),
        UNITS: unit_rows(by_path[UNITS], skills, rng),
    }
    write_generation(directory, [by_path[TIDES], by_path[UNITS]], rows)
    return leaves


def test_knowledge_is_upsampled_to_its_minimum_share_and_repeats_are_marked(project: Path, tmp_path: Path) -> None:
    leaves = small_project_generation(project, tmp_path / "gen", knowledge=4, skills=27)
    mix = MixSettings(seeds=False, replay_share=0.5, min_knowledge_share=0.25)  # the generated rows alone
    plain = KnowledgeSettings(grounded_share=0.0, raft_share=0.0, plain_share=1.0)  # one phase-1 row per sample
    config = CurationConfig(
        samples_dir=tmp_path / "gen", output_dir=tmp_path / "data", mix=mix, knowledge=plain, taxonomy_root=project
    )
    result = run_curation(config, leaves)
    phase2 = read_jsonl(tmp_path / "data" / "phase2_skills.jsonl")
    replay = [r for r in phase2 if r["metadata"].get("replay") == "phase1"]
    skills = len(phase2) - len(replay)
    assert len(replay) == 9 and skills == 27  # 9 / 36 = 0.25
    repeated = [r for r in replay if r["metadata"].get("repeat")]
    assert len(repeated) == result.mix.phase2_replay_phase1_repeated_rows == 5
    assert result.mix.phase2_replay_phase1_unique_rows == 4
    assert any("repeated" in note for note in result.notes)

    strict = dataclasses.replace(
        config, output_dir=tmp_path / "strict", mix=dataclasses.replace(mix, allow_repeats=False)
    )
    result = run_curation(strict, leaves)
    assert result.mix.phase2_replay_phase1_rows == 4 and result.mix.phase2_replay_phase1_repeated_rows == 0
    assert any("below min_knowledge_share" in note for note in result.notes)


def test_pinned_external_replay_file(project: Path, tmp_path: Path) -> None:
    leaves = small_project_generation(project, tmp_path / "gen", knowledge=6, skills=10)
    external = tmp_path / "general_chat.jsonl"
    lines = [
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"Say hello number {i}."},
                    {"role": "assistant", "content": f"Hello {i}!"},
                ]
            }
        )
        for i in range(20)
    ]
    external.write_text("\n".join(lines) + "\n")
    digest = hashlib.sha256(external.read_bytes()).hexdigest()
    mix = MixSettings(replay_file=external, replay_file_sha256=digest, replay_file_rows=5)
    config = CurationConfig(samples_dir=tmp_path / "gen", output_dir=tmp_path / "data", mix=mix, taxonomy_root=project)
    result = run_curation(config, leaves)
    report = json.loads(result.files["report"].read_text())
    assert report["inputs"]["replay:general_chat.jsonl"] == digest
    assert result.mix.phase2_replay_external_rows == 5
    external_rows = [
        r for r in read_jsonl(tmp_path / "data" / "phase2_skills.jsonl") if r["metadata"].get("replay") == "external"
    ]
    assert len(external_rows) == 5 and all(r["metadata"]["source"] == "general_chat.jsonl" for r in external_rows)

    bad_pin = dataclasses.replace(config, mix=dataclasses.replace(mix, replay_file_sha256="0" * 64))
    with pytest.raises(UsageError, match="replay_file_sha256 pins"):
        run_curation(bad_pin, leaves)


# --- bad input --------------------------------------------------------------------------------------


def test_samples_from_an_older_leaf_version_are_refused(project: Path, tmp_path: Path) -> None:
    leaves = project_leaves(project)
    tides = next(leaf for leaf in leaves if leaf.path == TIDES)
    old = dataclasses.replace(tides, leaf_hash="0" * 64)
    write_generation(
        tmp_path / "gen", [old], {TIDES: [row(old, "What is a tide?", "The regular rise and fall of the sea.")]}
    )
    config = CurationConfig(samples_dir=tmp_path / "gen", output_dir=tmp_path / "data", taxonomy_root=project)
    with pytest.raises(UsageError, match="run `labtax generate`"):
        run_curation(config, leaves)


def test_cli_curates_and_refuses_bad_settings_before_work(
    curated: dict[str, Any],
    project: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(project)
    gen = str(curated["generation"].directory)
    code = main(["curate", "--samples", gen, "--output", str(tmp_path / "data"), "--root", str(project / "taxonomy")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "84 kept" in captured.err and "training seeds added ([mix] seeds)" in captured.err
    assert re.search(r"phase 1: \d+ rows \(\d+ document-grounded, \d+ among distractor", captured.err)
    assert (tmp_path / "data" / "curation.json").read_bytes() == (curated["data"] / "curation.json").read_bytes()

    settings = tmp_path / "curate.toml"
    settings.write_text("[dedup]\nnear_duplicate_threshold = 1.5\n[mix]\nreplay_sharez = 0.1\n")
    assert main(["curate", "--samples", gen, "--output", str(tmp_path / "x"), "--config", str(settings)]) == 2
    assert "no key 'replay_sharez'" in capsys.readouterr().err
    settings.write_text("[dedup]\nnear_duplicate_threshold = 1.5\n[filters]\nenabled = ['empty', 'spelling']\n")
    assert main(["curate", "--samples", gen, "--output", str(tmp_path / "x"), "--config", str(settings)]) == 2
    err = capsys.readouterr().err
    assert "near_duplicate_threshold must be in (0, 1]" in err and "'spelling'" in err
    assert main(["curate", "--samples", str(tmp_path), "--output", str(tmp_path / "x")]) == 2
    assert "generation.json not found" in capsys.readouterr().err
    assert main(["curate", "--samples", gen, "--output", str(tmp_path / "x"), "--influence"]) == 2
    assert "--influence needs --student" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_settings_file_overrides_defaults(curated: dict[str, Any], project: Path, tmp_path: Path) -> None:
    from labtax.curate import load_settings_file

    settings = tmp_path / "curate.toml"
    settings.write_text("seed = 4\n[filters]\nanswer_min_words = 8\n[dedup]\nngram = 2\n")
    sections = load_settings_file(settings)
    assert (
        sections["seed"] == 4
        and sections["filters"].answer_min_words == 8
        and sections["dedup"] == DedupSettings(ngram=2)
    )
    config = CurationConfig(
        samples_dir=curated["generation"].directory,
        output_dir=tmp_path / "d",
        taxonomy_root=project / "taxonomy",
        **sections,
    )
    report = json.loads(run_curation(config).files["report"].read_text())
    assert report["seed"] == 4
    assert report["drops"]["filter"]["reasons"]["length:answer-too-short"]["count"] > 0


def test_curates_what_labtax_generate_writes(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hand-off for real: `labtax generate` against the loopback teacher, then `labtax curate`."""
    from openai_server import running_server

    monkeypatch.chdir(project)
    gen, data = tmp_path / "gen", tmp_path / "data"
    with running_server() as server:
        args = ["generate", "--output", str(gen), "--teacher-url", server.url, "--teacher-model", "fake-teacher"]
        assert main([*args, "--target", "4", "--root", str(project / "taxonomy"), "--quiet"]) == 0
    (tmp_path / "curate.toml").write_text("[mix]\nseeds = false\n")  # what generation wrote, nothing else
    curate = ["curate", "--samples", str(gen), "--output", str(data), "--config", str(tmp_path / "curate.toml")]
    assert main([*curate, "--root", str(project / "taxonomy"), "-q"]) == 0
    report = json.loads((data / "curation.json").read_text())
    generated = json.loads((gen / "generation.json").read_text())["leaves"]
    assert report["totals"]["read"] == sum(entry["kept"] for entry in generated) == 16
    assert set(report["leaves"]) == {entry["leaf"] for entry in generated}
    phase1 = read_jsonl(data / "phase1_knowledge.jsonl")
    assert {row["metadata"]["leaf"] for row in phase1} <= {TIDES, GIT}
    knowledge = report["knowledge"]
    assert report["totals"]["kept"] == knowledge["samples"] + report["mix"]["phase2_skill_rows"]
    # Phase 1 shows the student its documents: every knowledge sample after the chunk it was generated
    # from (every token trained), and again among distractor chunks.
    assert knowledge["without_chunk"] == 0 and knowledge["grounded_rows"] == knowledge["raft_rows"] == 8
    assert report["mix"]["phase1_rows"] == len(phase1) == 16
    documents = {leaf: (project / DOCUMENTS[leaf]).read_text(encoding="utf-8") for leaf in (TIDES, GIT)}
    for line in phase1:
        user, answer = line["messages"][0]["content"], line["messages"][1]["content"]
        chunk, _, question = user.rpartition("\n\n")
        if line["metadata"]["form"] == "grounded":
            assert line["metadata"]["train_all_tokens"] is True
            assert chunk.strip() in documents[line["metadata"]["leaf"]]
            asked = next(e for e in line["metadata"]["exchanges"] if "question" in e["wrote"])
            assert chunk.strip() in asked["messages"][-1]["content"], "the chunk the teacher was shown"
        else:
            assert line["metadata"]["form"] == "raft" and "train_all_tokens" not in line["metadata"]
            assert chunk.startswith("Document:\n") and question and answer


def test_a_phase_without_rows_is_not_written(project: Path, tmp_path: Path) -> None:
    leaves = project_leaves(project)
    units = next(leaf for leaf in leaves if leaf.path == UNITS)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "phase1_knowledge.jsonl").write_text('{"stale": true}\n')
    write_generation(tmp_path / "gen", [units], {UNITS: unit_rows(units, 6, random.Random(4))})
    config = CurationConfig(
        samples_dir=tmp_path / "gen", output_dir=tmp_path / "data", taxonomy_root=project, mix=MixSettings(seeds=False)
    )
    result = run_curation(config, leaves)
    assert not (tmp_path / "data" / "phase1_knowledge.jsonl").exists(), "a stale phase file is removed"
    assert set(result.files) == {"phase2", "report"}
    assert any("phase1_knowledge.jsonl not written" in note for note in result.notes)
    report = json.loads(result.files["report"].read_text())
    assert report["outputs"]["phase1_knowledge.jsonl"] == {"rows": 0}  # no file, so no hash
    assert report["mix"]["phase2_rows"] == 6 and report["mix"]["phase2_replay_phase1_rows"] == 0
