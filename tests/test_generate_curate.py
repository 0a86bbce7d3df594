"""Generation → curation end to end: the real CLI, the stand-in teacher on 127.0.0.1, no hand-made files.

What one stage writes is what the next one reads; these tests hold the two to each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import shipped_project
from labtax.cli import main
from openai_server import running_server

LEAVES = (
    "compositional_skills/writing/freeform/haiku",
    "compositional_skills/extraction/json/invoice_fields",
    "foundational_skills/reasoning/unit_conversion",
    "knowledge/science/oceanography/ocean_tides",
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = shipped_project(tmp_path / "project", LEAVES)
    monkeypatch.chdir(root)
    return root


def generate(url: str, out: Path) -> int:
    return main(["generate", "-o", str(out), "--teacher-url", url, "--teacher-model", "fake-teacher", "--quiet",
                 "--target", "6"])  # fmt: skip


def curate(gen: Path, out: Path) -> int:
    return main(["curate", "--samples", str(gen), "--output", str(out), "--quiet"])


def test_identical_inputs_give_byte_identical_curation_whether_generated_or_cached(project: Path) -> None:
    """A rerun of generation reuses its cache; nothing about the data changed, so neither may curation.json
    nor any hash release.json records (the release hashes every curated file)."""
    from labtax.release.manifest import hash_data_files

    gen = project / "gen"
    with running_server() as server:
        assert generate(server.url, gen) == 0
        assert curate(gen, project / "first" / "data") == 0
        sent = server.chat_requests
        assert generate(server.url, gen) == 0  # every leaf from the cache
        assert server.chat_requests == sent
        assert curate(gen, project / "second" / "data") == 0
    names = sorted(p.name for p in (project / "first" / "data").iterdir())
    assert "curation.json" in names
    assert names == sorted(p.name for p in (project / "second" / "data").iterdir())
    for name in names:
        first = (project / "first" / "data" / name).read_bytes()
        assert first == (project / "second" / "data" / name).read_bytes(), f"{name} differs between identical runs"
    hashes = [hash_data_files(project / run, sorted((project / run / "data").iterdir())) for run in ("first", "second")]
    assert hashes[0] == hashes[1]


def test_generate_then_curate_with_influence_round_trips_every_field(project: Path, tiny_model_dir: Path) -> None:
    """Everything curation and influence scoring read about a sample, generation wrote: the exact prompt
    sent, the raw answer, finish_reason, the seeds shown; preference pairs only where the teacher answered
    one prompt more than once (tests/test_curate_method.py builds such candidates)."""
    from labtax.config import load_config
    from labtax.records.curation import read_curation_report
    from labtax.records.generation import read_generation_index
    from labtax.records.sample import ANSWER, CONTEXT, QUESTION, Message, Sample, read_samples
    from labtax.taxonomy.leaf import heldout_pairs
    from labtax.validate import load_leaves
    from openai_server import _stage_from_prompt, default_answer

    gen, data = project / "gen", project / "data"
    with running_server() as server:
        assert generate(server.url, gen) == 0
        sent = [
            (tuple(Message(m["role"], m["content"]) for m in body["messages"]), body) for body in server.state.bodies
        ]
    prompts = {messages: body for messages, body in sent}
    leaves = {leaf.path: leaf for leaf in load_leaves(load_config()).leaves}
    stages_of = {"knowledge": [("knowledge_qa",)], "freeform_skill": [("freeform_instructions",), ("response",)]}
    stages_of["grounded_skill"] = [("grounded_contexts",), ("grounded_questions",), ("response",)]
    for entry in read_generation_index(gen).leaves:
        leaf = leaves[entry.leaf]
        held_out = {pair.question for _, pair in heldout_pairs(leaf)}
        for _, sample in read_samples(gen / entry.samples):
            assert isinstance(sample, Sample)
            exchanges = sample.metadata.exchanges
            assert [(e.stage,) for e in exchanges] == stages_of[entry.kind]
            for exchange in exchanges:
                body = prompts[exchange.messages]  # the exact messages the teacher received
                stage = _stage_from_prompt(body)
                assert exchange.stage == stage and exchange.finish_reason == "stop"  # as the server said
                assert exchange.output == default_answer(stage, body, body["seed"])  # its raw answer
                user = exchange.messages[-1].content
                for seed_id in exchange.seed_ids:  # every seed it says it showed is in the prompt, none held out
                    seed, _, pair = seed_id.partition(".")
                    example = leaf.seed_examples[int(seed) - 1]
                    question = example.qna[int(pair or 1) - 1].question
                    assert question not in held_out
                    assert (example.context if stage == "grounded_contexts" else question) in user
                # The sample's own part of the answer, alone in the stage's format, is in the raw answer.
                own = exchange.item_output
                parts = own.removeprefix("1. ").removeprefix("[Start of Context]\n").removesuffix("\n[End of Context]")
                for part in parts.removeprefix("Q: ").split("\nA: "):
                    assert part in exchange.output
            asked, answered = (sample.metadata.exchange_that_wrote(part) for part in (QUESTION, ANSWER))
            assert asked is not None and answered is not None and sample.metadata.seed_ids
            if entry.kind == "knowledge":  # one request wrote both
                assert asked is answered and asked.item_output == f"Q: {sample.question}\nA: {sample.answer}"
            else:
                assert answered.item_output == sample.answer and answered.judge_score == sample.metadata.scores["pair"]
                instruction = asked.item_output.removeprefix("1. ")
                context = sample.metadata.exchange_that_wrote(CONTEXT)
                if context is None:
                    assert sample.question == instruction
                else:  # grounded: the user turn is the generated context, then the question
                    passage = context.item_output.removeprefix("[Start of Context]\n").removesuffix(
                        "\n[End of Context]"
                    )
                    assert sample.question == f"{passage}\n\n{instruction}"

    # Curation with influence scoring. Generation asks the teacher for one answer per prompt today, so no
    # prompt has two answers to prefer one of: no preference pairs, no file, and a note saying why.
    settings = project / "curate.toml"
    settings.write_text("[influence]\nreference_size = 4\nmax_tokens = 96\nlearning_rate = 0.05\n")
    (data).mkdir()
    (data / "preference_pairs.jsonl").write_text('{"stale": true}\n')
    args = ["curate", "--samples", str(gen), "--output", str(data), "--config", str(settings), "--quiet"]
    assert main([*args, "--influence", "--student", str(tiny_model_dir)]) == 0
    report = read_curation_report(data)
    assert report.influence.candidates_scored and report.influence.preference_pairs == 0
    assert not (data / "preference_pairs.jsonl").exists(), "a stale pairs file is removed"
    assert any("no teacher prompt has two different scored answers" in note for note in report.notes)
    for name in ("phase1_knowledge.jsonl", "phase2_skills.jsonl"):
        if not (data / name).exists():  # every sample of the phase below the influence bar
            continue
        for _, row in read_samples(data / name):
            assert isinstance(row, Sample) and row.metadata.sample_id


def test_complete_pairs_before_a_cut_survive_curation(project: Path) -> None:
    """A small teacher writes until max_tokens: every knowledge answer is cut (finish_reason=length) in the
    middle of one more pair. Generation keeps the complete pairs before the cut; curation must not then
    drop them all as truncated (issue 18: it did, so a small teacher's knowledge never reached training)."""
    import json

    from labtax.records.sample import ANSWER, Sample, read_samples

    gen = project / "gen"
    with running_server(cut_stages=("knowledge_qa",)) as server:
        assert generate(server.url, gen) == 0
    knowledge = [
        sample
        for path in gen.glob("leaves/*/samples.jsonl")
        for _, sample in read_samples(path)
        if isinstance(sample, Sample) and sample.metadata.pipeline == "knowledge"
    ]
    assert knowledge
    for sample in knowledge:
        exchange = sample.metadata.exchange_that_wrote(ANSWER)
        assert exchange is not None and exchange.finish_reason == "length"
    assert curate(gen, project / "data") == 0
    report = json.loads((project / "data" / "curation.json").read_text(encoding="utf-8"))
    assert "truncated:truncated" not in report["drops"].get("filter", {}).get("reasons", {})
    rows = (project / "data" / "phase1_knowledge.jsonl").read_text(encoding="utf-8").splitlines()
    assert rows, "no knowledge sample reached phase 1"
