"""`labtax release vX.Y.Z`: the orchestration from a version tag to a model on the Hub.

    previous tag ─▶ previous release.json ─▶ inputs changed? ──no──▶ "nothing changed" (no teacher, no training)
                                              │ yes
    diff (leaf hashes) ─▶ generate (cache) ─▶ curate ─▶ train ─▶ evaluate ─▶ gate ──fail──▶ stop, nothing pushed
                                                                               │ pass
    model card + release.json ─▶ push datasets, then model (idempotent) ─▶ tag ─▶ release.json with the Hub revision

Every stage writes into the release directory (`--output`) and is resumable, so a release that
stopped anywhere (gate, push, a killed runner) is finished by running the same command again. The
stages are reached through `labtax.release.stages`, one adapter per stage's library function.

Release directory:
    generation/   GEN (cached between releases, keyed by leaf hashes)
    data/         DATA (curated phase files, curation.json)
    train/<inputs>/  RUN (RUN/final is the model), named after the inputs fingerprint
    eval.json, eval.md
    hub/model/    exactly what the model repository will hold (weights, tokenizer, README.md, release.json, eval.json)
    hub/data/     exactly what the dataset repository will hold (with --dataset-repo)
    release.json  the manifest, with the Hub revision once pushed
    notes.md      the release notes (the GitHub release body)
    history/<version>/   release.json and eval.json of every finished release, for the next one
    skipped       present when nothing changed since the previous release
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labtax.config import Config
from labtax.errors import LabtaxError, UsageError
from labtax.fileio import write_bytes_atomic, write_text_atomic
from labtax.git import Repository, open_repository
from labtax.output import redact_credentials
from labtax.records.release import (
    MANIFEST_FILE,
    HubTarget,
    LeafRecord,
    ReleaseManifest,
    read_manifest,
    write_manifest,
)
from labtax.release.credits import attribution_record
from labtax.release.manifest import (
    LeafChanges,
    check_version,
    compare_leaves,
    fingerprint,
    leaves_fingerprint,
    version_key,
)

if TYPE_CHECKING:
    from labtax.release.card import CardOptions
    from labtax.release.hub import PushPlan, PushResult
    from labtax.train.recipe import TrainingPlan

SKIPPED_MARKER = "skipped"


class GateFailed(LabtaxError):
    """The evaluation gate refused the model: nothing is pushed (exit code 1)."""

    exit_code = 1


@dataclass(frozen=True)
class ReleaseOptions:
    version: str
    output: Path
    base_model: str
    dry_run: bool = False
    hub_repo: str | None = None
    dataset_repo: str | None = None
    private: bool = False
    teacher_url: tuple[str, ...] | None = None  # one API root or several replicas of the same model
    teacher_model: str | None = None
    generation_target: int | None = None
    curate_config: Path | None = None
    eval_max_new_tokens: int | None = None  # the longest answer the evaluation generates, any kind
    eval_teacher: bool = True  # the teacher writes multiple-choice questions and judges skill answers
    general_set: Path | None = None  # the release manager's general set (JSONL), guarding against forgetting
    train_config: Path | None = None
    train_overrides: dict[str, Any] = field(default_factory=dict)
    previous_manifest: Path | None = None
    vet_cache: bool = False
    force: bool = False
    source_url: str | None = None
    license: str = "apache-2.0"


@dataclass
class ReleaseResult:
    version: str
    previous_version: str | None
    status: str  # "released" | "dry-run" | "unchanged"
    output: Path
    manifest: ReleaseManifest | None = None
    changes: LeafChanges | None = None
    teacher_requests: int = 0
    trained: bool = False
    push_plans: list[PushPlan] = field(default_factory=list)
    pushed: list[PushResult] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage


# --- git ----------------------------------------------------------------------------------------------


def open_git(config: Config) -> Repository:
    """The work tree holding the project (GitPython); a release records its commit, so it must be one."""
    repository = open_repository(config.project_root) if config.project_root.is_dir() else None
    if repository is None:
        raise UsageError(
            f"{config.project_root} is not a git repository; a release records its commit, so run it in one"
        )
    return repository


def previous_release_tags(repo: Repository, version: str) -> list[str]:
    """Release tags below `version` that are ancestors of HEAD, newest first (the sorted tag list)."""
    listed = repo.tags_merged_into("HEAD", "v*")
    earlier = [tag for tag in listed if version_key(tag)[0] >= 0 and version_key(tag) < version_key(version)]
    return sorted(earlier, key=version_key, reverse=True)


# --- the release --------------------------------------------------------------------------------------


def release_inputs(
    options: ReleaseOptions, leaf_hashes: dict[str, str], generation_keys: list[str], stage_settings: dict[str, Any]
) -> str:
    """What determines the model: the leaves (paths and hashes), the data they generate (cache keys:
    teacher, pipelines, prompts, parameters), the curation and training settings, the base model."""
    return fingerprint(
        {
            "leaves": leaves_fingerprint(leaf_hashes),
            "generation": generation_keys,
            "base_model": options.base_model,
            "stages": stage_settings,
        }
    )


def find_previous_manifest(options: ReleaseOptions, earlier_tags: list[str]) -> ReleaseManifest | None:
    """The newest earlier release that has a manifest (a tag whose release changed nothing has none).

    A real release reads it from the Hub, the trusted record of what was released (a release
    directory restored from a cache is not); a dry run reads the local release history, offline.
    """
    if options.previous_manifest is not None:
        return read_manifest(options.previous_manifest)
    for tag in earlier_tags:
        history = options.output / "history" / tag
        if not options.dry_run and options.hub_repo:
            from labtax.release.stages import download_release_files

            if download_release_files(options.hub_repo, tag, history):
                return read_manifest(history / MANIFEST_FILE)
        elif (history / MANIFEST_FILE).is_file():
            return read_manifest(history / MANIFEST_FILE)
    return None


def check_preconditions(config: Config, options: ReleaseOptions) -> tuple[str, list[str]]:
    """Everything a release needs that can be checked in a second: refused before hours of work.

    Returns the commit released (HEAD) and the earlier release tags it descends from, newest first.
    """
    version = check_version(options.version)
    with open_git(config) as repo:
        head = repo.resolve_commit("HEAD")
        if head is None:
            raise UsageError("the repository has no commit yet; commit the taxonomy before releasing it")
        tagged = repo.resolve_commit(f"refs/tags/{version}")
        if tagged is not None and tagged != head:
            raise UsageError(
                f"tag {version} points at {tagged[:12]}, not at HEAD ({head[:12]}); check out the tag to release it"
            )
        earlier_tags = previous_release_tags(repo, version)
        if options.dry_run:
            return head, earlier_tags
        if tagged is None:
            raise UsageError(
                f"tag {version} does not exist; tag the commit to release (git tag {version}) or use --dry-run"
            )
        if repo.has_changes(config.taxonomy_root):
            raise UsageError("the taxonomy has uncommitted changes; a release describes a commit: commit or stash them")
    if not options.hub_repo:
        raise UsageError("no Hub repository: pass --repo owner/name (or set LABTAX_HUB_REPO), or use --dry-run")
    from huggingface_hub.constants import is_offline_mode

    from labtax.release.hub import hub_token

    hub_token()
    if is_offline_mode():
        raise UsageError("HF_HUB_OFFLINE is set, so nothing can be pushed; unset it, or use --dry-run")
    return head, earlier_tags


def run_release(
    config: Config, options: ReleaseOptions, on_training_plan: Callable[[TrainingPlan], None] | None = None
) -> ReleaseResult:
    """The release, top to bottom (module docstring). `on_training_plan` is shown the training plan (steps,
    warm-up and peak learning rate of each phase) before the first step, as `labtax train` prints it."""
    from labtax.release import stages

    version = options.version
    options = replace(options, source_url=redact_credentials(options.source_url) if options.source_url else None)
    head, earlier_tags = check_preconditions(config, options)
    stage_settings = stages.check_settings(config, options)  # bad configuration stops here, before any work

    skipped_leaves: list[str] = []
    leaves = stages.load_release_leaves(config, skipped_leaves)
    leaf_hashes = {leaf.path: leaf.leaf_hash for leaf in leaves}
    previous = find_previous_manifest(options, earlier_tags)
    inputs = release_inputs(options, leaf_hashes, stages.generation_keys(leaves, options), stage_settings)
    changes = compare_leaves(previous.leaf_hashes if previous else {}, leaf_hashes)
    status = "dry-run" if options.dry_run else "released"
    result = ReleaseResult(version, previous.version if previous else None, status, options.output, changes=changes)
    result.messages.extend(skipped_leaves)
    options.output.mkdir(parents=True, exist_ok=True)
    (options.output / SKIPPED_MARKER).unlink(missing_ok=True)

    if previous is not None and previous.inputs_fingerprint == inputs and not options.force:
        result.status = "unchanged"
        result.messages.append(
            f"nothing changed since {previous.version}: the same {len(leaf_hashes)} leaf hashes, teacher, data "
            "settings, base model and hyper-parameters; no generation, no training, nothing pushed "
            "(--force rebuilds anyway)"
        )
        write_text_atomic(options.output / "notes.md", f"Nothing changed since {previous.version}.\n")
        write_text_atomic(options.output / SKIPPED_MARKER, f"{previous.version}\n")
        return result
    if previous is None and earlier_tags:
        result.messages.append(f"no release.json found for {', '.join(earlier_tags)}: every leaf counts as new")

    clock = time.monotonic()
    report = review_report(
        config,
        previous.version if previous else None,
        options.source_url,
        result.messages,
        stages.generation_params(options),
    )
    generation = stages.generate(config, options, leaves, options.output / "generation", previous)
    result.teacher_requests = generation.teacher_requests
    result.seconds["generate"], clock = time.monotonic() - clock, time.monotonic()
    if generation.short:
        result.messages.append(
            f"{len(generation.short)} leaves are short of their target (their request budget ran out; a re-run "
            f"would end the same): {', '.join(generation.short[:10])}; their samples are used"
        )
    if generation.discarded:
        result.messages.append(
            f"{len(generation.discarded)} cached generation results no release vouched for were regenerated"
        )
    data = stages.curate(config, options, leaves, options.output / "generation", options.output / "data")
    summary = stages.data_summary(options.output / "generation", leaves, options, previous, data)
    result.seconds["curate"], clock = time.monotonic() - clock, time.monotonic()
    training = stages.train(
        options, options.output / "data", options.output / "train" / inputs[:16], on_plan=on_training_plan
    )
    result.trained = training.trained
    result.seconds["train"], clock = time.monotonic() - clock, time.monotonic()
    previous_eval = options.output / "history" / previous.version / "eval.json" if previous else None
    evaluation = stages.evaluate(
        config,
        options,
        leaves,
        training.model_dir,
        options.output,
        previous_eval if previous_eval and previous_eval.is_file() else None,
    )
    result.seconds["evaluate"] = time.monotonic() - clock

    manifest = ReleaseManifest(
        version=version,
        previous_version=previous.version if previous else None,
        taxonomy_commit=head,
        leaves=[
            LeafRecord(leaf.path, leaf.leaf_hash, leaf.branch, str(leaf.kind), attribution_record(leaf.attribution))
            for leaf in leaves
        ],
        data_files=data.files,
        teacher=generation.teacher,
        base_model=options.base_model,
        hyperparameters=training.hyperparameters,
        evaluation=evaluation.summary,
        hub=HubTarget(options.hub_repo, version, dataset_repo_id=options.dataset_repo) if options.hub_repo else None,
        inputs_fingerprint=inputs,
        # The released commit's date, not the clock: a re-run of the same release writes the same bytes.
        created_at=commit_date(config, head),
        changes=changes.as_json(),
        generation=generation.entries,
        data_summary=summary,
    )
    result.manifest = manifest
    write_manifest(options.output / MANIFEST_FILE, manifest)
    card_options = card_options_for(config, options)
    write_text_atomic(options.output / "notes.md", release_notes(manifest, changes, card_options, report))
    if report:
        write_text_atomic(options.output / "report.md", report)
    if not evaluation.passed:
        raise GateFailed(
            f"the evaluation gate failed: {evaluation.reason}. Nothing was pushed; the results are in "
            f"{options.output / 'eval.json'} and {options.output / 'eval.md'}"
        )

    model_folder, data_folder = stage_hub_folders(
        options, card_options, manifest, changes, training.model_dir, data.files_dir
    )
    result.push_plans = plan_pushes(options, model_folder, data_folder)
    if options.dry_run:
        result.messages.append("dry run: nothing was pushed")
        remember(options.output, manifest)
        return result
    result.pushed = push(result.push_plans)
    model_push = next(p for p in result.pushed if p.repo_type == "model")
    data_push = next((p for p in result.pushed if p.repo_type == "dataset"), None)
    assert manifest.hub is not None
    manifest.hub = replace(
        manifest.hub,
        revision=model_push.commit,
        url=model_push.url,
        dataset_revision=data_push.commit if data_push else None,
    )
    write_manifest(options.output / MANIFEST_FILE, manifest)
    remember(options.output, manifest)
    return result


def remember(output: Path, manifest: ReleaseManifest) -> None:
    """Keep this release's manifest and eval.json for the next release to compare with."""
    history = output / "history" / manifest.version
    write_manifest(history / MANIFEST_FILE, manifest)
    shutil.copy2(output / "eval.json", history / "eval.json")


def review_report(
    config: Config, previous_version: str | None, source_url: str | None, messages: list[str], params: Any = None
) -> str | None:
    """The reviewer report (`labtax report`) of every leaf changed since the previous release's tag, its
    request counts planned with the release's generation parameters (the planner the run uses)."""
    from labtax.gitdiff import EMPTY_BASE
    from labtax.report import reviewer_report

    try:
        return reviewer_report(config, previous_version or EMPTY_BASE, repository_url=source_url, params=params)
    except LabtaxError as exc:
        messages.append(f"no review report in the release notes: {exc}")
        return None


# GitHub refuses a release body over 125,000 characters; the notes stay below it, whatever the taxonomy.
NOTES_LIMIT = 120_000


def release_notes(
    manifest: ReleaseManifest, changes: LeafChanges, options: CardOptions, report: str | None = None
) -> str:
    """The GitHub release body: what happened, changed leaves and evaluation as in the model card, credits by
    licence, then the review report (cut to fit GitHub's limit; report.md beside the notes holds all of it)."""
    from labtax.release.card import changes_section, evaluation_section

    head = [f"# {manifest.version}", ""]
    if manifest.hub:
        head += [f"Model: https://huggingface.co/{manifest.hub.repo_id}/tree/{manifest.version}", ""]
    head += what_happened(manifest)
    tail = evaluation_section(manifest) + credits_summary(manifest, options)
    tail += [
        f"Teacher `{manifest.teacher}`, base model `{manifest.base_model}`, "
        f"taxonomy commit `{manifest.taxonomy_commit}`.",
        "",
    ]
    changed = changes_section(manifest, changes, options)
    if sum(len(line) + 1 for line in head + changed + tail) > NOTES_LIMIT // 2:
        changed = changes_section(manifest, changes, options, limit=100)
    notes = "\n".join(head + changed + tail)
    if report:
        room = NOTES_LIMIT - len(notes) - 200
        if len(report) > room:
            cut = report[: max(room, 0)].rsplit("\n", 1)[0]
            report = f"{cut}\n\n... (cut to fit a GitHub release: report.md in the release artifacts holds all of it)"
        notes += "\n" + "\n".join(["## Review report", "", report])
    return notes


def what_happened(manifest: ReleaseManifest) -> list[str]:
    """What generation and curation actually did for this release, beside what was planned (the review
    report's figures are the planner's estimate, made before any request was sent)."""
    summary = manifest.data_summary
    if summary is None:
        return []
    reused = f"{summary.leaves_reused:,} leaves reused" if summary.leaves_reused else "no leaf reused"
    since = f" from {manifest.previous_version}" if manifest.previous_version and summary.leaves_reused else ""
    failed = f", {summary.requests_failed:,} of them failed" if summary.requests_failed else ""
    return [
        "## What happened",
        "",
        f"- **Generation**: {summary.requests_sent:,} teacher requests sent{failed} for {summary.leaves_generated:,} "
        f"new or changed leaves (the planner estimated {summary.planned_requests:,}); {reused}{since}, "
        "with no request.",
        f"- **Samples**: generation kept {summary.samples_generated:,} (aiming for {summary.samples_target:,}); "
        f"curation kept {summary.samples_trained:,} for training: {summary.phase1_rows:,} rows in phase 1 "
        f"(knowledge), {summary.phase2_rows:,} in phase 2 (skills and replay).",
        "",
    ]


def credits_summary(manifest: ReleaseManifest, options: CardOptions) -> list[str]:
    """The sources by licence, pointing at the model repository's attribution file for every leaf."""
    from labtax.release.credits import ATTRIBUTION_CSV, credits, leaves, license_counts, license_label

    counts = license_counts(credits(manifest, None))
    where = (
        f"[`{ATTRIBUTION_CSV}`](https://huggingface.co/{manifest.hub.repo_id}/blob/{manifest.version}/{ATTRIBUTION_CSV})"
        if manifest.hub
        else f"`{ATTRIBUTION_CSV}`"
    )
    listed = ", ".join(f"{license_label(name)} ({leaves(count)})" for name, count in counts)
    return ["## Credits", "", f"Sources by licence: {listed}. Every leaf's source and licence: {where}.", ""]


def commit_date(config: Config, commit: str) -> str:
    with open_git(config) as repo:
        return repo.commit_info(commit).date.astimezone(UTC).isoformat()


def card_options_for(config: Config, options: ReleaseOptions) -> CardOptions:
    from labtax.release.card import CardOptions

    try:
        taxonomy_dir = config.taxonomy_root.resolve().relative_to(config.project_root.resolve()).as_posix()
    except ValueError:
        taxonomy_dir = "taxonomy"
    return CardOptions(
        license=options.license,
        source_url=options.source_url,
        taxonomy_dir=taxonomy_dir,
        dataset_repo_id=options.dataset_repo,
    )


def stage_hub_folders(
    options: ReleaseOptions,
    card_options: CardOptions,
    manifest: ReleaseManifest,
    changes: LeafChanges,
    model_dir: Path,
    data_dir: Path,
) -> tuple[Path, Path | None]:
    """Lay out exactly what each Hub repository will hold (rebuilt from scratch every run)."""
    from labtax.release.card import DataFileRows, build_dataset_card, build_model_card
    from labtax.release.credits import ATTRIBUTION_CSV, ATTRIBUTION_JSON, attribution_csv, attribution_json, credits
    from labtax.train.recipe import check_trained_model

    check_trained_model(model_dir)  # what is pushed is what training recorded
    rows = credits(manifest, card_options.source_url, card_options.taxonomy_dir)
    model_folder = options.output / "hub" / "model"
    _replace_tree(model_dir, model_folder)
    write_text_atomic(model_folder / "README.md", str(build_model_card(manifest, changes, card_options)))
    write_manifest(model_folder / MANIFEST_FILE, manifest)
    shutil.copy2(options.output / "eval.json", model_folder / "eval.json")
    write_bytes_atomic(model_folder / ATTRIBUTION_CSV, attribution_csv(rows))
    write_bytes_atomic(model_folder / ATTRIBUTION_JSON, attribution_json(rows))
    if not options.dataset_repo:
        return model_folder, None
    data_folder = options.output / "hub" / "data"
    _replace_tree(data_dir, data_folder)
    from labtax.records.curation import read_curation_report

    outputs = read_curation_report(data_dir).outputs
    files = [
        DataFileRows(name, output.rows, output.sha256)
        for name, output in sorted(outputs.items())
        if output.sha256 is not None and (data_folder / name).is_file()
    ]
    card = build_dataset_card(manifest, files, data_folder, card_options, options.hub_repo)
    write_text_atomic(data_folder / "README.md", str(card))
    write_bytes_atomic(data_folder / ATTRIBUTION_CSV, attribution_csv(rows))
    write_bytes_atomic(data_folder / ATTRIBUTION_JSON, attribution_json(rows))
    return model_folder, data_folder


def _replace_tree(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:  # hard links: a multi-gigabyte model is not copied just to be uploaded
        shutil.copytree(source, target, copy_function=os.link)
    except OSError:
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target)


def plan_pushes(options: ReleaseOptions, model_folder: Path, data_folder: Path | None) -> list[PushPlan]:
    from labtax.release.hub import plan_push

    repo = options.hub_repo or "OWNER/NAME"
    plans = []
    if data_folder is not None and options.dataset_repo:
        plans.append(
            plan_push(data_folder, options.dataset_repo, options.version, repo_type="dataset", private=options.private)
        )
    plans.append(plan_push(model_folder, repo, options.version, private=options.private))
    return plans


def push(plans: list[PushPlan]) -> list[PushResult]:
    """Datasets first, so the model card's dataset link works the moment the model appears."""
    from labtax.release.hub import hub_token, push_release

    token = hub_token()
    return [push_release(plan, token=token) for plan in plans]


def cache_key(config: Config) -> str:
    """The generation-cache key of the workflow: a hash over every leaf's path and hash."""
    from labtax.release.stages import load_release_leaves

    return leaves_fingerprint({leaf.path: leaf.leaf_hash for leaf in load_release_leaves(config)})
