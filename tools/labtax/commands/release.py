"""`labtax release vX.Y.Z`: diff, generate, curate, train, evaluate, then push the model to the Hub."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from labtax.cli_utils import RootOption, echo, entry
from labtax.extras import needs_extra


@entry
@needs_extra("release")
def command(
    version: Annotated[
        str, typer.Argument(help="The version to release: a tag like v1.2.0 on the checked-out commit.")
    ],
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Do everything locally (generate, train, evaluate, card), print what would be pushed, push nothing.",
        ),
    ] = False,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Release directory (generation cache, data, model, release.json).")
    ] = Path(".labtax-cache/release"),
    repo: Annotated[
        str | None,
        typer.Option("--repo", envvar="LABTAX_HUB_REPO", help="Hub model repository, owner/name.", show_default=False),
    ] = None,
    dataset_repo: Annotated[
        str | None,
        typer.Option(
            "--dataset-repo",
            envvar="LABTAX_HUB_DATASET_REPO",
            help="Also push the curated data to this Hub dataset repository.",
            show_default=False,
        ),
    ] = None,
    base_model: Annotated[
        str | None,
        typer.Option(
            "--base-model",
            envvar="LABTAX_BASE_MODEL",
            help="The student's base model: a local directory or a Hub id.",
            show_default=False,
        ),
    ] = None,
    teacher_url: Annotated[
        list[str] | None,
        typer.Option(
            "--teacher-url",
            envvar="LABTAX_TEACHER_URL",
            help="OpenAI-compatible API root of the teacher (key: $LABTAX_TEACHER_API_KEY). Repeat it for replicas "
            "of the same model (in $LABTAX_TEACHER_URL: separated by spaces).",
            show_default=False,
        ),
    ] = None,
    teacher_model: Annotated[
        str | None,
        typer.Option("--teacher-model", envvar="LABTAX_TEACHER_MODEL", help="Teacher model name.", show_default=False),
    ] = None,
    generation_target: Annotated[
        int | None,
        typer.Option(
            "--target",
            help="Samples to generate per leaf (default: the generation stage's per-kind targets).",
            show_default=False,
        ),
    ] = None,
    curate_config: Annotated[
        Path | None,
        typer.Option(
            "--curate-config", help="Curation settings file (TOML), as for labtax curate.", show_default=False
        ),
    ] = None,
    eval_max_new_tokens: Annotated[
        int | None,
        typer.Option(
            "--eval-max-new-tokens",
            help="The longest answer the evaluation generates, in tokens (knowledge, skills, general set).",
            show_default=False,
            min=1,
        ),
    ] = None,
    eval_teacher: Annotated[
        bool,
        typer.Option(
            "--eval-teacher/--no-eval-teacher",
            help="The teacher writes multiple-choice questions from the documents and judges skill answers "
            "(labtax evaluate --teacher-model); off: held-out loss and token F1 only.",
        ),
    ] = True,
    general_set: Annotated[
        Path | None,
        typer.Option(
            "--general",
            help="The general set (JSONL, as for labtax evaluate --general): the gate fails when the model forgets it.",
            show_default=False,
        ),
    ] = None,
    train_config: Annotated[
        Path | None,
        typer.Option(
            "--train-config", help="Training hyper-parameters file (TOML), as for labtax train.", show_default=False
        ),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override one training hyper-parameter: key=value (repeatable).", show_default=False
        ),
    ] = None,
    previous_manifest: Annotated[
        Path | None,
        typer.Option(
            "--previous-manifest",
            help="release.json of the previous release (default: the release history, else the Hub).",
            show_default=False,
        ),
    ] = None,
    vet_cache: Annotated[
        bool,
        typer.Option(
            "--vet-cache",
            help="Trust restored generation results only when the previous release.json vouches for their SHA-256 "
            "(for caches other workflows can write, as in CI).",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild even when nothing changed since the previous release.")
    ] = False,
    private: Annotated[bool, typer.Option("--private", help="Create the Hub repositories as private.")] = False,
    license_id: Annotated[
        str, typer.Option("--license", help="Licence of the released model (a Hub licence id).")
    ] = "apache-2.0",
    source_url: Annotated[
        str | None,
        typer.Option(
            "--source-url",
            help="Web URL of this repository, for links to leaves (default: from GITHUB_REPOSITORY or origin).",
            show_default=False,
        ),
    ] = None,
    cache_key: Annotated[
        bool,
        typer.Option(
            "--cache-key", help="Print key=<hash of every leaf hash> (the workflow's generation-cache key) and exit."
        ),
    ] = False,
    root: RootOption = None,
) -> int:
    """Release a model: generate data for new or changed leaves, curate, train, evaluate, push to the Hub.

    Exit code 0 when released (or nothing changed), 1 when the evaluation gate fails, 2 for usage errors.
    """
    from labtax.config import load_config
    from labtax.errors import UsageError
    from labtax.release.release import ReleaseOptions, run_release
    from labtax.release.release import cache_key as leaves_cache_key

    config = load_config(taxonomy=root)
    if cache_key:
        echo(f"key={leaves_cache_key(config)}")
        return 0
    if not base_model:
        raise UsageError(
            "no base model: pass --base-model (a local model directory or a Hub id) or set LABTAX_BASE_MODEL"
        )
    options = ReleaseOptions(
        version=version,
        output=output.resolve(),
        base_model=base_model,
        dry_run=dry_run,
        hub_repo=repo,
        dataset_repo=dataset_repo,
        private=private,
        teacher_url=tuple(teacher_url) if teacher_url else None,
        teacher_model=teacher_model,
        generation_target=generation_target,
        curate_config=curate_config,
        eval_max_new_tokens=eval_max_new_tokens,
        eval_teacher=eval_teacher,
        general_set=general_set.resolve() if general_set else None,
        train_config=train_config,
        train_overrides=_parse_overrides(overrides or []),
        previous_manifest=previous_manifest,
        force=force,
        vet_cache=vet_cache,
        source_url=source_url or _default_source_url(config.project_root),
        license=license_id,
    )
    from labtax.commands.train import show_plan

    # Before the first training step: each phase's steps, warm-up and peak learning rate, and any warning.
    result = run_release(config, options, on_training_plan=lambda plan: show_plan(plan, quiet=False))
    for message in result.messages:
        echo(message, err=True)
    if result.status == "unchanged":
        return 0
    if result.changes is not None:
        added, changed = len(result.changes.added), len(result.changes.modified)
        echo(f"{added} leaves added, {changed} changed since {result.previous_version or 'the start'}", err=True)
    timings = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in result.seconds.items())
    echo(f"{result.teacher_requests} teacher requests; {timings}; manifest: {result.output / 'release.json'}", err=True)
    if dry_run:
        echo("would push:")
        for plan in result.push_plans:
            for line in plan.describe():
                echo(f"  {line}")
        return 0
    for pushed in result.pushed:
        notes = "".join(f"; {note}" for note in pushed.notes)
        echo(f"pushed {pushed.repo_id} @ {pushed.tag} ({pushed.commit[:12]}){notes}")
    return 0


def _parse_overrides(items: list[str]) -> dict[str, object]:
    from labtax.train.config import parse_override

    return dict(parse_override(item) for item in items)


def _default_source_url(project_root: Path) -> str | None:
    import os

    server, repository = os.environ.get("GITHUB_SERVER_URL"), os.environ.get("GITHUB_REPOSITORY")
    if server and repository:
        return f"{server.rstrip('/')}/{repository}"
    from urllib.parse import urlsplit, urlunsplit

    from labtax.git import open_repository

    opened = open_repository(project_root) if project_root.is_dir() else None
    if opened is None:
        return None
    with opened as repo:
        remote = (repo.remote_url("origin") or "").strip()
    if remote.startswith("git@") and ":" in remote:
        host, _, path = remote[4:].partition(":")
        remote = f"https://{host}/{path}"
    if not remote.startswith("https://"):
        return None
    # A remote URL may carry credentials (https://user:token@host/...): they never reach a card.
    parts = urlsplit(remote)
    remote = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return remote.removesuffix(".git")
