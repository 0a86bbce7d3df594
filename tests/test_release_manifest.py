"""release.json round-trips and is written atomically; the model card carries the model-index,
the changed leaves with links, provenance, base model and licence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labtax.errors import LabtaxError
from labtax.records.release import (
    DataFile,
    HubTarget,
    LeafRecord,
    ReleaseEvaluation,
    ReleaseGate,
    ReleaseManifest,
    read_manifest,
    write_manifest,
)
from labtax.release.card import CardOptions, build_model_card
from labtax.release.manifest import (
    check_version,
    compare_leaves,
    hash_data_files,
    leaves_fingerprint,
    version_key,
)


def sample_manifest() -> ReleaseManifest:
    return ReleaseManifest(
        version="v1.1.0",
        previous_version="v1.0.0",
        taxonomy_commit="a" * 40,
        leaves=[
            LeafRecord("knowledge/science/tides/qna.yaml", "1" * 64, "knowledge", "knowledge"),
            LeafRecord("compositional_skills/writing/haiku/qna.yaml", "2" * 64, "compositional_skills", "freeform"),
        ],
        data_files=[DataFile("data/phase1_knowledge.jsonl", "3" * 64, 120)],
        teacher="teacher-model",
        base_model="org/base-model",
        hyperparameters={"learning_rate": 2e-5, "epochs": 2},
        evaluation=ReleaseEvaluation(
            overall={"heldout_loss": 1.5, "token_f1": 0.42},
            baseline={"heldout_loss": 1.9, "token_f1": 0.30},
            gate=ReleaseGate(passed=True, status="pass", reason="pass", previous="history/v1.0.0/eval.json"),
        ),
        hub=HubTarget("org/student", "v1.1.0", revision="b" * 40),
    )


def test_the_manifest_round_trips_through_release_json(tmp_path: Path) -> None:
    manifest = sample_manifest()
    path = tmp_path / "out" / "release.json"
    write_manifest(path, manifest)

    assert read_manifest(path) == manifest
    raw = json.loads(path.read_text())
    assert next(iter(raw)) == "format" and raw["hub"]["revision"] == "b" * 40
    assert [p.name for p in path.parent.iterdir()] == ["release.json"]  # no temporary left behind


def test_a_foreign_or_broken_manifest_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "release.json"
    path.write_text("{not json")
    with pytest.raises(LabtaxError, match="not a readable release manifest"):
        read_manifest(path)
    path.write_text('{"format": "something-else"}')
    with pytest.raises(LabtaxError, match="labtax-release/1"):
        read_manifest(path)


def test_versions_are_v_semver_and_sort_numerically() -> None:
    assert check_version("v1.10.0") == "v1.10.0"
    with pytest.raises(LabtaxError, match=r"v1\.2\.3"):
        check_version("1.0")
    assert sorted(["v1.10.0", "v1.2.0", "v1.2.0-rc.1", "v0.9.9"], key=version_key) == [
        "v0.9.9",
        "v1.2.0-rc.1",
        "v1.2.0",
        "v1.10.0",
    ]


def test_leaf_changes_from_hashes_alone() -> None:
    previous = {"a/qna.yaml": "h1", "b/qna.yaml": "h2", "c/qna.yaml": "h3"}
    current = {"a/qna.yaml": "h1", "b/qna.yaml": "h2x", "moved/c/qna.yaml": "h3", "d/qna.yaml": "h4"}
    changes = compare_leaves(previous, current)
    assert (changes.added, changes.modified, changes.renamed, changes.deleted) == (
        ["d/qna.yaml"],
        ["b/qna.yaml"],
        [("c/qna.yaml", "moved/c/qna.yaml")],
        [],
    )
    assert not compare_leaves(current, current).changed
    assert leaves_fingerprint(current) == leaves_fingerprint(dict(reversed(current.items())))


def test_data_files_are_hashed_relative_to_their_root(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "b.jsonl").write_text("b\n")
    (tmp_path / "data" / "a.jsonl").write_text("a\n")
    records = hash_data_files(tmp_path, list((tmp_path / "data").iterdir()))
    assert [r.path for r in records] == ["data/a.jsonl", "data/b.jsonl"]
    assert records[0].sha256 == "87428fc522803d31065e7bce3cf03fe475096631e5e07bbd7a0fde60c4cf25c7"


def test_the_model_card_has_model_index_changed_leaves_with_links_and_provenance() -> None:
    from huggingface_hub import ModelCard

    manifest = sample_manifest()
    changes = compare_leaves(
        {"compositional_skills/writing/haiku/qna.yaml": "0" * 64, "gone/qna.yaml": "9" * 64}, manifest.leaf_hashes
    )
    card = build_model_card(
        manifest, changes, CardOptions(source_url="https://github.com/org/tax", dataset_repo_id="org/student-data")
    )

    reparsed = ModelCard(str(card))
    data = reparsed.data.to_dict()
    assert data["base_model"] == "org/base-model" and data["license"] == "apache-2.0"
    assert data["datasets"] == ["org/student-data"]
    results = {r.metric_type: r.metric_value for r in reparsed.data.eval_results}
    assert results == {"token_f1": 0.42, "heldout_loss": 1.5}
    link = f"https://github.com/org/tax/blob/{'a' * 40}/taxonomy/knowledge/science/tides/qna.yaml"
    text = reparsed.text
    assert f"**Added** (1):\n- [`knowledge/science/tides/qna.yaml`]({link})" in text
    assert "**Changed** (1):\n- [`compositional_skills/writing/haiku/qna.yaml`]" in text
    assert "**Deleted** (1):\n- `gone/qna.yaml`" in text
    assert "since v1.0.0" in text and "teacher `teacher-model`" in text and "3" * 64 in text
    assert "## Intended use" in text
    assert "Release gate against the base model and the previous release (v1.0.0): passed" in text
    assert "| token_f1 | 0.42 | 0.3 |" in text


def test_the_card_shows_every_regressed_leaf_first_and_caps_the_rest() -> None:
    from dataclasses import replace

    from labtax.records.evaluation import LeafComparison
    from labtax.release.card import evaluation_section

    def row(n: int, change: float) -> LeafComparison:
        return LeafComparison(
            f"skills/leaf_{n:05d}|x/qna.yaml", "freeform_skill", "token_f1", True, 0.2, None, 0.2 + change, change,
            "base", change < -0.05,
        )  # fmt: skip

    rows = tuple([row(n, -0.1) for n in range(3)] + [row(n, 0.01 * n) for n in range(3, 10_000)])
    manifest = sample_manifest()
    manifest = replace(manifest, evaluation=replace(manifest.evaluation, leaves=rows))
    text = "\n".join(evaluation_section(manifest))
    table = [line for line in text.splitlines() if line.startswith("| skills")]
    assert len(table) == 200 and all("▼" in line for line in table[:3]) and "▼" not in table[3]
    assert "leaf\\_00000\\|x" in text  # contributor text is escaped: a pipe cannot split the cell
    assert "3 of 10000 leaves regressed (all shown); 9800 more that did not are in eval.json" in text
    again = replace(manifest, evaluation=replace(manifest.evaluation, leaves=rows[:5]))
    assert "3 of 5 leaves regressed" in "\n".join(evaluation_section(again))


def test_a_local_base_model_is_not_claimed_as_a_hub_model(tmp_path: Path) -> None:
    from dataclasses import replace

    manifest = replace(sample_manifest(), base_model=str(tmp_path))
    card = build_model_card(manifest, compare_leaves({}, manifest.leaf_hashes))
    assert "base_model" not in card.data.to_dict() and f"fine-tuned from `{tmp_path}`" in card.text


def test_restored_generation_results_are_kept_only_when_the_previous_release_vouches_for_them(tmp_path: Path) -> None:
    from dataclasses import replace

    from labtax.fileio import file_sha256
    from labtax.release.stages import verify_generation_cache

    leaves = tmp_path / "generation" / "leaves"
    for key, text in (("vouched", "good\n"), ("tampered", "planted\n"), ("unknown", "new\n")):
        (leaves / key).mkdir(parents=True)
        (leaves / key / "samples.jsonl").write_text(text)
    (leaves / "resuming").mkdir()
    (leaves / "resuming" / "journal.jsonl").write_text("{}\n")
    vouched_hash = file_sha256(leaves / "vouched" / "samples.jsonl")
    previous = replace(sample_manifest(), generation={"vouched": vouched_hash, "tampered": "0" * 64})

    discarded = verify_generation_cache(tmp_path / "generation", previous)

    assert discarded == ["resuming", "tampered", "unknown"]
    assert sorted(p.name for p in leaves.iterdir()) == ["vouched"]
    assert verify_generation_cache(tmp_path / "missing", previous) == []
