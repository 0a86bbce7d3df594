"""Curation that keeps what is good (issue 17): truncation decided by the teacher's finish_reason, grounded
samples deduplicated by what they ask and answer, grounded held-out seeds decontaminated by passage and
question, and knowledge written with its documents (document-grounded and RAFT rows) that training
learns every token of."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from labtax.config import load_config
from labtax.curate import CurationConfig, FilterSettings, KnowledgeSettings, run_curation
from labtax.curate.filters import build_filters, first_failure, looks_truncated
from labtax.curate.knowledge import render_knowledge
from labtax.curate.samples import candidate
from labtax.curate.settings import MixSettings
from labtax.taxonomy.leaf import Leaf, heldout_pairs
from labtax.validate import load_leaves
from test_curate_support import (
    REPO_ROOT,
    TIDES,
    document_sentences,
    grounded_request,
    knowledge_rows,
    make_project,
    one_request,
    row,
    write_generation,
)

READING = "foundational_skills/reading_comprehension/qna.yaml"
INVOICES = "compositional_skills/extraction/json/invoice_fields/qna.yaml"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_project(tmp_path_factory.mktemp("project"))
    for leaf in (READING, INVOICES):
        shutil.copytree(REPO_ROOT / "taxonomy" / Path(leaf).parent, root / "taxonomy" / Path(leaf).parent)
    return root


@pytest.fixture(scope="module")
def leaves(project: Path) -> dict[str, Leaf]:
    return {leaf.path: leaf for leaf in load_leaves(load_config(start=project, taxonomy=project / "taxonomy")).leaves}


def curate(project: Path, base: Path, leaves: list[Leaf], rows: dict[str, list[Any]], **options: Any) -> dict[str, Any]:
    write_generation(base / "gen", leaves, rows)
    # The generated samples alone: these tests are about what curation does to the teacher's output
    # (tests/test_curate.py checks the seeds that [mix] seeds adds).
    options.setdefault("mix", MixSettings(seeds=False))
    config = CurationConfig(samples_dir=base / "gen", output_dir=base / "data", taxonomy_root=project, **options)
    run_curation(config, leaves)
    report = json.loads((base / "data" / "curation.json").read_text(encoding="utf-8"))
    kept = [
        json.loads(line)
        for name in ("phase1_knowledge.jsonl", "phase2_skills.jsonl")
        if (base / "data" / name).exists()
        for line in (base / "data" / name).read_text(encoding="utf-8").splitlines()
    ]
    return {"report": report, "rows": kept, "dropped": (base / "data" / "dropped.jsonl").read_text(encoding="utf-8")}


# --- truncation: the teacher's finish_reason decides; the text heuristic only flags ------------------------

COMPLETE_ANSWERS = [
    ("How much does the ticket cost in total?", "Two tickets at $6 each: the answer is **$12**"),
    ("Which language is this snippet written in?", "The language is C++"),
    ("Where is the reference documentation?", "It is published at https://docs.example.com/reference/"),
    ("What does the sign say?", "It says *Keep left*"),
]


@pytest.mark.parametrize(("question", "answer"), COMPLETE_ANSWERS)
def test_complete_answers_are_neither_dropped_nor_flagged(leaves: dict[str, Leaf], question: str, answer: str) -> None:
    sample = candidate(row(leaves[TIDES], question, answer), TIDES, "knowledge", 1)
    assert first_failure(build_filters(FilterSettings()), sample) is None
    assert looks_truncated(answer) is None


def test_truncation_is_the_teachers_finish_reason_and_the_heuristic_a_flag(
    project: Path, leaves: dict[str, Leaf], tmp_path: Path
) -> None:
    tides = leaves[TIDES]
    looks_cut = "Spring tides happen when the Sun and the Moon are aligned, and"
    rows = [
        *[row(tides, q, a) for q, a in COMPLETE_ANSWERS],
        row(tides, "What causes spring tides?", looks_cut),  # the server said "stop": kept, flagged
        row(tides, "Why do tides lag behind the Moon?", "Friction slows the bulge, so it", finish_reason="length"),
    ]
    result = curate(project, tmp_path, [tides], {TIDES: rows}, knowledge=KnowledgeSettings(plain_share=1.0))
    report = result["report"]
    assert report["drops"]["filter"]["reasons"] == {"truncated:truncated": {"count": 1, "examples": [
        {"leaf": TIDES, "line": 6, "sample_id": json.loads(result["dropped"])["sample_id"],
         "question": "Why do tides lag behind the Moon?", "answer": "Friction slows the bulge, so it",
         "detail": "finish_reason=length"}]}}  # fmt: skip
    assert report["totals"]["kept"] == 5
    flagged = report["flags"]["looks-truncated"]
    assert flagged["count"] == 1 and flagged["examples"][0]["answer"] == looks_cut
    assert report["leaves"][TIDES]["flagged"] == {"looks-truncated": 1}
    kept_answers = {r["messages"][-1]["content"] for r in result["rows"]}
    assert {a for _, a in COMPLETE_ANSWERS} | {looks_cut} <= kept_answers


def test_the_complete_pairs_before_a_cut_are_kept_and_only_the_cut_one_dropped(leaves: dict[str, Leaf]) -> None:
    """A small teacher lists question-answer pairs until max_tokens: the request says `length`, but only its
    last pair was cut (generation keeps the complete ones before it); those are whole and must stay."""
    pairs = [
        ("What is a spring tide?", "A tide of large range near new and full moon."),
        ("What is a neap tide?", "A tide of small range near the quarter moons."),
        ("Why do tides lag behind the Moon?", "Friction slows the bulge, so it"),
    ]
    samples = one_request(leaves[TIDES], pairs, finish_reason="length")
    verdicts = [first_failure(build_filters(FilterSettings()), candidate(s, TIDES, "knowledge", n)) for n, s in
                enumerate(samples, start=1)]  # fmt: skip
    assert [failure[0] if failure else None for failure in verdicts] == [None, None, "truncated"]


# --- grounded skills: one context, many questions ------------------------------------------------------


def passage(project: Path, start: int, words: int = 250) -> str:
    text = " ".join(document_sentences(project, TIDES)[start:])
    return " ".join(text.split()[:words]) + "."


def test_questions_over_one_shared_context_are_not_near_duplicates(
    project: Path, leaves: dict[str, Leaf], tmp_path: Path
) -> None:
    reading = leaves[READING]
    context, other = passage(project, 0), passage(project, 30)
    distinct = [
        (
            "According to the passage, how often do most coasts see a high tide?",
            "Most coasts see two high tides each lunar day, roughly 12 hours and 25 minutes apart.",
        ),
        ("What does the passage say causes the tidal bulges?", "The difference in the Moon's pull across the Earth."),
        ("Summarise the passage in one sentence.", "Tides are bulges of water raised by the Moon and the Sun."),
    ]
    repeated = ("Is the passage about the sea? Answer yes or no.", "Yes.")
    rows = [
        *grounded_request(reading, context, [*distinct, repeated]),
        # The same question and answer over another passage: a different task instance, kept.
        *grounded_request(reading, other, [repeated]),
        # The same passage and question, the answer reworded by one word: a true duplicate.
        *grounded_request(reading, context, [(distinct[0][0], distinct[0][1].replace("each lunar", "every lunar"))]),
    ]
    result = curate(project, tmp_path, [reading], {READING: rows})
    near = result["report"]["drops"]["near-duplicate"]
    assert near["dropped"] == 1
    [example] = near["reasons"]["near"]["examples"]
    assert "every lunar" in example["answer"] and "over the same context" in example["detail"]
    kept = [r["messages"][0]["content"] for r in result["rows"]]
    assert len(kept) == 5
    for question, _ in distinct:
        assert f"{context}\n\n{question}" in kept
    assert f"{other}\n\n{repeated[0]}" in kept and f"{context}\n\n{repeated[0]}" in kept


def test_a_grounded_held_out_seed_is_contaminated_by_its_passage_and_question_only(
    project: Path, leaves: dict[str, Leaf], tmp_path: Path
) -> None:
    """Grounded skills repeat one instruction over many passages: a training sample with the held-out
    seed's instruction over another invoice is the task itself, not a leak of the held-out seed."""
    invoices = leaves[INVOICES]
    [(held_context, held_pair)] = heldout_pairs(invoices)
    assert held_context is not None
    new_invoice = held_context.replace("Northwind", "Southwind").replace("2024", "2025").replace("0", "7")
    new_invoice = "INVOICE\nHarbour Paints Ltd\nInvoice no.: HP-88\nDate: 2 May 2025\nTotal due €90.00\n" + "\n".join(
        line for line in new_invoice.splitlines()[8:] if line.strip()
    )
    answer = '```json\n{"invoice_number": "HP-88", "total": 90.0}\n```'
    rows = [
        *grounded_request(invoices, new_invoice, [(held_pair.question, answer)]),  # the task: kept
        *grounded_request(invoices, held_context, [(held_pair.question, held_pair.answer)]),  # the seed: dropped
    ]
    result = curate(project, tmp_path, [invoices], {INVOICES: rows})
    decontaminated = result["report"]["drops"]["decontamination"]
    assert decontaminated["dropped"] == 1 and "exact" in decontaminated["reasons"]
    assert [r["messages"][0]["content"] for r in result["rows"]] == [f"{new_invoice}\n\n{held_pair.question}"]


# --- knowledge with its documents ----------------------------------------------------------------------


def test_knowledge_rows_follow_the_configured_proportions(project: Path, leaves: dict[str, Leaf]) -> None:
    tides = leaves[TIDES]
    samples = knowledge_rows(project, tides, 60, random.Random(3))
    pool = [candidate(s, TIDES, "knowledge", n) for n, s in enumerate(samples, start=1)]
    document = (project / "documents/ocean_tides/ocean_tides.md").read_text(encoding="utf-8")
    from labtax.sdg.chunking import chunk_documents

    chunks = {TIDES: [c.text for c in chunk_documents([("ocean_tides.md", document)], 120, 20)]}
    settings = KnowledgeSettings(grounded_share=0.5, raft_share=1.0, plain_share=0.25, raft_max_words=200)
    rendered = render_knowledge(pool, chunks, settings, seed=5)
    counts = rendered.counts
    assert counts.samples == 60 and counts.raft_rows == 60 and counts.without_chunk == 0
    assert 18 <= counts.grounded_rows <= 42 and 6 <= counts.plain_rows <= 24  # seeded Bernoulli draws
    assert 12 <= counts.raft_with_oracle_rows <= 36  # p = 0.4, as InstructLab's
    forms = [r.metadata.form for r in rendered.rows]
    assert forms == ["grounded"] * counts.grounded_rows + ["raft"] * 60 + ["plain"] * counts.plain_rows
    for sample in rendered.rows:
        user = sample.messages[0].content
        if sample.metadata.form == "raft":
            documents = user.count("Document:\n")
            assert documents == 4 or documents == len(chunks[TIDES])
            context = user.rpartition("\n\n")[0]
            assert len(context.split()) <= 200 + 120 + 4 * 1  # distractors cut to the budget, the right chunk whole
        assert sample.metadata.train_all_tokens is (True if sample.metadata.form == "grounded" else None)
    again = render_knowledge(pool, chunks, settings, seed=5)
    assert again.rows == rendered.rows, "deterministic for a seed"
    # A sample drawn for no form is still trained on, in the most-shared form: nothing kept is lost.
    sparse = render_knowledge(pool, chunks, KnowledgeSettings(grounded_share=0.3, raft_share=0.1, plain_share=0), 5)
    assert {r.metadata.sample_id for r in sparse.rows} == {c.sample_id for c in pool}


def test_training_learns_every_token_of_a_document_grounded_row(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from labtax.train.data import IGNORE_INDEX, encode_rows

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [
        {"role": "user", "content": "Tides rise and fall twice a day.\n\nHow often do tides rise?"},
        {"role": "assistant", "content": "Twice a day."},
    ]
    rows = [{"messages": messages, "metadata": {"leaf": TIDES}}]
    rows.append({"messages": messages, "metadata": {"leaf": TIDES, "train_all_tokens": True}})
    encoded = encode_rows(tokenizer, rows, max_length=256, assistant_only_loss=True, overlength="error").samples
    answer_only, every_token = encoded
    assert answer_only.trained_tokens < every_token.trained_tokens == every_token.length - 1
    assert all(t != IGNORE_INDEX for t in every_token.targets[:-1])
