"""Evaluation that can tell (issue 17) and the per-leaf release comparison (issue 16, item 4): multiple-choice
questions written by the teacher from each knowledge leaf's documents, the teacher's ratings of skill answers
on every seed question, confidence intervals, a gate that compares with the base model when there is no
previous release, a general set against forgetting, and the table of base, previous and new scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from labtax.cli import main
from labtax.markdown import text
from labtax.records.evaluation import (
    ChoiceQuestion,
    ChoiceResult,
    JudgedQuestion,
    Judgment,
    LeafEvaluation,
    Scores,
    read_eval_report,
    read_mcq_set,
)
from labtax.train.eval_compare import comparison_markdown, comparison_table
from labtax.train.eval_gate import GateThresholds, apply_gate
from labtax.train.eval_stats import mean_interval, paired_difference, proportion_interval
from openai_server import running_server

REPO_ROOT = Path(__file__).resolve().parents[1]
TIDES = "knowledge/science/oceanography/ocean_tides/qna.yaml"
HAIKU = "compositional_skills/writing/freeform/haiku/qna.yaml"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A knowledge leaf with its document and a freeform skill, copied from the shipped taxonomy."""
    root = tmp_path_factory.mktemp("project")
    (root / "pyproject.toml").write_text('[tool.labtax]\ntaxonomy = "taxonomy"\n')
    for leaf in (TIDES, HAIKU):
        shutil.copytree(REPO_ROOT / "taxonomy" / Path(leaf).parent, root / "taxonomy" / Path(leaf).parent)
    shutil.copytree(REPO_ROOT / "documents" / "ocean_tides", root / "documents" / "ocean_tides")
    return root


@pytest.fixture(scope="module")
def worse_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with its output sharpened fifty-fold: the same tokenizer, a much higher loss."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("worse")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.model.norm.weight.mul_(50.0)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


def evaluate(project: Path, model: Path, baseline: Path, output: Path, *extra: str) -> int:
    args = ["evaluate", "--model", str(model), "--baseline", str(baseline), "--root", str(project / "taxonomy")]
    return main([*args, "--output", str(output), "--max-new-tokens", "4", "--answer-tokens", "6", "--quiet", *extra])


@pytest.fixture(scope="module")
def with_teacher(project: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    output = tmp_path_factory.mktemp("eval") / "eval.json"
    with running_server() as server:
        teacher = ["--teacher-url", server.url, "--teacher-model", "fake-teacher", "--mcq-per-leaf", "6"]
        assert evaluate(project, tiny_model_dir, tiny_model_dir, output, *teacher) == 0
        first = dict(server.state.stages)
        assert evaluate(project, tiny_model_dir, tiny_model_dir, output, *teacher) == 0  # mcq.json reused
        second = {stage: count - first.get(stage, 0) for stage, count in server.state.stages.items()}
    return {"output": output, "first": first, "second": second}


def test_knowledge_is_asked_multiple_choice_questions_the_teacher_wrote_from_its_documents(
    with_teacher: dict[str, Any], project: Path
) -> None:
    output = with_teacher["output"]
    report = read_eval_report(output)
    assert report.teacher == "fake-teacher"
    tides = next(leaf for leaf in report.leaves if leaf.leaf == TIDES)
    assert len(tides.mcq) == 6 and tides.mcq_hash
    document = (project / "documents/ocean_tides/ocean_tides.md").read_text(encoding="utf-8")
    for result in tides.mcq:
        question = result.question
        assert len(question.choices) == 4 and question.source.startswith("ocean_tides.md#")
        assert question.choices[question.answer] in document  # the stand-in's right choice is a true sentence
        assert result.model is not None and result.baseline is not None
    assert tides.model.mcq_questions == tides.baseline.mcq_questions == 6
    assert tides.model.mcq_correct == tides.baseline.mcq_correct  # the same weights on both sides
    assert {q.question.answer for q in tides.mcq} != {0}, "choices are shuffled: the right one's place is no cue"
    stored = read_mcq_set(output.parent / "mcq.json")
    assert [q.id for q in stored.leaves[TIDES].questions] == [r.question.id for r in tides.mcq]
    assert with_teacher["first"]["eval_mcq"] == 3 and not with_teacher["second"].get("eval_mcq")  # one per chunk
    markdown = output.with_suffix(".md").read_text(encoding="utf-8")
    assert "## Knowledge: multiple-choice questions from the documents (MMLU-Branch style)" in markdown


def test_skills_are_judged_on_every_seed_question_with_confidence(with_teacher: dict[str, Any]) -> None:
    output = with_teacher["output"]
    report = read_eval_report(output)
    haiku = next(leaf for leaf in report.leaves if leaf.leaf == HAIKU)
    assert haiku.pairs == 1 and len(haiku.judged) == 6  # one held-out seed, but six questions judged
    assert [q.held_out for q in haiku.judged] == [False] * 5 + [True]
    for question in haiku.judged:
        assert question.model is not None and question.model.rating is not None
        assert question.baseline is not None and question.model.explanation
    assert haiku.model.judged == 6 and 1 <= (haiku.model.judge_score or 0) <= 10
    # The model and the base are one directory here, so each answer is rated once (6, not 12); the second
    # run finds every rating in ratings.json and asks nothing.
    assert with_teacher["first"]["eval_judge"] == 6 and with_teacher["second"].get("eval_judge", 0) == 0
    markdown = output.with_suffix(".md").read_text(encoding="utf-8")
    row = next(line for line in markdown.splitlines() if line.startswith(f"| {text(HAIKU)} | 6 (1) |"))
    assert row.count("[") >= 3, "each score with its 95% interval, and the change over the base model"


def test_a_first_release_is_compared_with_the_base_model_and_a_general_set(
    project: Path, tiny_model_dir: Path, worse_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    general = tmp_path / "general.jsonl"
    general.write_text(
        json.dumps({"question": "What is the capital of France?", "answer": "Paris is the capital of France."})
        + "\n"
        + json.dumps({"question": "2 + 2 = ?", "choices": ["3", "4", "5", "22"], "answer": "B"})
        + "\n",
        encoding="utf-8",
    )
    output = tmp_path / "eval.json"
    assert evaluate(project, worse_model, tiny_model_dir, output, "--general", str(general)) == 1
    err = capsys.readouterr().err
    assert "regression gate failed (compared with base model, general set)" in err
    assert "held-out loss rose" in err and "over the base model" in err
    assert "general set: loss rose" in err and "the model is forgetting" in err
    report = read_eval_report(output)
    assert report.gate.status == "fail" and report.gate.previous is None
    assert report.gate.note == "no previous release: compared with the base model"
    assert report.general is not None and report.general.questions == 2
    assert report.general.model.mcq_questions == 1 and report.general.model.tokens > 0
    # The same model as its own base passes: nothing got worse.
    assert evaluate(project, tiny_model_dir, tiny_model_dir, tmp_path / "same.json", "--general", str(general)) == 0
    assert read_eval_report(tmp_path / "same.json").gate.status == "pass"


def test_bad_general_set_is_a_usage_error_naming_the_line(project: Path, tmp_path: Path, capsys: Any) -> None:
    general = tmp_path / "general.jsonl"
    general.write_text('{"question": "ok?", "answer": "yes"}\n{"question": "which?", "choices": ["a"]}\n')
    assert evaluate(project, Path("/nonexistent"), Path("/nonexistent"), tmp_path / "e.json", "--general",
                    str(general)) == 2  # fmt: skip
    assert f"{general}:2: 'choices' must be a list of at least two" in capsys.readouterr().err


def test_release_table_shows_base_previous_and_new_sorted_by_change(
    project: Path, tiny_model_dir: Path, worse_model: Path, tmp_path: Path
) -> None:
    """The previous release (scored here with --previous-model) was the worse model: every leaf improved
    over it; the table carries all three columns, and the release notes and card get the same markdown."""
    output = tmp_path / "eval.json"
    code = evaluate(project, tiny_model_dir, tiny_model_dir, output, "--previous-model", str(worse_model))
    assert code == 0
    report = read_eval_report(output)
    assert report.previous_model == str(worse_model) and "previous release" in report.gate.compared_with
    rows = {row.leaf: row for row in report.comparison}
    assert set(rows) == {TIDES, HAIKU}
    for row in rows.values():
        assert row.versus == "previous" and row.previous is not None and row.base is not None
        assert row.metric in ("token_f1", "heldout_loss") and row.change is not None
    assert rows[HAIKU].metric == "heldout_loss" and rows[HAIKU].change > 0 and not rows[HAIKU].regressed
    markdown = output.with_suffix(".md").read_text(encoding="utf-8")
    assert comparison_markdown(report.comparison) in markdown
    assert "| leaf | score | base model | previous release | new model | change |" in markdown

    # Now the other way round: the worse model is the new one, compared with a previous eval.json.
    worse = tmp_path / "worse.json"
    assert evaluate(project, worse_model, tiny_model_dir, worse, "--previous", str(output)) == 1
    report = read_eval_report(worse)
    haiku = next(row for row in report.comparison if row.leaf == HAIKU)
    assert haiku.regressed and haiku.versus == "previous" and report.comparison[0].regressed


def leaf(name: str, kind: str, base: Scores, new: Scores, previous: Scores | None = None) -> LeafEvaluation:
    evaluation = LeafEvaluation(name, kind, "h", "h", 3, model=new, baseline=base)
    evaluation.previous = previous
    return evaluation


def test_comparison_is_sorted_by_change_regressions_first() -> None:
    rows = comparison_table(
        [
            leaf("k/up.yaml", "knowledge", Scores(mcq_questions=10, mcq_correct=4),
                 Scores(mcq_questions=10, mcq_correct=9)),
            leaf("s/down.yaml", "freeform_skill", Scores(judged=5, judge_sum=40), Scores(judged=5, judge_sum=20),
                 Scores(judged=5, judge_sum=35)),
            leaf("s/loss.yaml", "grounded_skill", Scores(tokens=10, nll_sum=30), Scores(tokens=10, nll_sum=31)),
            leaf("k/same.yaml", "knowledge", Scores(answers=2, f1_sum=1), Scores(answers=2, f1_sum=1)),
        ]
    )  # fmt: skip
    assert [(r.leaf, r.metric, r.versus) for r in rows] == [
        ("s/down.yaml", "judge_score", "previous"),
        ("s/loss.yaml", "heldout_loss", "base"),
        ("k/same.yaml", "token_f1", "base"),
        ("k/up.yaml", "mcq_accuracy", "base"),
    ]
    assert [r.regressed for r in rows] == [True, True, False, False]
    assert rows[0].change == pytest.approx(-3.0) and rows[1].change == pytest.approx(-0.1)
    markdown = comparison_markdown(rows)
    assert markdown.index("s/down.yaml") < markdown.index("k/up.yaml")
    assert "| s/down.yaml | judge score (1-10) | 8.000 | 7.000 | 4.000 | **-3.000 vs previous** ▼ |" in markdown
    assert "2 of 4 leaves regressed" in markdown
    assert (
        comparison_markdown(comparison_table([leaf("a|<b>.yaml", "knowledge", Scores(), Scores())])).count(
            "a\\|&lt;b&gt;.yaml"
        )
        == 1
    ), "leaf paths cannot break the table or inject HTML"


def judged(ratings: list[tuple[int, int]]) -> list[JudgedQuestion]:
    return [
        JudgedQuestion(f"q{i}", "r", False, model=Judgment("a", new), baseline=Judgment("b", base))
        for i, (new, base) in enumerate(ratings)
    ]


def test_a_leaf_regresses_only_on_a_clear_drop() -> None:
    def skill(ratings: list[tuple[int, int]]) -> LeafEvaluation:
        evaluation = leaf(
            "s.yaml", "freeform_skill",
            Scores(judged=len(ratings), judge_sum=sum(b for _, b in ratings)),
            Scores(judged=len(ratings), judge_sum=sum(n for n, _ in ratings)),
        )  # fmt: skip
        evaluation.judged = judged(ratings)
        return evaluation

    loose = GateThresholds(max_judge_drop=10)  # only the per-leaf rule can fail
    clear = apply_gate([skill([(3, 8), (2, 8), (3, 7), (2, 8), (3, 8), (2, 7)])], None, loose, None)
    assert clear.status == "fail" and "judge score fell" in clear.failures[0] and "95% interval" in clear.failures[0]
    noisy = apply_gate([skill([(1, 9), (9, 1), (1, 9), (9, 1), (2, 9), (9, 8)])], None, loose, None)
    assert noisy.status == "pass", "a mean drop whose interval straddles zero is not a regression"

    mcq = leaf("k.yaml", "knowledge", Scores(mcq_questions=8, mcq_correct=8), Scores(mcq_questions=8, mcq_correct=0))
    question = ChoiceQuestion("id", "q", ("a", "b", "c", "d"), 0, "doc#0")
    mcq.mcq = [ChoiceResult(question, model=1, baseline=0) for _ in range(8)]
    verdict = apply_gate([mcq], None, GateThresholds(max_mcq_drop=1), None)
    assert verdict.status == "fail" and "k.yaml: multiple-choice accuracy fell 1.000" in verdict.failures[0]


def test_a_long_document_is_asked_about_from_end_to_end(project: Path) -> None:
    from labtax.config import load_config
    from labtax.train.eval_teacher import McqSettings, mcq_chunks, mcq_requests
    from labtax.validate import load_leaves

    tides = next(leaf for leaf in load_leaves(load_config(start=project)).leaves if leaf.path == TIDES)
    chunks = [(f"book.md#{i}", f"Chapter {i} of a long book about tides.") for i in range(50)]
    settings = McqSettings(per_leaf=20)
    asked = mcq_chunks(chunks, settings)
    assert len(asked) == 20 and asked[0][0] == "book.md#0" and asked[-1][0] == "book.md#47"
    requests = mcq_requests(tides, chunks, settings)
    assert len(requests) == 20 and "Chapter 47 of" in requests[-1].messages[-1][1]


def test_intervals() -> None:
    wilson = proportion_interval(0, 5)
    assert wilson is not None and wilson.low == 0.0 and 0.4 < wilson.high < 0.5
    t = mean_interval([7.0, 8.0, 9.0])
    assert t is not None and t.mean == 8.0 and t.high - t.mean == pytest.approx(4.303 / 3**0.5, rel=1e-3)
    difference = paired_difference([3, 4], [5, 6])
    assert difference is not None and difference.mean == -2.0 and difference.low == difference.high == -2.0
    assert mean_interval([]) is None and proportion_interval(1, 0) is None


def test_gate_defaults_are_the_command_defaults() -> None:
    from dataclasses import asdict

    from labtax.commands.evaluate import DEFAULTS

    assert asdict(GateThresholds()) == DEFAULTS


def test_a_real_instruct_model_picks_the_right_choices(smollm2_dir: Path) -> None:
    """The log-likelihood choice with a real model and tokenizer (SmolLM2-135M-Instruct's BPE): easy questions
    come out right in the default cloze formulation. (With the choices listed, MMLU's layout, a model this
    small is near chance: it picked "Rome" for the capital of France, which is why cloze is the default.)"""
    from labtax.train.evaluate import ModelScorer, pick_choice

    easy = [
        ("What is the capital of France?", ("Berlin", "Paris", "Madrid", "Rome"), 1),
        ("How many days are there in a week?", ("Five", "Ten", "Seven", "Twelve"), 2),
        ("What colour is the sky on a clear day?", ("Green", "Purple", "Brown", "Blue"), 3),
        ("What do bees make?", ("Honey", "Milk", "Silk", "Wool"), 0),
        ("What is frozen water called?", ("Steam", "Ice", "Sand", "Smoke"), 1),
        ("Which planet do we live on?", ("Mars", "Venus", "Earth", "Jupiter"), 2),
    ]
    scorer = ModelScorer.load(str(smollm2_dir))
    try:
        picks = [pick_choice(scorer, ChoiceQuestion(str(i), q, c, a, "t"), "cloze") for i, (q, c, a) in enumerate(easy)]
    finally:
        scorer.close()
    assert sum(pick == answer for pick, (_, _, answer) in zip(picks, easy, strict=True)) >= 5, picks


def test_a_grounded_seeds_instruction_over_another_passage_is_not_contamination(tmp_path: Path) -> None:
    from labtax.config import load_config
    from labtax.taxonomy.leaf import heldout_pairs
    from labtax.train.evaluate import contamination
    from labtax.validate import load_leaves

    invoices = "compositional_skills/extraction/json/invoice_fields/qna.yaml"
    leaf = next(leaf for leaf in load_leaves(load_config(start=REPO_ROOT)).leaves if leaf.path == invoices)
    [(context, pair)] = heldout_pairs(leaf)
    assert context is not None
    data = tmp_path / "data"
    data.mkdir()

    def write(user: str) -> None:
        row = {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": "{}"}]}
        (data / "phase2_skills.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")

    write(f"INVOICE\nAnother Supplier Ltd\nTotal due £9.00\n\n{pair.question}")  # the task, over another invoice
    assert contamination([leaf], data) == {}
    write(f"{context}\n\n{pair.question}")  # the held-out seed itself
    assert contamination([leaf], data) == {invoices: [pair.question]}


def test_a_teacher_answering_garbage_costs_scores_not_the_evaluation(
    project: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Every teacher answer malformed (a 200 whose content is not JSON): no questions, no ratings, notes
    saying so, the held-out scores and the gate as without a teacher."""
    output = tmp_path / "eval.json"
    with running_server(fault_rates={"malformed": 1.0}) as server:
        teacher = ["--teacher-url", server.url, "--teacher-model", "fake-teacher", "--mcq-per-leaf", "3"]
        assert evaluate(project, tiny_model_dir, tiny_model_dir, output, *teacher) == 0
    report = read_eval_report(output)
    tides = next(leaf for leaf in report.leaves if leaf.leaf == TIDES)
    haiku = next(leaf for leaf in report.leaves if leaf.leaf == HAIKU)
    assert tides.mcq == [] and tides.model.answers == 5 and report.gate.status == "pass"
    assert haiku.model.judged == 0 and all(q.model and q.model.rating is None for q in haiku.judged)
    assert any("fewer than 3" in note for note in report.notes)
    assert any("the judge gave no rating for 12 of 12 answers" in note for note in report.notes)
    assert (
        not (output.parent / "mcq.json").exists()
        or read_mcq_set(output.parent / "mcq.json").leaves[TIDES].questions == ()
    )
