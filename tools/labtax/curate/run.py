"""`run_curation`: generated samples in, the two phase datasets and curation.json out.

Order of the steps, and why:
  read GEN → filters → decontamination → exact dedup → near-dup dedup → diversity selection
  → influence (optional) → mixing → write.
Decontamination comes before dedup so that dedup keeps a clean representative of each cluster;
selection comes after dedup so that a leaf's budget is not spent on copies; influence, the expensive
step, sees only what survived everything else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labtax.curate.dedup import (
    Decontaminator,
    HeldOutQuestion,
    exact_key,
    find_exact_duplicates,
    find_grounded_near_duplicates,
)
from labtax.curate.filters import build_filters, find_pii, first_failure, looks_truncated
from labtax.curate.knowledge import leaf_chunks, render_knowledge
from labtax.curate.mix import ExternalRow, build_phases, phase1_order, phase_row_json, read_replay_file
from labtax.curate.report import Ledger
from labtax.curate.samples import COMPLETE, Candidate, read_candidates
from labtax.curate.seeds import seed_candidates
from labtax.curate.select import select_diverse
from labtax.curate.settings import CurationConfig, check_config
from labtax.errors import UsageError
from labtax.fileio import file_sha256
from labtax.neardup import DuplicateOf, default_workers, find_near_duplicates
from labtax.records.curation import (
    DROPPED_FILE,
    PAIRS_FILE,
    PHASE1_FILE,
    PHASE2_FILE,
    STAGES,
    CurationReport,
    CurationTotals,
    InfluenceSummary,
    KnowledgeMixCounts,
    LeafCuration,
    MixCounts,
    OutputFile,
    PreferencePair,
    drop_decisions_bytes,
    preference_pairs_bytes,
    write_curation_report,
    write_jsonl_bytes,
)
from labtax.records.generation import INDEX_FILE, GenerationIndex, generation_index_sha256, read_generation_index
from labtax.taxonomy.leaf import Leaf, LeafKind, heldout_pairs

JOURNAL_FILE = "influence_journal.jsonl"


@dataclass
class CurationResult:
    output_dir: Path
    files: dict[str, Path]
    totals: CurationTotals
    mix: MixCounts
    notes: list[str] = field(default_factory=list)
    influence_seconds_per_candidate: float | None = None
    knowledge: KnowledgeMixCounts | None = None  # phase 1's knowledge rows by form
    flags: dict[str, int] = field(default_factory=dict)  # kept samples flagged for a look, by flag


def run_curation(config: CurationConfig, leaves: Sequence[Leaf] | None = None) -> CurationResult:
    """Curate `config.samples_dir` into `config.output_dir`. `leaves` are the current taxonomy's leaves
    (loaded from `config.taxonomy_root` when not given): they say which samples are current and which
    questions are held out."""
    check_config(config)
    if leaves is None:
        leaves = _load_taxonomy(config.taxonomy_root)
    index = read_generation_index(config.samples_dir)
    current = {leaf.path: leaf for leaf in leaves}
    _check_fresh(index, current)
    external: list[dict[str, Any]] = []
    external_sha = ""
    if config.mix.replay_file is not None:
        external_sha = file_sha256(Path(config.mix.replay_file))
        external = read_replay_file(Path(config.mix.replay_file), str(config.mix.replay_file_sha256), external_sha)

    ledger = Ledger(config.examples_per_reason)
    notes: list[str] = []
    pool, inputs, targets = _read_pool(config, index, current, ledger, notes)
    read = len(pool) + sum(c.malformed for c in ledger.leaves.values())

    pool = _apply_filters(config, pool, ledger)
    pool = _decontaminate(config, pool, leaves, ledger)
    pool = _deduplicate(config, pool, ledger)
    pool = _select(config, pool, targets, ledger)
    influence_info = InfluenceSummary(enabled=False)
    pairs: list[PreferencePair] = []
    seconds_per_candidate = None
    if config.influence.enabled:
        pool, pairs, influence_info, seconds_per_candidate = _influence(config, pool, leaves, ledger)

    seeds = seed_candidates(leaf for leaf in leaves if leaf.path in targets) if config.mix.seeds else []
    knowledge = [c for c in [*pool, *seeds] if c.kind == LeafKind.KNOWLEDGE]
    skills = [c for c in [*pool, *seeds] if c.kind != LeafKind.KNOWLEDGE]
    chunks, chunk_notes = leaf_chunks(
        [leaf for leaf in leaves if leaf.path in {c.leaf for c in knowledge}], _project_root(config), config.knowledge
    )
    notes.extend(chunk_notes)
    rendered = render_knowledge(phase1_order(knowledge), chunks, config.knowledge, config.seed)
    notes.extend(rendered.notes)
    replay_name = Path(config.mix.replay_file).name if config.mix.replay_file else ""
    mixed = build_phases(rendered.rows, skills, external, config.mix, config.seed, replay_name)
    notes.extend(mixed.notes)

    leaf_of = {candidate.sample_id: candidate.leaf for candidate in [*pool, *seeds]}
    for candidate in pool:
        ledger.leaf(candidate.leaf).kept += 1
    for candidate in seeds:
        ledger.leaf(candidate.leaf).seeds += 1
    _flag(config, pool, ledger)
    for sample in mixed.phase1:
        ledger.leaf(leaf_of[str(sample.metadata.sample_id)]).phase1 += 1
    for row in mixed.phase2:
        if not isinstance(row, ExternalRow):
            ledger.leaf(leaf_of[str(row.metadata.sample_id)]).phase2 += 1

    config.output_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    outputs: dict[str, OutputFile] = {}
    written = [
        ("phase1", PHASE1_FILE, _jsonl(phase_row_json(row) for row in mixed.phase1), len(mixed.phase1)),
        ("phase2", PHASE2_FILE, _jsonl(phase_row_json(row) for row in mixed.phase2), len(mixed.phase2)),
    ]
    if config.influence.enabled:
        written.append(("preference_pairs", PAIRS_FILE, preference_pairs_bytes(pairs), len(pairs)))
    written.append(("dropped", DROPPED_FILE, drop_decisions_bytes(ledger.decisions), len(ledger.decisions)))
    for name, file_name, data, rows in written:
        outputs[file_name] = _write_output(config.output_dir / file_name, data, rows)
        if rows:
            files[name] = config.output_dir / file_name
        elif name == "preference_pairs":
            notes.append(
                f"{file_name} not written: no teacher prompt has two different scored answers (a pair needs "
                "candidates: several answers of the teacher to the same prompt, docs/influence.md)"
            )
        elif name != "dropped":
            notes.append(f"{file_name} not written: it would have no rows (an empty file does not load as a dataset)")

    totals = CurationTotals(
        read=read,
        malformed=sum(c.malformed for c in ledger.leaves.values()),
        **{f"dropped_{stage.replace('-', '_')}": ledger.stage_total(stage) for stage in STAGES},
        kept=len(pool),
        knowledge_kept=sum(c.kind == LeafKind.KNOWLEDGE for c in pool),
        skills_kept=sum(c.kind != LeafKind.KNOWLEDGE for c in pool),
        seeds_added=len(seeds),
    )
    if replay_name:
        inputs[f"replay:{replay_name}"] = external_sha
    report = CurationReport(
        seed=config.seed,
        teacher=index.teacher,
        settings=_settings_json(config),
        inputs=inputs,
        outputs=outputs,
        totals=totals,
        drops=ledger.drops(),
        mix=mixed.counts,
        influence=influence_info,
        leaves={leaf: _leaf_record(ledger, index, leaf, current, targets) for leaf in sorted(ledger.leaves)},
        notes=tuple(notes),
        flags=ledger.flags(),
        knowledge=rendered.counts,
    )
    files["report"] = write_curation_report(config.output_dir, report)
    return CurationResult(
        config.output_dir,
        files,
        totals,
        mixed.counts,
        notes,
        seconds_per_candidate,
        rendered.counts,
        dict(ledger.flag_counts),
    )


def _flag(config: CurationConfig, pool: list[Candidate], ledger: Ledger) -> None:
    """Kept samples worth a look: answers whose text looks cut off though the teacher reported a normal
    stop (`finish_reason` decides truncation; this heuristic only points a reader at them)."""
    domains = config.filters.allowed_email_domains
    for candidate in pool:
        why = looks_truncated(candidate.answer)
        if why is not None:
            clean = find_pii(f"{candidate.question}\n{candidate.answer}", domains) is None
            ledger.flag("looks-truncated", candidate, why if clean else "", show_text=clean)


def _project_root(config: CurationConfig) -> Path:
    """Where the knowledge documents' `repo: documents/...` paths start: the project of the taxonomy."""
    from labtax.config import find_project_root

    if config.project_root is not None:
        return config.project_root
    return find_project_root(config.taxonomy_root if config.taxonomy_root is not None else Path.cwd())


def _load_taxonomy(root: Path | None) -> list[Leaf]:
    from labtax.config import load_config
    from labtax.validate import load_leaves

    config = load_config(taxonomy=root)
    result = load_leaves(config)
    if not result.leaves:
        raise UsageError(
            f"no taxonomy leaves found under {config.taxonomy_root}; curation needs the taxonomy for its held-out "
            "seeds: pass --root"
        )
    return result.leaves


def _check_fresh(index: GenerationIndex, current: dict[str, Leaf]) -> None:
    """Samples generated from an older version of a leaf must not be trained on as if they were current."""
    stale = [
        entry.leaf
        for entry in index.leaves
        if entry.leaf in current and entry.leaf_hash != current[entry.leaf].leaf_hash
    ]
    if stale:
        listed = ", ".join(stale[:3]) + (f" and {len(stale) - 3} more" if len(stale) > 3 else "")
        raise UsageError(
            f"the samples of {len(stale)} leaves were generated from an older version of the leaf ({listed}); "
            "run `labtax generate` for the current taxonomy first"
        )


def _read_pool(
    config: CurationConfig, index: GenerationIndex, current: dict[str, Leaf], ledger: Ledger, notes: list[str]
) -> tuple[list[Candidate], dict[str, str], dict[str, int]]:
    inputs = {INDEX_FILE: generation_index_sha256(config.samples_dir)}
    targets: dict[str, int] = {}
    pool: list[Candidate] = []
    generated = {entry.leaf for entry in index.leaves}
    for entry in index.leaves:
        if entry.leaf not in current:
            notes.append(
                f"{entry.leaf}: not a leaf of the current taxonomy (deleted, or invalid); its samples are skipped"
            )
            continue
        leaf = current[entry.leaf]
        if entry.status != COMPLETE:
            notes.append(f"{entry.leaf}: generation status is {entry.status!r}; using the samples that exist")
        candidates, malformed = read_candidates(config.samples_dir, entry)
        if (config.samples_dir / entry.samples).is_file():
            inputs[entry.samples] = file_sha256(config.samples_dir / entry.samples)
        counts = ledger.leaf(entry.leaf)
        counts.read = len(candidates) + len(malformed)
        counts.malformed = len(malformed)
        for bad in malformed:
            shown = bad.text if find_pii(bad.text, config.filters.allowed_email_domains) is None else ""
            ledger.drop("malformed", "malformed", bad.leaf, bad.line, detail=bad.reason, text=shown)
        for candidate in candidates:
            candidate.kind = str(leaf.kind)
        pool.extend(candidates)
        targets[entry.leaf] = config.select.max_per_leaf or entry.target
    for path in sorted(set(current) - generated):
        notes.append(f"{path}: no generated samples (not in generation.json); run `labtax generate`")
        ledger.leaf(path)
    return pool, inputs, targets


def _apply_filters(config: CurationConfig, pool: list[Candidate], ledger: Ledger) -> list[Candidate]:
    filters = build_filters(config.filters)
    domains = config.filters.allowed_email_domains
    kept = []
    for candidate in pool:
        failure = first_failure(filters, candidate)
        if failure is None:
            kept.append(candidate)
        else:
            name, verdict = failure
            # A sample dropped before or by the PII filter was not cleared of PII: its text (and a
            # detail quoting it) goes into the report, which may be published, only when none is found.
            clean = find_pii(f"{candidate.question}\n{candidate.answer}", domains) is None
            ledger.drop(
                "filter",
                f"{name}:{verdict.reason}",
                candidate.leaf,
                candidate.line,
                candidate=candidate,
                detail=verdict.detail if clean or name == "pii" else "(withheld: the sample contains PII)",
                show_text=clean,
            )
    return kept


def _decontaminate(
    config: CurationConfig, pool: list[Candidate], leaves: Sequence[Leaf], ledger: Ledger
) -> list[Candidate]:
    held_out = [
        HeldOutQuestion(leaf.path, pair.question, context or "" if leaf.kind is LeafKind.GROUNDED_SKILL else "")
        for leaf in sorted(leaves, key=lambda leaf: leaf.path)
        for context, pair in heldout_pairs(leaf)
    ]
    if not held_out or not pool:
        return pool
    d = config.dedup
    checker = Decontaminator(
        held_out,
        ngram=d.decontamination_ngram,
        num_perm=d.num_perm,
        threshold=d.decontamination_threshold,
        min_words=d.decontamination_min_words,
    )
    found = checker.check([c.instruction for c in pool], [c.user_text for c in pool], [c.context for c in pool])
    hits = {hit.index: hit for hit in found}
    kept = []
    for index, candidate in enumerate(pool):
        hit = hits.get(index)
        if hit is None:
            kept.append(candidate)
        else:
            detail = f"{hit.how} ({hit.similarity:.2f}) held-out question of {hit.leaf}: {hit.question}"
            ledger.drop("decontamination", hit.how, candidate.leaf, candidate.line, candidate=candidate, detail=detail)
    return kept


def _deduplicate(config: CurationConfig, pool: list[Candidate], ledger: Ledger) -> list[Candidate]:
    exact = {d.index: d for d in find_exact_duplicates([exact_key(c.question, c.answer) for c in pool])}
    unique = []
    for index, candidate in enumerate(pool):
        if index in exact:
            first = pool[exact[index].kept]
            ledger.drop(
                "exact-duplicate",
                "exact",
                candidate.leaf,
                candidate.line,
                candidate=candidate,
                detail=f"same as {first.leaf}:{first.line}",
            )
        else:
            unique.append(candidate)
    kept = []
    near = _near_duplicates(config, unique)
    for index, candidate in enumerate(unique):
        if index in near:
            first = unique[near[index].kept]
            same = " over the same context" if candidate.grounded else ""
            detail = f"Jaccard≈{near[index].similarity:.2f} with {first.leaf}:{first.line}{same}"
            ledger.drop("near-duplicate", "near", candidate.leaf, candidate.line, candidate=candidate, detail=detail)
        else:
            kept.append(candidate)
    return kept


def _near_duplicates(config: CurationConfig, pool: list[Candidate]) -> dict[int, DuplicateOf]:
    """Near duplicates by position in `pool`: question + answer for most samples; for grounded samples,
    instruction + answer among samples whose contexts are near duplicates (`find_grounded_near_duplicates`)."""
    d = config.dedup
    plain = [i for i, c in enumerate(pool) if not c.grounded]
    grounded = [i for i, c in enumerate(pool) if c.grounded]
    near: dict[int, DuplicateOf] = {}
    found = find_near_duplicates(
        [f"{pool[i].question}\n{pool[i].answer}" for i in plain],
        ngram=d.ngram,
        num_perm=d.num_perm,
        threshold=d.near_duplicate_threshold,
        workers=default_workers(),
    )
    for dup in found:
        near[plain[dup.index]] = DuplicateOf(plain[dup.index], plain[dup.kept], dup.similarity)
    found = find_grounded_near_duplicates(
        [pool[i].context for i in grounded],
        [f"{pool[i].instruction}\n{pool[i].answer}" for i in grounded],
        ngram=d.ngram,
        num_perm=d.num_perm,
        threshold=d.near_duplicate_threshold,
        workers=default_workers(),
    )
    for dup in found:
        near[grounded[dup.index]] = DuplicateOf(grounded[dup.index], grounded[dup.kept], dup.similarity)
    return near


def _select(config: CurationConfig, pool: list[Candidate], targets: dict[str, int], ledger: Ledger) -> list[Candidate]:
    by_leaf: dict[str, list[Candidate]] = {}
    for candidate in pool:
        by_leaf.setdefault(candidate.leaf, []).append(candidate)
    kept = []
    s = config.select
    for leaf in sorted(by_leaf):
        samples = by_leaf[leaf]
        target = targets.get(leaf, 0)
        if target <= 0 or len(samples) <= target:
            kept.extend(samples)
            continue
        chosen = set(
            select_diverse(
                [f"{c.question}\n{c.answer}" for c in samples],
                target,
                ngram_max=s.ngram_max,
                features=s.features,
                embedding_model=s.embedding_model,
            )
        )
        for position, candidate in enumerate(samples):
            if position in chosen:
                kept.append(candidate)
            else:
                ledger.drop(
                    "selection",
                    "not-selected",
                    leaf,
                    candidate.line,
                    candidate=candidate,
                    detail=f"leaf target {target}",
                )
    return kept


def _influence(
    config: CurationConfig, pool: list[Candidate], leaves: Sequence[Leaf], ledger: Ledger
) -> tuple[list[Candidate], list[PreferencePair], InfluenceSummary, float | None]:
    from labtax.curate.influence import preference_pairs, reference_set, score_candidates

    settings = config.influence
    reference = reference_set(leaves, settings.reference_size, config.seed)
    if not reference:
        raise UsageError("--influence needs training seeds as its reference set, and the taxonomy has none")
    order = list(range(len(pool)))
    if settings.max_candidates is not None and settings.max_candidates < len(pool):
        order = sorted(random.Random(config.seed).sample(order, settings.max_candidates))
    scored_ids = {pool[i].sample_id for i in order}
    run = score_candidates([pool[i] for i in order], reference, settings, config.seed, config.output_dir / JOURNAL_FILE)
    kept = []
    for candidate in pool:
        if candidate.sample_id not in scored_ids:
            kept.append(candidate)  # not scored (max_candidates): kept as the other stages left it
            continue
        candidate.influence = run.scores[candidate.sample_id]
        if candidate.influence > settings.min_influence:
            kept.append(candidate)
        else:
            detail = f"influence {candidate.influence:.3g} <= {settings.min_influence}"
            ledger.drop("influence", "not-helpful", candidate.leaf, candidate.line, candidate=candidate, detail=detail)
    pairs = preference_pairs(pool, settings)
    info = InfluenceSummary(
        enabled=True,
        reference_examples=len(reference),
        reference_loss=run.reference_loss,
        candidates_scored=len(order),
        candidates_unscored=len(pool) - len(order),
        kept=sum(1 for c in pool if c.sample_id in scored_ids and (c.influence or 0.0) > settings.min_influence),
        preference_pairs=len(pairs),
        trainable_parameters=run.parameters,
    )
    return kept, pairs, info, run.seconds_per_candidate


def _leaf_record(
    ledger: Ledger, index: GenerationIndex, leaf: str, current: dict[str, Leaf], targets: dict[str, int]
) -> LeafCuration:
    entry = index.entry(leaf)
    return ledger.leaf(leaf).record(
        kind=str(current[leaf].kind) if leaf in current else (entry.kind if entry else ""),
        status=entry.status if entry else "not-generated",
        target=targets.get(leaf, 0),
    )


def _settings_json(config: CurationConfig) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, tuple):
            return list(value)
        return value

    out: dict[str, Any] = {}
    for section in ("filters", "dedup", "select", "mix", "knowledge", "influence"):
        out[section] = {k: plain(v) for k, v in dataclasses.asdict(getattr(config, section)).items()}
    return out


def _jsonl(rows: Iterable[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def _write_output(path: Path, data: bytes, rows: int) -> OutputFile:
    """Write the rows (atomically); with no rows, remove the file, so a stale one from an earlier run
    cannot be trained on."""
    write_jsonl_bytes(path, data if rows else b"")
    return OutputFile(rows, hashlib.sha256(data).hexdigest() if rows else None)
