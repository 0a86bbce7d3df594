"""`--vet-cache`: trust nothing GEN holds. Every finished cache entry a current leaf would reuse is
checked against its own records before it is reused; one that does not hold up is moved aside
(`GEN/leaves/.untrusted/`) and generated again. (Journals need no such pass: every line carries its
checksum and every answer is read again from its raw text, `labtax.sdg.store.Journal`.)

An entry holds up when its summary names its own cache key, the teacher, parameters and prompt
versions of the plan; its samples file reads as samples of this leaf's pipeline, as many as the
summary says; and each sample is what its recorded teacher exchanges wrote: the answer an exchange
says it wrote, its question inside the answer that proposed it. A sample or summary edited by hand
fails one of these.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from labtax.records.base import RecordError
from labtax.records.generation import SAMPLES_FILE, read_leaf_summary
from labtax.records.sample import ANSWER, QUESTION, Sample, UnusableLine, read_samples
from labtax.sdg.params import pipeline_for
from labtax.sdg.plan import GenerationConfig, cache_key
from labtax.sdg.store import leaf_dir
from labtax.taxonomy.leaf import Leaf
from labtax.text import normalise

UNTRUSTED_DIR = ".untrusted"


def vet_cache(leaves: Iterable[Leaf], config: GenerationConfig) -> list[str]:
    """Check every cache entry the current leaves would reuse; move aside those that fail. One note each."""
    notes = []
    for leaf in leaves:
        key = cache_key(leaf, config.teacher, config.params)
        directory = leaf_dir(config.output_dir, key)
        if not (directory / "summary.json").exists():
            continue
        problem = entry_problem(directory, leaf, config)
        if problem is None:
            continue
        aside = config.output_dir / "leaves" / UNTRUSTED_DIR / f"{key}-{os.getpid()}"
        aside.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(directory), aside)
        notes.append(
            f"{leaf.path}: the cached result does not hold up ({problem}); moved to {aside} and generated again"
        )
    return notes


def entry_problem(directory: Path, leaf: Leaf, config: GenerationConfig) -> str | None:
    """Why a finished cache entry cannot be trusted, or None."""
    pipeline = pipeline_for(leaf)
    try:
        summary = read_leaf_summary(directory / "summary.json")
    except RecordError as exc:
        return f"summary.json: {exc}"
    expected = {
        "cache_key": directory.name,
        "teacher": config.teacher,
        "pipeline": pipeline.name,
        "prompt_version": pipeline.prompt_version,
        "params": config.params.key_fields(leaf.kind),
    }
    for name, value in expected.items():
        if getattr(summary, name) != value:
            return f"summary.json: {name} is not the plan's"
    samples: list[Sample] = []
    path = directory / SAMPLES_FILE
    if not path.is_file():
        return "samples.jsonl is missing"
    for number, row in read_samples(path):
        if isinstance(row, UnusableLine):
            return f"samples.jsonl:{number}: {row.reason}"
        samples.append(row)
    if len(samples) != summary.kept or (summary.status == "complete") != (summary.kept >= summary.target):
        return f"samples.jsonl holds {len(samples)} samples, the summary says {summary.kept} of {summary.target}"
    for number, sample in enumerate(samples, start=1):
        problem = _sample_problem(sample, config.teacher, pipeline.name, pipeline.prompt_version)
        if problem:
            return f"samples.jsonl:{number}: {problem}"
    return None


def _inside(part: str, text: str) -> bool:
    return normalise(part) in normalise(text)


def _sample_problem(sample: Sample, teacher: str, pipeline: str, prompt_version: str) -> str | None:
    meta = sample.metadata
    if (meta.teacher, meta.pipeline, meta.prompt_version) != (teacher, pipeline, prompt_version):
        return "teacher, pipeline or prompt version is not the plan's"
    answered = meta.exchange_that_wrote(ANSWER)
    asked = meta.exchange_that_wrote(QUESTION)
    if answered is None or asked is None:
        return "no recorded exchange wrote its question and answer"
    if not _inside(sample.answer, answered.output) or not _inside(sample.answer, answered.item_output):
        return "its answer is not what the recorded teacher answer says"
    question = _item_text(asked.item_output)
    if not normalise(sample.question).endswith(normalise(question)) or not _inside(question, asked.output):
        return "its question is not in the recorded teacher answer that proposed it"
    return None


def _item_text(item_output: str) -> str:
    """The question in an exchange's one-item answer (`1. <instruction>` or `Q: <question>\nA: ...`)."""
    if item_output.startswith("Q: "):
        return item_output[3:].split("\nA: ", 1)[0]
    return item_output[3:] if item_output.startswith("1. ") else item_output
