"""The model card (the Hub repository's README.md), built with huggingface_hub's `ModelCard`.

The metadata block (`ModelCardData`) carries the base model, licence, tags and a `model-index` with
the evaluation results, so the Hub shows them; the body says what the model is for, which leaves
were added or changed since the previous release (linked to the taxonomy at the release commit),
where the training data came from, and credits every leaf's source (labtax.release.credits). The
dataset card (`build_dataset_card`, huggingface_hub's `DatasetCard`) describes the curated phases as a
`datasets` configuration and carries the sources' licences in its metadata. Everything in both comes
from `release.json`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labtax.markdown import code, safe_url
from labtax.records.release import ReleaseManifest
from labtax.release.credits import (
    ATTRIBUTION_CSV,
    ATTRIBUTION_JSON,
    credits,
    credits_markdown,
    hub_license,
    license_counts,
    license_label,
)
from labtax.release.manifest import LeafChanges

LEAF_TABLE_ROWS = 200  # per-leaf rows in the card and the notes; every regression is shown whatever the count

if TYPE_CHECKING:
    from huggingface_hub import DatasetCard, ModelCard

    from labtax.records.evaluation import LeafComparison

DEFAULT_INTENDED_USE = (
    "A student model aligned with the LAB method on this taxonomy: it is meant for research on, and "
    "evaluation of, taxonomy-driven alignment. It has not been evaluated for safety-critical use; do not "
    "rely on it for medical, legal or financial advice."
)
EVAL_TASK = "text-generation"
EVAL_DATASET_TYPE = "labtax-heldout"


@dataclass(frozen=True)
class CardOptions:
    """What the manifest does not know: licence, links and words for people."""

    license: str = "apache-2.0"
    source_url: str | None = None  # e.g. https://github.com/org/taxonomy (links to leaves at the commit)
    taxonomy_dir: str = "taxonomy"  # the taxonomy root relative to the repository top
    intended_use: str = DEFAULT_INTENDED_USE
    dataset_repo_id: str | None = None
    language: str = "en"


def leaf_link(path: str, manifest: ReleaseManifest, options: CardOptions) -> str:
    """Markdown for a leaf: a link to its qna.yaml at the release's taxonomy commit when we know where."""
    relative = f"{options.taxonomy_dir.strip('/')}/{path}" if options.taxonomy_dir.strip("/. ") else path
    url = f"{options.source_url.rstrip('/')}/blob/{manifest.taxonomy_commit}/{relative}" if options.source_url else ""
    target = safe_url(url) if url else None
    return f"[{code(path)}]({target})" if target else code(path)


def build_card_data(manifest: ReleaseManifest, options: CardOptions) -> Any:
    from huggingface_hub import EvalResult, ModelCardData

    model_name = manifest.hub.repo_id.split("/")[-1] if manifest.hub else "labtax"
    eval_results = [
        EvalResult(
            task_type=EVAL_TASK,
            dataset_type=EVAL_DATASET_TYPE,
            dataset_name="labtax held-out seed examples",
            dataset_revision=manifest.taxonomy_commit,
            metric_type=name,
            metric_name=name,
            metric_value=value,
        )
        for name, value in sorted(manifest.evaluation.overall.items())
    ]
    return ModelCardData(
        base_model=manifest.base_model if is_hub_id(manifest.base_model) else None,
        license=options.license,
        language=options.language,
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=["labtax", "lab", "instructlab", "synthetic-data"],
        datasets=[options.dataset_repo_id] if options.dataset_repo_id else None,
        model_name=model_name,
        eval_results=eval_results or None,
    )


def changes_section(
    manifest: ReleaseManifest, changes: LeafChanges, options: CardOptions, limit: int | None = None
) -> list[str]:
    """The leaves added, changed, renamed and deleted, each linked; `limit` lists at most that many per kind."""
    since = f"since {manifest.previous_version}" if manifest.previous_version else "(first release: every leaf is new)"
    lines = [f"## Leaves added and changed {since}", ""]
    if not changes.changed:
        return [*lines, "No leaf changed.", ""]

    def listed(items: list[str]) -> list[str]:
        if limit is None or len(items) <= limit:
            return items
        return [*items[:limit], f"... and {len(items) - limit:,} more (release.json lists them all)"]

    for title, paths in (("Added", changes.added), ("Changed", changes.modified), ("Deleted", changes.deleted)):
        if paths:
            lines.append(f"**{title}** ({len(paths):,}):")
            shown = [leaf_link(path, manifest, options) if title != "Deleted" else code(path) for path in paths]
            lines.extend(f"- {item}" for item in listed(shown))
            lines.append("")
    if changes.renamed:
        lines.append(f"**Renamed** ({len(changes.renamed):,}, same content, no new data):")
        renamed = [f"{code(old)} → {leaf_link(new, manifest, options)}" for old, new in changes.renamed]
        lines.extend(f"- {item}" for item in listed(renamed))
        lines.append("")
    return lines


def evaluation_section(manifest: ReleaseManifest) -> list[str]:
    metrics, baseline = manifest.evaluation.overall, manifest.evaluation.baseline
    lines = ["## Evaluation", ""]
    if not metrics:
        return [*lines, "No evaluation results were recorded.", ""]
    lines += ["On the held-out seed examples of every leaf (never shown to the teacher nor trained on):", ""]
    lines += [f"| metric | this model | base model `{manifest.base_model}` |", "|---|---|---|"]
    for name, value in sorted(metrics.items()):
        before = f"{baseline[name]:.4g}" if name in baseline else ""
        lines.append(f"| {name} | {value:.4g} | {before} |")
    gate = manifest.evaluation.gate
    if gate is not None:
        verdict = {"pass": "passed", "fail": "failed"}.get(gate.status, gate.status)
        reason = f" ({gate.reason})" if gate.reason and gate.reason != gate.status else ""
        versus = "the base model"
        if gate.previous:
            versus += f" and the previous release ({manifest.previous_version or gate.previous})"
        lines += ["", f"Release gate against {versus}: {verdict}{reason}"]
    if manifest.evaluation.leaves:
        lines += ["", "### Per leaf", "", *leaf_table(manifest.evaluation.leaves)]
    return [*lines, ""]


def leaf_table(rows: tuple[LeafComparison, ...], limit: int = LEAF_TABLE_ROWS) -> list[str]:
    """The per-leaf comparison, regressions first; past `limit` rows, every regression and the rest counted."""
    from labtax.train.eval_compare import comparison_markdown

    room = max(0, limit - sum(row.regressed for row in rows))
    kept = {i for i, row in enumerate(rows) if row.regressed}
    kept |= set([i for i, row in enumerate(rows) if not row.regressed][:room])
    shown = [row for i, row in enumerate(rows) if i in kept]  # in the table's order: regressions first
    lines = comparison_markdown(shown).rstrip("\n").split("\n")
    if len(shown) < len(rows):
        regressed = sum(row.regressed for row in rows)
        lines[-1] = (
            f"{regressed} of {len(rows)} leaves regressed (all shown); {len(rows) - len(shown)} more that did not"
            " are in eval.json. Positive changes are improvements."
        )
    return lines


def is_hub_id(name: str) -> bool:
    """`owner/name` as the Hub spells repositories, and not a local path that happens to have a slash."""
    return re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None and not Path(name).exists()


def _provenance_section(manifest: ReleaseManifest, options: CardOptions) -> list[str]:
    branches: dict[str, int] = {}
    for leaf in manifest.leaves:
        branches[leaf.branch or "(none)"] = branches.get(leaf.branch or "(none)", 0) + 1
    per_branch = ", ".join(f"{count} {branch}" for branch, count in sorted(branches.items()))
    source = (
        f"[{options.source_url}]({options.source_url}/tree/{manifest.taxonomy_commit})"
        if options.source_url
        else "the taxonomy"
    )
    lines = [
        "## Training data provenance",
        "",
        f"- Taxonomy: {source} at commit `{manifest.taxonomy_commit}`, {len(manifest.leaves)} leaves ({per_branch}).",
        f"- Synthetic data generated by the teacher `{manifest.teacher}` from each leaf's training seeds, "
        "curated (filters, deduplication, decontamination against held-out seeds) and mixed into a knowledge "
        "phase and a skills phase.",
    ]
    if options.dataset_repo_id:
        lines.append(
            f"- The curated data is published as [{options.dataset_repo_id}](https://huggingface.co/datasets/{options.dataset_repo_id})."
        )
    if manifest.data_files:
        lines += ["- Data files (SHA-256):", ""]
        lines += [f"  - `{item.path}`: `{item.sha256}` ({item.bytes:,} bytes)" for item in manifest.data_files]
    lines += [
        "",
        "`release.json` in this repository records every leaf hash, data file hash, hyper-parameter and result.",
        "",
    ]
    return lines


def _training_section(manifest: ReleaseManifest) -> list[str]:
    lines = ["## Training", "", f"Base model: `{manifest.base_model}`.", ""]
    if manifest.hyperparameters:
        lines += ["| hyper-parameter | value |", "|---|---|"]
        lines += [f"| {name} | `{value}` |" for name, value in sorted(manifest.hyperparameters.items())]
        lines.append("")
    return lines


def credits_section(manifest: ReleaseManifest, options: CardOptions, *, data: str = "the model") -> list[str]:
    """Every leaf's source, grouped by licence and branch, with the full list in the attribution files."""
    rows = credits(manifest, options.source_url, options.taxonomy_dir)
    note = (
        f"Every leaf is listed below with the work its seed examples and documents come from; the same list is in "
        f"[`{ATTRIBUTION_CSV}`]({ATTRIBUTION_CSV}) and [`{ATTRIBUTION_JSON}`]({ATTRIBUTION_JSON}) beside this card. "
        f"Each licence applies to the source material of its leaves and to what {data} derives from them."
    )
    return ["## Credits", "", *credits_markdown(rows, files_note=note)]


def build_model_card(manifest: ReleaseManifest, changes: LeafChanges, options: CardOptions | None = None) -> ModelCard:
    """The README.md of the model repository for this release."""
    from huggingface_hub import ModelCard

    options = options or CardOptions()
    card_data = build_card_data(manifest, options)
    sources = ", ".join(f"{license_label(name)} ({count:,})" for name, count in license_counts(credits(manifest, None)))
    body = [
        f"# {card_data.model_name} {manifest.version}",
        "",
        f"A language model fine-tuned from `{manifest.base_model}` with the LAB method (arXiv 2403.01081) "
        "on a git-native taxonomy of knowledge and skills, released by labtax.",
        "",
        "## Intended use",
        "",
        options.intended_use,
        "",
        *changes_section(manifest, changes, options),
        *evaluation_section(manifest),
        *_provenance_section(manifest, options),
        *_training_section(manifest),
        "## Licence",
        "",
        f"The model weights are released under `{options.license}`. The training data derives from sources under "
        f"these licences (leaves): {sources}; see Credits.",
        "",
        *credits_section(manifest, options),
    ]
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(body))


@dataclass(frozen=True)
class DataFileRows:
    """A curated data file as the dataset card describes it."""

    name: str  # file name in the dataset repository
    rows: int
    sha256: str


def build_dataset_card(
    manifest: ReleaseManifest,
    files: list[DataFileRows],
    data_dir: Path,
    options: CardOptions,
    model_repo_id: str | None,
) -> DatasetCard:
    """The README.md of the dataset repository: the curated phases as one `datasets` configuration (a split
    per phase, so `load_dataset(repo)` finds both), the licences of the sources, and every leaf's credit."""
    from huggingface_hub import DatasetCard, DatasetCardData

    from labtax.release.features import union_features

    rows = credits(manifest, options.source_url, options.taxonomy_dir)
    phases = [item for item in files if item.name.endswith(".jsonl") and item.name.startswith("phase")]
    total = sum(item.rows for item in phases)
    # One configuration, a split per phase, read against the union of both files' fields (a field one
    # phase lacks reads as null); rows that cannot share a schema get a configuration per phase instead.
    features = union_features(data_dir / item.name for item in phases)
    splits = [{"split": item.name.removesuffix(".jsonl"), "path": item.name} for item in phases]
    extra: dict[str, Any] = hub_license(rows)
    if features is not None:
        configs = [{"config_name": "default", "data_files": splits}]
        extra["dataset_info"] = {"features": features}
        usage = f'data = load_dataset("{options.dataset_repo_id or "OWNER/NAME"}")  # both phases, one split each'
    else:
        configs = [{"config_name": split["split"], "data_files": split["path"]} for split in splits]
        usage = f'data = load_dataset("{options.dataset_repo_id or "OWNER/NAME"}", "{splits[-1]["split"]}")'
    card_data = DatasetCardData(
        language=[options.language],
        pretty_name=f"labtax curated data {manifest.version}",
        tags=["labtax", "lab", "instructlab", "synthetic-data"],
        task_categories=["text-generation"],
        size_categories=[_size_category(total)],
        configs=configs,
        **extra,
    )
    model = f"[{model_repo_id}](https://huggingface.co/{model_repo_id})" if model_repo_id else "the model"
    body = [
        f"# Curated training data of {model} {manifest.version}",
        "",
        f"Synthetic data generated by the teacher `{manifest.teacher}` from the seed examples and documents of a "
        f"git-native taxonomy at commit `{manifest.taxonomy_commit}`, curated by labtax (filters, deduplication, "
        "decontamination against held-out seeds) into the two phases of LAB training.",
        "",
        "| split | file | rows | SHA-256 |",
        "|---|---|--:|---|",
        *(
            f"| {item.name.removesuffix('.jsonl')} | `{item.name}` | {item.rows:,} | `{item.sha256}` |"
            for item in phases
        ),
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        usage,
        "```",
        "",
        "`curation.json` records what curation read, dropped and kept; `release.json` of the model repository every "
        "leaf hash and data file hash.",
        "",
        "## Licence",
        "",
        "The data derives from sources under these licences (leaves): "
        + ", ".join(f"{license_label(name)} ({count:,})" for name, count in license_counts(rows))
        + ". Each source's licence applies to the samples generated from it: the `metadata.leaf` of every row "
        f"names its leaf, and [`{ATTRIBUTION_CSV}`]({ATTRIBUTION_CSV}) the leaf's source and licence.",
        "",
        *credits_section(manifest, options, data="this data set"),
    ]
    return DatasetCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(body))


def _size_category(rows: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < limit:
            return label
    return "1M<n<10M"
