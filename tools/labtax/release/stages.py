"""The release's adapters to the other stages: one function per stage, calling its library function.

Each adapter takes the release's options, calls the stage (generation, curation, training,
evaluation) through the one function the stage exposes (docs/architecture.md), and returns the few
facts the release records. Keeping the glue here keeps `release.py` a readable sequence of steps.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labtax.config import Config
from labtax.errors import LabtaxError, UsageError
from labtax.fileio import file_sha256, write_text_atomic
from labtax.records.evaluation import Scores, read_eval_report
from labtax.records.release import DataFile, DataSummary, ReleaseEvaluation, ReleaseGate, ReleaseManifest
from labtax.release.manifest import fingerprint, hash_data_files

if TYPE_CHECKING:
    from labtax.release.release import ReleaseOptions
    from labtax.taxonomy.leaf import Leaf
    from labtax.train.recipe import TrainingPlan


@dataclass
class GenerationOutcome:
    teacher: str
    teacher_requests: int
    entries: dict[str, str]  # cache key -> SHA-256 of samples.jsonl
    discarded: list[str] = field(default_factory=list)  # cache entries no earlier release vouched for
    short: list[str] = field(default_factory=list)  # leaves whose budget ran out before their target: "leaf (k of n)"


@dataclass
class CurationOutcome:
    files_dir: Path
    files: list[DataFile]
    samples_kept: int = 0  # samples curation kept for training
    phase1_rows: int = 0
    phase2_rows: int = 0


@dataclass
class TrainingOutcome:
    model_dir: Path
    hyperparameters: dict[str, Any]
    trained: bool


@dataclass
class EvaluationOutcome:
    passed: bool
    reason: str
    summary: ReleaseEvaluation


def load_release_leaves(config: Config, notes: list[str] | None = None) -> list[Leaf]:
    """Every valid leaf of the taxonomy. An invalid leaf is left out, never the whole release (issue 12):
    each one skipped is named in `notes` with its first error."""
    from labtax.validate import load_leaves, usable_leaves

    result = load_leaves(config)
    split = usable_leaves(config, result)
    for path, errors in sorted(split.invalid.items()):
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        if notes is not None:
            notes.append(f"skipped {path}: {first.file}:{first.line}: [{first.rule}] {first.message}{more}")
    if not split.leaves:
        raise LabtaxError(f"no valid leaves under {config.taxonomy_root}; there is nothing to release")
    return sorted(split.leaves, key=lambda leaf: leaf.path)


def check_settings(config: Config, options: ReleaseOptions) -> dict[str, Any]:
    """Check every stage's settings before any work; return what of them determines the model.

    The teacher and generation parameters enter through the generation cache keys (`generation_keys`).
    """
    from labtax.curate.settings import load_settings_file
    from labtax.train.base_model import resolve_model
    from labtax.train.config import load_hyperparameters

    hyper = load_hyperparameters(options.train_config, options.train_overrides)
    generation_params(options)
    teacher_spec(options)
    if options.curate_config is not None:
        load_settings_file(options.curate_config)
    resolve_model(options.base_model)  # a mistyped local path fails here, not after generation and curation
    if options.general_set is not None:
        from labtax.train.evaluate import read_general_set

        read_general_set(options.general_set)  # a bad line fails here, not after training
    curation = file_sha256(options.curate_config) if options.curate_config else None
    return {"train": hyper.as_dict(), "curation": curation}


def generation_keys(leaves: list[Leaf], options: ReleaseOptions) -> list[str]:
    """Every leaf's generation cache key: leaf hash, pipeline and prompt versions, teacher, parameters.

    Equal keys mean equal generated data, so they stand for "the data" in the release's inputs.
    """
    from labtax.sdg.plan import cache_key

    teacher, params = teacher_spec(options).identity(), generation_params(options)
    return sorted(cache_key(leaf, teacher, params) for leaf in leaves)


def download_release_files(repo_id: str, tag: str, target_dir: Path) -> bool:
    """Fetch release.json and eval.json as the Hub holds them at `tag`.

    False when the Hub has no such repository, tag or file (a release that changed nothing has none).
    Any other failure stops the release: guessing "no previous release" would rebuild everything.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    from labtax.release.hub import hub_endpoint

    token = os.environ.get("HF_TOKEN") or None
    # A private cache: what the Hub holds now, never a file some earlier download left behind.
    with tempfile.TemporaryDirectory() as cache:
        try:
            fetched = {
                name: hf_hub_download(
                    repo_id, name, revision=tag, token=token, endpoint=hub_endpoint(), cache_dir=cache
                )
                for name in ("release.json", "eval.json")
            }
        except HfHubHTTPError as exc:
            if exc.response is not None and exc.response.status_code == 404:
                return False
            problem = type(exc).__name__
        except OSError as exc:  # huggingface_hub wraps connection problems and other refusals alike
            problem = type(exc).__name__
        else:
            target_dir.mkdir(parents=True, exist_ok=True)
            for name, path in fetched.items():
                shutil.copyfile(path, target_dir / name)
            return True
    raise LabtaxError(
        f"cannot read release {tag} from the Hub repository {repo_id} ({problem}): check HF_TOKEN and that "
        "the Hub is reachable, then re-run; or pass --previous-manifest"
    )


# --- generation ---------------------------------------------------------------------------------------


def verify_generation_cache(generation_dir: Path, previous: ReleaseManifest | None) -> list[str]:
    """Drop restored cache entries that no earlier release vouches for (by their samples' SHA-256).

    The workflow restores generation results from the Actions cache, which workflows other than the
    release can write. An entry whose samples.jsonl hash is not in the previous release.json (read
    from the Hub, which only the release environment writes) is regenerated instead of trusted.
    """
    leaves_dir = generation_dir / "leaves"
    if not leaves_dir.is_dir():
        return []
    vouched = previous.generation if previous else {}
    discarded = []
    for entry in sorted(p for p in leaves_dir.iterdir() if p.is_dir()):
        samples = entry / "samples.jsonl"
        # A journal of unfinished work is not vouched for either: a cache is saved by finished runs only.
        if samples.is_file() and vouched.get(entry.name) == file_sha256(samples):
            continue
        shutil.rmtree(entry)
        discarded.append(entry.name)
    return discarded


def generation_params(options: ReleaseOptions) -> Any:
    from labtax.sdg.params import GenerationParams

    params = GenerationParams(target=options.generation_target)
    params.validate()
    return params


def teacher_spec(options: ReleaseOptions) -> Any:
    from labtax.sdg.teacher_spec import TeacherSpec

    if not options.teacher_model:
        raise UsageError(
            "no teacher: pass --teacher-model (and --teacher-url for a server) or set LABTAX_TEACHER_MODEL"
        )
    spec = TeacherSpec(model=options.teacher_model, url=options.teacher_url)
    spec.validate()
    return spec


def generate(
    config: Config, options: ReleaseOptions, leaves: list[Leaf], generation_dir: Path, previous: ReleaseManifest | None
) -> GenerationOutcome:
    """Generate what the cache lacks (`labtax.sdg.run.generate`); unchanged leaves cost no request.

    With `vet_cache` (the workflow, whose cache other workflows can write), restored results are
    kept only when the previous release vouches for them.
    """
    from labtax.sdg.run import generate as run_generation

    discarded = verify_generation_cache(generation_dir, previous) if options.vet_cache else []
    spec = teacher_spec(options)
    result = run_generation(
        leaves,
        spec,
        generation_dir,
        params=generation_params(options),
        project_root=config.project_root,
        vet=options.vet_cache,
    )
    # A leaf short of its target because the teacher failed (unreachable, errors) is resumed by a re-run:
    # stop and say so. One short because its request budget is spent ends the same way on every run
    # (labtax.sdg.leaf_run): a re-run cannot help, so its samples are used and the notes say it.
    resumable = [row for row in result.incomplete if _teacher_was_unreachable(generation_dir, row.cache_key)]
    if resumable:
        names = ", ".join(row.leaf for row in resumable[:5])
        raise LabtaxError(
            f"generation is incomplete for {len(resumable)} leaves after teacher failures ({names}); "
            "run the same release command again to resume it"
        )
    short = [f"{row.leaf} ({row.kept} of {row.target})" for row in result.incomplete]
    return GenerationOutcome(
        teacher=spec.identity(),
        teacher_requests=result.requests_sent,
        entries=generation_entries(generation_dir),
        discarded=discarded,
        short=short,
    )


def _teacher_was_unreachable(generation_dir: Path, cache_key: str) -> bool:
    """Whether a leaf's generation lost requests to transport failures (the next run asks them again);
    failures of format (an answer in no usable shape) are replayed as they were."""
    from labtax.records.generation import SUMMARY_FILE, read_leaf_summary
    from labtax.sdg.store import leaf_dir
    from labtax.sdg.teacher import TRANSPORT

    path = leaf_dir(generation_dir, cache_key) / SUMMARY_FILE
    if not path.is_file():
        return True  # not finished: resumable
    return any(failure.kind == TRANSPORT for failure in read_leaf_summary(path).failures)


def generation_entries(generation_dir: Path) -> dict[str, str]:
    """cache key -> SHA-256 of samples.jsonl, for every leaf in generation.json."""
    from labtax.records.generation import read_generation_index

    entries = {}
    for leaf in read_generation_index(generation_dir).leaves:
        samples = generation_dir / leaf.samples
        if samples.is_file():
            entries[leaf.cache_key] = file_sha256(samples)
    return entries


# --- curation -----------------------------------------------------------------------------------------


def curation_config(config: Config, options: ReleaseOptions, generation_dir: Path, data_dir: Path) -> Any:
    from labtax.curate.settings import CurationConfig, load_settings_file

    sections = load_settings_file(options.curate_config) if options.curate_config else {}
    return CurationConfig(
        samples_dir=generation_dir, output_dir=data_dir, taxonomy_root=config.taxonomy_root, **sections
    )


def curate(
    config: Config, options: ReleaseOptions, leaves: list[Leaf], generation_dir: Path, data_dir: Path
) -> CurationOutcome:
    """Curate the generated samples into the two phase files (`labtax.curate.run.run_curation`)."""
    from labtax.curate.run import run_curation
    from labtax.records.curation import check_curated_data

    result = run_curation(curation_config(config, options, generation_dir, data_dir), leaves)
    check_curated_data(data_dir)  # what is hashed and pushed is exactly what curation.json describes
    files = sorted(path for path in result.files.values() if path.is_file())
    return CurationOutcome(
        data_dir,
        hash_data_files(data_dir.parent, files),
        samples_kept=result.totals.kept,
        phase1_rows=result.mix.phase1_rows,
        phase2_rows=result.mix.phase2_rows,
    )


# --- what happened to the data ------------------------------------------------------------------------


def data_summary(
    generation_dir: Path,
    leaves: list[Leaf],
    options: ReleaseOptions,
    previous: ReleaseManifest | None,
    curation: CurationOutcome,
) -> DataSummary:
    """Requests sent and samples kept for this release's data, beside what the planner announced.

    The leaves whose cache entry the previous release already had cost nothing now (`leaves_reused`).
    For the others, the requests are read from generation's run summaries: for each cache entry, the
    newest run that generated it and the runs that resumed it since (newest first, back to the run that
    started it afresh), so a re-run of the release, which generates nothing, records the same numbers.
    """
    from labtax.records.base import RecordError
    from labtax.records.generation import read_generation_index, read_run_summary, run_summaries
    from labtax.sdg.params import expected_requests

    index = read_generation_index(generation_dir)
    current = {leaf.path: leaf for leaf in leaves}
    entries = [entry for entry in index.leaves if entry.leaf in current]
    vouched = previous.generation if previous else {}
    generated = {entry.cache_key: entry for entry in entries if entry.cache_key not in vouched}
    pending, sent, failed = set(generated), 0, 0
    for path in reversed(run_summaries(generation_dir)):
        if not pending:
            break
        try:
            run = read_run_summary(path)
        except RecordError:
            continue  # a summary of another labtax version: its counts are unknown, not guessed
        for row in run.leaves:
            if row.cache_key in pending and row.requests is not None:
                # What the teacher got (retries and hedges included); older summaries only knew `sent`.
                sent += row.http_requests if row.http_requests is not None else (row.sent or 0)
                failed += row.failed or 0
                if row.action != "resume":
                    pending.discard(row.cache_key)
    params = generation_params(options)
    return DataSummary(
        leaves_generated=len(generated),
        leaves_reused=len(entries) - len(generated),
        planned_requests=sum(expected_requests(current[entry.leaf].kind, params) for entry in generated.values()),
        requests_sent=sent,
        requests_failed=failed,
        samples_generated=sum(entry.kept for entry in entries),
        samples_target=sum(entry.target for entry in entries),
        samples_trained=curation.samples_kept,
        phase1_rows=curation.phase1_rows,
        phase2_rows=curation.phase2_rows,
    )


# --- training -----------------------------------------------------------------------------------------


def train(
    options: ReleaseOptions, data_dir: Path, run_dir: Path, on_plan: Callable[[TrainingPlan], None] | None = None
) -> TrainingOutcome:
    """Two-phase training, resumed when an earlier run of this release stopped midway.

    `run_dir` is named after the release's inputs, so only a run of the same inputs is resumed. Runs
    of other inputs (earlier attempts) are removed once this one has finished, a model directory is
    large; never before: a run that fails must not cost the finished work of an earlier one.
    """
    from labtax.train.config import TrainConfig, load_hyperparameters
    from labtax.train.recipe import run_training

    hyper = load_hyperparameters(options.train_config, options.train_overrides)
    resume = (run_dir / "training.json").exists()
    result = run_training(
        TrainConfig(base_model=options.base_model, data_dir=data_dir, output_dir=run_dir, hyper=hyper, resume=resume),
        on_plan=on_plan,
    )
    if not result.completed or result.final_model is None:
        raise LabtaxError(
            f"training stopped before the end; run the same release command again to resume it ({run_dir})"
        )
    for other in sorted(run_dir.parent.iterdir()):
        if other != run_dir and other.is_dir():
            shutil.rmtree(other)
    return TrainingOutcome(result.final_model, hyper.as_dict(), trained=True)


# --- evaluation ---------------------------------------------------------------------------------------


def evaluate(
    config: Config,
    options: ReleaseOptions,
    leaves: list[Leaf],
    model_dir: Path,
    output: Path,
    previous_eval: Path | None,
) -> EvaluationOutcome:
    """Score the model and the base model on the held-out seeds; gate against the previous release.

    An evaluation of the very same model, taxonomy, baseline and previous results (a release re-run
    after a failed push, or the real release after a dry run) is reused instead of repeated.
    """
    from labtax.train.evaluate import EvalConfig, run_evaluation
    from labtax.train.recipe import check_trained_model

    check_trained_model(model_dir)  # never score (or reuse a score of) a model that differs from training's record
    eval_config = EvalConfig(
        model=str(model_dir),
        baseline=options.base_model,
        output=output / "eval.json",
        taxonomy_root=config.taxonomy_root,
        previous=previous_eval,
        training_data=output / "data",
        teacher=teacher_spec(options) if options.eval_teacher else None,
        general=options.general_set,
    )
    if options.eval_max_new_tokens:
        limit = options.eval_max_new_tokens
        eval_config = replace(eval_config, max_new_tokens=limit, answer_tokens=min(eval_config.answer_tokens, limit))
    stamp_file = output / "eval.stamp"
    stamp = fingerprint(
        {
            "model": [(item.path, item.sha256) for item in hash_data_files(model_dir, list(model_dir.rglob("*.*")))],
            "leaves": [(leaf.path, leaf.leaf_hash) for leaf in leaves],
            "baseline": options.base_model,
            "previous": file_sha256(previous_eval) if previous_eval else None,
            "max_new_tokens": eval_config.max_new_tokens,
            "answer_tokens": eval_config.answer_tokens,
            "teacher": options.teacher_model if eval_config.teacher else None,
            "general": file_sha256(options.general_set) if options.general_set else None,
        }
    )
    reusable = (output / "eval.json").is_file() and stamp_file.is_file() and stamp_file.read_text().strip() == stamp
    if not reusable:
        stamp_file.unlink(missing_ok=True)
        run_evaluation(eval_config)
        write_text_atomic(stamp_file, stamp + "\n")
    return read_evaluation(output / "eval.json")


def _metrics(scores: Scores) -> dict[str, float]:
    values = {
        "heldout_loss": scores.loss,
        "heldout_perplexity": scores.perplexity,
        "exact_match": scores.exact_match,
        "token_f1": scores.f1,
    }
    return {label: float(value) for label, value in values.items() if value is not None}


def read_evaluation(path: Path) -> EvaluationOutcome:
    """The gate verdict and the overall metrics of an eval.json, as the release records them."""
    report = read_eval_report(path)
    gate = report.gate
    summary = ReleaseEvaluation(
        overall=_metrics(report.overall.model),
        baseline=_metrics(report.overall.baseline),
        gate=ReleaseGate(gate.passed, gate.status, gate.reason, gate.previous),
        leaves=report.comparison,
    )
    return EvaluationOutcome(gate.passed, gate.reason, summary)
