"""`labtax curate`: generated samples → filtered, deduplicated, decontaminated phase datasets (docs/curation.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from labtax.cli_utils import QuietOption, RootOption, echo, entry
from labtax.extras import needs_extra


@entry
@needs_extra("curate")
def command(
    samples: Annotated[
        Path,
        typer.Option(
            "--samples", help="Generation output directory (labtax generate --output): generation.json + leaves/."
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", help="Directory to write phase1_knowledge.jsonl, phase2_skills.jsonl and curation.json to."
        ),
    ],
    root: RootOption = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            help="Seed for sampling and shuffling; overrides the --config file's (default 0).",
            show_default=False,
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="TOML file with [filters], [dedup], [select], [mix], [knowledge] and [influence] settings "
            "(see docs/curation.md).",
            show_default=False,
        ),
    ] = None,
    influence: Annotated[
        bool,
        typer.Option(
            "--influence",
            help="Score candidates by their effect on the student's loss on the training seeds; drop unhelpful "
            "ones and write preference_pairs.jsonl where the teacher gave a prompt several answers (needs "
            "--student; see docs/influence.md).",
        ),
    ] = False,
    student: Annotated[
        Path | None,
        typer.Option(
            "--student", help="Local Hugging Face model directory of the student, for --influence.", show_default=False
        ),
    ] = None,
    quiet: QuietOption = False,
) -> int:
    """Curate generated samples into the two training datasets and curation.json.

    Exit code 0 on success, 2 for usage errors (bad settings are refused before any work starts).
    """
    import dataclasses

    from labtax.curate import CurationConfig, InfluenceSettings, load_settings_file, run_curation

    sections = load_settings_file(config_file) if config_file is not None else {}
    if seed is not None:
        sections["seed"] = seed
    if influence or student is not None:
        base = sections.get("influence", InfluenceSettings())
        sections["influence"] = dataclasses.replace(
            base, enabled=influence or base.enabled, student=student.resolve() if student else base.student
        )
    config = CurationConfig(samples_dir=samples, output_dir=output, taxonomy_root=root, **sections)
    result = run_curation(config)
    if not quiet:
        t = result.totals
        echo(
            f"{t.read} samples read: {t.kept} kept ({t.knowledge_kept} knowledge, {t.skills_kept} skills); "
            f"dropped {t.malformed} malformed, {t.dropped_filter} by filters, "
            f"{t.dropped_decontamination} contaminated, {t.dropped_exact_duplicate} exact and "
            f"{t.dropped_near_duplicate} near duplicates, {t.dropped_selection} by diversity selection, "
            f"{t.dropped_influence} by influence"
            + (f"; {t.seeds_added} training seeds added ([mix] seeds)" if t.seeds_added else ""),
            err=True,
        )
        m, k = result.mix, result.knowledge
        forms = (
            f" ({k.grounded_rows} document-grounded, {k.raft_rows} among distractor chunks"
            f" ({k.raft_with_oracle_rows} with the right one), {k.plain_rows} plain)"
            if k is not None
            else ""
        )
        echo(
            f"phase 1: {m.phase1_rows} rows{forms}; phase 2: {m.phase2_rows} rows ({m.phase2_skill_rows} skills, "
            f"{m.phase2_replay_phase1_rows} phase-1 replay ({m.phase2_replay_phase1_repeated_rows} repeated), "
            f"{m.phase2_replay_external_rows} external replay; knowledge share {m.phase2_knowledge_share:.2f})",
            err=True,
        )
        for flag, count in sorted(result.flags.items()):
            echo(f"flagged, kept: {count} samples {flag.replace('-', ' ')} (examples in curation.json flags)", err=True)
        if result.influence_seconds_per_candidate is not None:
            echo(f"influence: {result.influence_seconds_per_candidate:.3f} s per candidate", err=True)
        for note in result.notes:
            echo(f"note: {note}", err=True)
        for name, path in sorted(result.files.items()):
            echo(f"{name}: {path}")
    return 0
