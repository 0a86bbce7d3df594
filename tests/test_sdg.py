"""Generation's pure parts (chunking, prompts, cache keys, the plan), the journal, held-out seeds and
the output formats, with the real taxonomy and the fake teacher on 127.0.0.1."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from labtax.config import load_config
from labtax.sdg.chunking import chunk_documents, chunk_text, tokenizer_spans
from labtax.sdg.params import GenerationParams, expected_requests, pipeline_for
from labtax.sdg.plan import GenerationConfig, cache_key, plan_generation
from labtax.sdg.prompts import all_prompts
from labtax.sdg.run import generate
from labtax.sdg.store import Journal, scan_cache
from labtax.sdg.teacher import TRANSPORT, TeacherResult
from labtax.sdg.teacher_spec import TeacherSpec
from labtax.taxonomy.leaf import Leaf, LeafKind, heldout_pairs, training_seeds
from labtax.validate import load_leaves
from openai_server import running_server

# Each template's text is pinned to its version: a changed prompt must bump its version (which
# changes the cache key and regenerates its data). Update the digest here together with the bump.
PINNED = {
    "freeform_instructions@1": "7031d1df85a18712",
    "grounded_contexts@1": "51959e7eb13d1b7d",
    "grounded_questions@1": "f28eb1a6ecc7bc7f",
    "instruction_judge@1": "cf454f3c3fc9c2eb",
    "knowledge_judge@1": "63e9443f48755af4",
    "knowledge_qa@1": "69a726714b5fa0b1",
    "pair_judge@1": "442730c6ec27b221",
    "response@1": "5c39830ec7f4ec29",
}


@pytest.fixture(scope="module")
def leaves() -> list[Leaf]:
    result = load_leaves(load_config(REPO_ROOT))
    assert not result.errors
    return result.leaves


def by_kind(leaves: list[Leaf], kind: LeafKind) -> Leaf:
    return next(leaf for leaf in leaves if leaf.kind is kind)


def test_prompt_text_is_pinned_to_its_version() -> None:
    assert {p.label: p.digest() for p in all_prompts()} == PINNED


def test_prompts_ask_for_a_strict_schema() -> None:
    for prompt in all_prompts():
        assert prompt.schema["type"] == "object" and prompt.schema["additionalProperties"] is False
        assert set(prompt.schema["required"]) == set(prompt.schema["properties"])


def test_word_chunks_overlap_and_keep_the_text_as_written() -> None:
    text = "\n".join(f"line {i}: word{i}" for i in range(10))  # 30 words
    chunks = chunk_text(text, size=12, overlap=3)
    assert len(chunks) == 3
    assert chunks[0].startswith("line 0:") and "\n" in chunks[0]  # a slice of the text, line breaks kept
    assert chunks[0].split()[-3:] == chunks[1].split()[:3]
    assert chunks[-1].endswith("word9")
    assert chunk_text("   ", 10, 2) == []
    with pytest.raises(ValueError):
        chunk_text(text, 5, 5)


def test_chunks_stay_within_one_document_and_skip_front_matter() -> None:
    chunks = chunk_documents([("a.md", "---\ntitle: x\n---\nalpha beta gamma"), ("b.txt", "delta epsilon")], 2, 0)
    assert [(c.source, c.index, c.text) for c in chunks] == [
        ("a.md", 0, "alpha beta"),
        ("a.md", 1, "gamma"),
        ("b.txt", 0, "delta epsilon"),
    ]


def test_tokenizer_chunks_measure_tokens(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "The quick brown fox jumps over the lazy dog. " * 20
    chunks = chunk_text(text, size=30, overlap=5, spans=tokenizer_spans(tokenizer))
    assert len(chunks) > 1
    assert all(len(tokenizer(c, add_special_tokens=False)["input_ids"]) <= 32 for c in chunks)


def test_cache_key_covers_leaf_teacher_parameters_and_prompts(leaves: list[Leaf]) -> None:
    leaf = by_kind(leaves, LeafKind.FREEFORM_SKILL)
    params = GenerationParams()
    key = cache_key(leaf, "teacher-a", params)
    assert key == cache_key(leaf, "teacher-a", GenerationParams())
    assert key != cache_key(leaf, "teacher-b", params)
    assert key != cache_key(leaf, "teacher-a", replace(params, target=7))
    assert key != cache_key(replace(leaf, leaf_hash="0" * 64), "teacher-a", params)
    # Knowledge-only parameters do not touch skill leaves' keys.
    assert key == cache_key(leaf, "teacher-a", replace(params, chunk_size=99))
    knowledge = by_kind(leaves, LeafKind.KNOWLEDGE)
    assert cache_key(knowledge, "t", params) != cache_key(knowledge, "t", replace(params, chunk_size=99))
    # The leaf's path is not in the key: a pure rename reuses the data.
    assert key == cache_key(replace(leaf, path="elsewhere/qna.yaml"), "teacher-a", params)


def test_plan_generation_is_pure_and_uses_the_cache_it_is_given(leaves: list[Leaf], tmp_path: Path) -> None:
    params = GenerationParams(target=10)
    config = GenerationConfig(tmp_path, "t", params)
    plan = plan_generation(leaves, config)
    assert [p.action for p in plan.leaves] == ["generate"] * len(leaves)
    assert plan.expected_requests == sum(expected_requests(leaf.kind, params) for leaf in leaves)
    assert all(0 < p.expected_requests <= p.max_requests == 100 for p in plan.leaves)
    assert plan.as_json()["leaves"][0]["pipeline"] == pipeline_for(plan.leaves[0].leaf).name
    selected = frozenset({leaves[0].path})
    partial = plan_generation(leaves, replace(config, selected=selected))
    assert [p.leaf.path for p in partial.to_run] == [leaves[0].path]
    assert {p.action for p in partial.leaves if p.leaf.path != leaves[0].path} == {"skip"}


def test_held_out_seeds_never_reach_the_teacher(leaves: list[Leaf], tmp_path: Path) -> None:
    chosen = [by_kind(leaves, kind) for kind in LeafKind]
    with running_server() as server:
        generate(
            chosen,
            TeacherSpec("fake-teacher", server.url),
            tmp_path,
            params=GenerationParams(target=3),
            project_root=REPO_ROOT,
        )
        prompts = "\n".join(m["content"] for body in server.state.bodies for m in body["messages"])
    for leaf in chosen:
        held = heldout_pairs(leaf)
        assert held
        for _, pair in held:
            assert pair.question not in prompts and pair.answer not in prompts
        assert any(pair.question in prompts for seed in training_seeds(leaf) for pair in seed.qna)  # these are shown


def test_every_output_file_loads_with_datasets(leaves: list[Leaf], tmp_path: Path) -> None:
    import datasets

    chosen = [by_kind(leaves, kind) for kind in LeafKind]
    with running_server() as server:
        result = generate(
            chosen,
            TeacherSpec("fake-teacher", server.url),
            tmp_path,
            params=GenerationParams(target=4),
            project_root=REPO_ROOT,
        )
    entries = result.index.leaves
    # All kinds' samples in one dataset: the score and exchange columns agree across pipelines.
    sample_files = [str(tmp_path / e.samples) for e in entries]
    samples = datasets.load_dataset("json", data_files=sample_files, split="train")
    assert len(samples) == sum(e.kept for e in entries) == 12
    assert samples[0]["messages"][0]["role"] == "user" and samples[0]["messages"][1]["role"] == "assistant"
    assert set(samples[0]["metadata"]["scores"]) == {
        "instruction",
        "pair",
        "faithfulness",
        "relevance",
        "question_quality",
    }
    assert {len(row["metadata"]["exchanges"]) for row in samples} == {1, 2, 3}  # knowledge, freeform, grounded
    rejected = datasets.load_dataset("json", data_files=[str(tmp_path / e.rejected) for e in entries], split="train")
    assert set(rejected.column_names) == {"leaf", "leaf_hash", "stage", "reason", "content"}
    assert len(rejected) > 0 and all(row["reason"] for row in rejected)
    summaries = [str(p) for p in tmp_path.glob("leaves/*/summary.json")] + [str(result.summary_path)]
    for path in summaries:
        assert len(datasets.load_dataset("json", data_files=path, split="train")) == 1
    index = json.loads(result.index_path.read_text())
    assert {e["status"] for e in index["leaves"]} == {"complete"}
    assert {row.outcome for row in result.summary.leaves} == {"generated"}


def test_journal_cuts_a_torn_line_and_forgets_transport_failures(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.append(TeacherResult("a", "s", data={"x": 1}))
    journal.append(TeacherResult("b", "s", error_kind=TRANSPORT, error="down"))
    journal.close()
    with path.open("ab") as stream:
        stream.write(b'{"key": "c", "sta')  # killed mid-write
    reopened = Journal(path)
    assert set(reopened.answers) == {"a"} and reopened.lines == 2
    reopened.append(TeacherResult("c", "s", data={"x": 3}))
    reopened.close()
    assert set(Journal(path).answers) == {"a", "c"}
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_scan_cache_sees_finished_and_partial_leaves(leaves: list[Leaf], tmp_path: Path) -> None:
    with running_server() as server:
        result = generate(
            leaves[:1], TeacherSpec("fake-teacher", server.url), tmp_path, params=GenerationParams(target=3),
            project_root=REPO_ROOT,
        )  # fmt: skip
    key = result.index.leaves[0].cache_key
    Journal(tmp_path / "leaves" / "k2" / "journal.jsonl").append(TeacherResult("a", "s", data={}))
    (tmp_path / "leaves" / "k3").mkdir()
    (tmp_path / "leaves" / "k3" / "summary.json").write_text('{"cache_key": "k3", "status": "complete"}')  # damaged
    cache = scan_cache(tmp_path)
    assert cache[key].finished and cache[key].kept == 3 and cache[key].status == "complete"
    assert not cache["k2"].finished and cache["k2"].journal_lines == 1
    assert "k3" not in cache  # not a readable leaf summary: generated again


def test_knowledge_from_a_git_repository_pinned_at_a_commit(tmp_path: Path) -> None:
    import shutil

    from conftest import git

    documents = tmp_path / "docs-repo"
    documents.mkdir()
    git(documents, "init", "-q")
    shutil.copy(REPO_ROOT / "documents" / "ocean_tides" / "ocean_tides.md", documents / "tides.md")
    git(documents, "add", ".")
    git(documents, "commit", "-q", "-m", "docs")
    commit = git(documents, "rev-parse", "HEAD").strip()
    (documents / "tides.md").write_text("changed after the pin\n")  # the pinned commit is what counts
    git(documents, "commit", "-q", "-am", "later")

    project = tmp_path / "project"
    leaf_dir = project / "taxonomy" / "knowledge" / "science" / "tides"
    shutil.copytree(REPO_ROOT / "taxonomy" / "knowledge" / "science" / "oceanography" / "ocean_tides", leaf_dir)
    text = (leaf_dir / "qna.yaml").read_text()
    start = text.index("document:")
    text = text[:start] + f"document:\n  repo: file://{documents}\n  commit: {commit}\n  patterns:\n    - '*.md'\n"
    (leaf_dir / "qna.yaml").write_text(text)
    # file:// reads this machine's file system, so a repository allows it explicitly (docs/rules.md).
    (project / "pyproject.toml").write_text(
        '[tool.labtax]\ntaxonomy = "taxonomy"\n[tool.labtax.documents]\nsources = ["local", "https", "file"]\n'
    )
    result = load_leaves(load_config(project))
    assert not result.errors, result.diagnostics
    with running_server() as server:
        out = tmp_path / "gen"
        generated = generate(
            result.leaves, TeacherSpec("fake-teacher", server.url), out, params=GenerationParams(target=3),
            project_root=project,
        )  # fmt: skip
        passages = [
            m["content"] for body in server.state.bodies for m in body["messages"] if "Passage:" in m["content"]
        ]
    assert generated.index.leaves[0].status == "complete" and generated.summary.leaves[0].outcome == "generated"
    assert passages and all("changed after the pin" not in p for p in passages)
    assert any("tide-generating force" in p for p in passages)


def test_two_runs_cannot_write_the_same_output(leaves: list[Leaf], tmp_path: Path) -> None:
    from labtax.errors import LabtaxError
    from labtax.sdg.run import exclusive

    with running_server() as server, exclusive(tmp_path):
        with pytest.raises(LabtaxError, match="another labtax generate is writing"):
            generate(leaves[:1], TeacherSpec("fake-teacher", server.url), tmp_path, project_root=REPO_ROOT)
        assert server.chat_requests == 0


def test_run_summaries_in_the_same_second_sort_in_run_order(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from labtax.records.generation import RunSummary, read_run_summary, run_summaries, write_run_summary

    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def nothing_to_do(seconds: float) -> RunSummary:  # a run that found every leaf cached
        return RunSummary(
            started.isoformat(timespec="seconds"), seconds, "fake-teacher", None, None, 1, {}, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, {}, (), (),
        )  # fmt: skip

    written = [write_run_summary(tmp_path, nothing_to_do(n), started) for n in range(1, 12)]
    assert sorted(written) == written == run_summaries(tmp_path)
    assert [read_run_summary(p).seconds for p in run_summaries(tmp_path)] == list(range(1, 12))
