"""The hand-off records (labtax.records): each file's one writer and one reader agree, a file of a newer
format is refused with a message naming the file and saying to upgrade, and importing the records
costs nothing heavy (they are a floor every stage stands on)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from labtax.records.base import NewerFormatError, RecordError
from labtax.records.curation import (
    CurationReport,
    CurationTotals,
    InfluenceSummary,
    MixCounts,
    OutputFile,
    read_curation_report,
    write_curation_report,
)
from labtax.records.evaluation import (
    Decoding,
    EvalReport,
    GateVerdict,
    LeafEvaluation,
    ModelAndBaseline,
    Scores,
    read_eval_report,
    write_eval_report,
)
from labtax.records.generation import (
    GeneratedLeaf,
    GenerationIndex,
    RunSummary,
    read_generation_index,
    read_run_summary,
    write_generation_index,
    write_run_summary,
)
from labtax.records.release import (
    DataFile,
    LeafRecord,
    ReleaseEvaluation,
    ReleaseManifest,
    read_manifest,
    write_manifest,
)
from labtax.records.sample import UnusableLine, read_samples, sample_to_json
from test_curate_support import REPO_ROOT, TIDES, row

LEAF = "knowledge/science/oceanography/ocean_tides/qna.yaml"


def index() -> GenerationIndex:
    key = "0f" * 16
    leaf = GeneratedLeaf(LEAF, "ab" * 32, "knowledge", "knowledge", "knowledge", key,
                         f"leaves/{key}/samples.jsonl", f"leaves/{key}/rejected.jsonl", "complete", 6, 6)  # fmt: skip
    return GenerationIndex("fake-teacher", (leaf,))


def run_summary() -> RunSummary:
    return RunSummary("2026-01-02T03:04:05+00:00", 1.5, "fake-teacher", 8192, "server", 1, {"temperature": 0.7},
                      1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, {}, (), ())  # fmt: skip


def curation_report() -> CurationReport:
    return CurationReport(
        seed=0,
        teacher="fake-teacher",
        settings={"mix": {"replay_share": 0.3}},
        inputs={"generation.json": "1" * 64},
        outputs={"phase1_knowledge.jsonl": OutputFile(0)},
        totals=CurationTotals(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        drops={},
        mix=MixCounts(0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0),
        influence=InfluenceSummary(enabled=False),
        leaves={},
    )


def eval_report() -> EvalReport:
    leaf = LeafEvaluation(LEAF, "knowledge", "ab" * 32, "cd" * 32, 2, Scores(10, 12.5, 2, 1, 1.5), Scores(10, 20.0))
    gate = GateVerdict("skipped", None, note="no --previous eval.json", thresholds={"max_loss_increase": 0.05})
    overall = ModelAndBaseline(Scores(10, 12.5, 2, 1, 1.5), Scores(10, 20.0))
    return EvalReport("RUN/final", "base", "heldout", Decoding("greedy", 64), None, overall, (leaf,), gate)


def manifest() -> ReleaseManifest:
    return ReleaseManifest("v0.1.0", "a" * 40, [LeafRecord(LEAF, "ab" * 32, "knowledge", "knowledge")],
                           [DataFile("data/phase1_knowledge.jsonl", "3" * 64, 120)], "fake-teacher", "base", {},
                           ReleaseEvaluation({"heldout_loss": 1.25}, {"heldout_loss": 2.0}), None)  # fmt: skip


# (name, write to a directory and return the file, read the file back, the record written)
CASES: list[tuple[str, Callable[[Path, Any], Path], Callable[[Path], Any], Callable[[], Any]]] = [
    ("generation.json", write_generation_index, lambda p: read_generation_index(p.parent), index),
    (
        "run summary",
        lambda d, r: write_run_summary(d, r, __import__("datetime").datetime(2026, 1, 2)),
        read_run_summary,
        run_summary,
    ),
    ("curation.json", write_curation_report, lambda p: read_curation_report(p.parent), curation_report),
    (
        "eval.json",
        lambda d, r: (write_eval_report(d / "eval.json", r), d / "eval.json")[1],
        read_eval_report,
        eval_report,
    ),
    (
        "release.json",
        lambda d, r: (write_manifest(d / "release.json", r), d / "release.json")[1],
        read_manifest,
        manifest,
    ),
]


@pytest.mark.parametrize(("name", "write", "read", "make"), CASES, ids=[case[0] for case in CASES])
def test_each_file_reads_back_what_its_writer_wrote_and_refuses_a_newer_format(
    name: str, write: Callable[[Path, Any], Path], read: Callable[[Path], Any], make: Callable[[], Any], tmp_path: Path
) -> None:
    record = make()
    path = write(tmp_path, record)
    assert read(path) == record
    raw = json.loads(path.read_text())
    format_name, _, version = raw["format"].partition("/")
    raw["format"] = f"{format_name}/{int(version) + 1}"
    path.write_text(json.dumps(raw))
    with pytest.raises(NewerFormatError, match="upgrade labtax") as newer:
        read(path)
    assert str(path) in str(newer.value) and raw["format"] in str(newer.value)
    raw["format"] = "something-else/1"
    path.write_text(json.dumps(raw))
    with pytest.raises(RecordError, match="not a labtax") as foreign:
        read(path)
    assert str(path) in str(foreign.value)


def test_a_wrong_field_is_named_with_its_path(tmp_path: Path) -> None:
    path = write_generation_index(tmp_path, index())
    raw = json.loads(path.read_text())
    raw["leaves"][0]["kept"] = "six"
    path.write_text(json.dumps(raw))
    with pytest.raises(RecordError, match=r"leaves\.0\.kept"):
        read_generation_index(tmp_path)


def test_a_newer_sample_stops_curation_while_a_damaged_one_is_only_unusable(tmp_path: Path) -> None:
    from labtax.config import load_config
    from labtax.validate import load_leaves

    tides = next(leaf for leaf in load_leaves(load_config(REPO_ROOT)).leaves if leaf.path == TIDES)
    good = sample_to_json(row(tides, "What raises the tides?", "The Moon's pull on the oceans."))
    newer = json.loads(json.dumps(good))
    newer["metadata"]["format"] = "labtax-sample/2"
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps(good) + "\n" + '{"messages": []}\n')
    found = list(read_samples(path))
    assert [number for number, _ in found] == [1, 2] and isinstance(found[1][1], UnusableLine)
    path.write_text(json.dumps(good) + "\n" + json.dumps(newer) + "\n")
    with pytest.raises(NewerFormatError, match=f"{path}:2 was written by a newer labtax"):
        list(read_samples(path))


def test_the_records_import_nothing_heavy() -> None:
    code = (
        "import sys, labtax.records.sample, labtax.records.generation, labtax.records.curation, "
        "labtax.records.evaluation, labtax.records.release; print('\\n'.join(sys.modules))"
    )
    loaded = set(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    assert not loaded & {"numpy", "datasketch", "torch", "transformers", "pydantic", "aiohttp", "huggingface_hub"}
