"""The reviewer's report: one markdown page about the leaves a change touches, for a pull request comment.

For every changed leaf (from `labtax.gitdiff`): branch and kind, seed and word counts, what changed
inside it (seeds added, removed, edited with a word diff, and moved, matched by content in
`labtax.seeddiff`; the document pin; other fields), validation diagnostics (from `validate_paths`,
the same function CI runs), attribution and licence, the document reference as a link to the
repository at that commit, near-duplicate seeds against the rest of the taxonomy (every pair at or
above the threshold of Jaccard similarity of word 3-gram shingles, found exactly by
`labtax.neardup.exact_matches`: no MinHash, so no numpy or scipy in the core install) and the
generation it will drive (expected teacher requests, from the SDG planner's `expected_requests`; none
for pure renames and deletions).

Everything that comes from a contribution (paths, seeds, attribution) is untrusted: it is escaped
before it enters the markdown, so a leaf cannot inject HTML, break a table, spoof the hidden marker
or mention people. The page starts with `REPORT_MARKER`, by which the comment workflow finds its
sticky comment.
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from labtax.config import Config
from labtax.errors import Diagnostic, Severity
from labtax.gitdiff import ChangeStatus, DiffResult, LeafChange, changed_leaves
from labtax.markdown import code, link, text
from labtax.seeddiff import ADDED, EDITED, REMOVED, LeafDiff, SeedChange, leaf_change_diff, tokens, word_diff
from labtax.taxonomy.discover import display_path
from labtax.taxonomy.leaf import Leaf, SeedExample
from labtax.text import normalise, shingles

if TYPE_CHECKING:
    from labtax.sdg.params import GenerationParams

REPORT_MARKER = "<!-- labtax-report -->"
NEAR_DUPLICATE_THRESHOLD = 0.5
MAX_NEAR_DUPLICATES_PER_LEAF = 5
SHINGLE_WORDS = 3
EXCERPT_CHARS = 80
FIELD_CHARS = 1000  # a seed field (context, question, answer) is shown up to this many characters
DIFF_CONTEXT_WORDS = 8  # unchanged words kept on each side of an edit in a word diff
OPEN_SEED_CHANGES = 3  # seed lists up to this long are shown expanded; longer ones collapsed
_WORD = re.compile(r"\w+")


# --- near-duplicate seeds --------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedRef:
    """One seed example of one leaf: `index` is 1-based, as a reviewer counts them in the file."""

    leaf: str
    index: int
    excerpt: str


@dataclass(frozen=True)
class NearDuplicate:
    seed: SeedRef  # in the changed leaf
    other: SeedRef  # elsewhere in the taxonomy
    similarity: float  # Jaccard similarity of the two seeds' word 3-gram shingles


def seed_text(seed: SeedExample) -> str:
    parts = [seed.context or ""] + [f"{pair.question} {pair.answer}" for pair in seed.qna]
    return " ".join(part for part in parts if part)


def _excerpt(seed: SeedExample) -> str:
    first = seed.qna[0].question if seed.qna else (seed.context or "")
    text = " ".join(first.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1].rstrip() + "…"


def near_duplicates(
    changed: Sequence[Leaf], taxonomy: Iterable[Leaf], threshold: float = NEAR_DUPLICATE_THRESHOLD
) -> dict[str, list[NearDuplicate]]:
    """For each changed leaf, its seeds that nearly repeat a seed of another leaf, most similar first.

    Exact, not approximate (`labtax.neardup.exact_matches`, a prefix-filtered lookup in pure Python):
    every pair of seeds whose shingle sets have a Jaccard similarity of at least `threshold` is found,
    and the similarity reported is the exact one. The report runs in the core install (the pre-commit
    hook's environment), which has no MinHash (datasketch, numpy, scipy).
    """
    from labtax.neardup import exact_matches

    seeds = [
        (SeedRef(leaf.path, number, _excerpt(seed)), shingles(seed_text(seed), SHINGLE_WORDS))
        for leaf in {leaf.path: leaf for leaf in [*taxonomy, *changed]}.values()
        for number, seed in enumerate(leaf.seed_examples, start=1)
        if normalise(seed_text(seed))
    ]
    changed_paths = {leaf.path for leaf in changed}
    found: dict[str, list[NearDuplicate]] = {path: [] for path in changed_paths}
    queries = [number for number, (ref, _) in enumerate(seeds) if ref.leaf in changed_paths]
    matches = exact_matches([grams for _, grams in seeds], queries, threshold)
    for number in queries:
        ref = seeds[number][0]
        for other_number, similarity in matches[number]:
            other = seeds[other_number][0]
            if other.leaf != ref.leaf:
                found[ref.leaf].append(NearDuplicate(ref, other, similarity))
    for pairs in found.values():
        pairs.sort(key=lambda d: (-d.similarity, d.seed.index, d.other.leaf, d.other.index))
    return found


# --- the report's content ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LeafSection:
    change: LeafChange
    diagnostics: list[Diagnostic]
    near_duplicates: list[NearDuplicate]
    pipeline: str | None  # None when the change drives no generation
    target_samples: int
    expected_requests: int
    leaf_diff: LeafDiff | None = None  # what changed inside the leaf; None for deletions and pure renames
    # Checks the report did not run for this leaf ("remote documents"), shown as "not checked", never as ✅.
    not_checked: tuple[str, ...] = ()
    context_misfits: tuple[str, ...] = ()  # seeds or chunks that cannot fit the teacher's context


@dataclass(frozen=True)
class Report:
    diff: DiffResult
    sections: list[LeafSection]
    repository_url: str | None = None  # e.g. https://github.com/org/taxonomy, for links to documents
    project_prefix: str = ""  # the project root relative to the git top, for document links
    notes: list[str] = field(default_factory=list)

    @property
    def expected_requests(self) -> int:
        return sum(section.expected_requests for section in self.sections)


def build_report(
    config: Config, diff: DiffResult, *, repository_url: str | None = None, params: GenerationParams | None = None
) -> Report:
    """Gather everything the page shows: diagnostics, near-duplicates and planned generation per leaf.

    The request counts come from generation's own planner (`labtax.sdg.plan.plan_changes`, with `params`:
    the release's, or the defaults), the base's leaves standing for the cache: a change that reaches no
    teacher (metadata, attribution, formatting, a rename) plans 0 requests, as the run would send."""
    from labtax.sdg.plan import plan_changes
    from labtax.validate import validate_paths

    validation = validate_paths(config) if config.taxonomy_root.is_dir() else None
    diagnostics_by_dir = _by_directory(validation.diagnostics if validation else [])
    # Local documents are checked against their pin too (no network needed); remote ones are left to
    # `labtax validate --check-documents`, which fetches them.
    local_documents = [
        config.taxonomy_root / c.path
        for c in diff.changes
        if c.leaf is not None and c.leaf.document is not None and c.leaf.document.is_local
    ]
    if local_documents:
        diagnostics_by_dir.update(
            _by_directory(validate_paths(config, local_documents, check_documents=True).diagnostics)
        )
    generating = [c.leaf for c in diff.changes if c.leaf is not None and c.drives_generation]
    duplicates = near_duplicates(generating, validation.leaves if validation else []) if generating else {}
    plan = plan_changes(((c.old_leaf, c.leaf) for c in generating_changes(diff) if c.leaf is not None), params)
    planned = {item.leaf.path: item for item in plan.to_run}
    sections = []
    for change in diff.changes:
        leaf_dir = posixpath.dirname(display_path(config.taxonomy_root / change.path, config))
        found = diagnostics_by_dir.get(leaf_dir, []) if change.status is not ChangeStatus.DELETED else []
        leaf = change.leaf
        item = planned.get(leaf.path) if leaf is not None and change.drives_generation else None
        if item is not None:
            pipeline, target, requests = item.pipeline, item.target, item.expected_requests
        else:
            pipeline, target, requests = None, 0, 0
        sections.append(
            LeafSection(
                change,
                found,
                duplicates.get(change.path, [])[:MAX_NEAR_DUPLICATES_PER_LEAF],
                pipeline,
                target,
                requests,
                leaf_change_diff(change),
                *_unchecked_and_misfits(config, change, validation),
            )
        )
    project_prefix = ""
    if diff.repository is not None:
        try:
            project_prefix = config.project_root.resolve().relative_to(diff.repository.resolve()).as_posix()
        except ValueError:
            project_prefix = ""
    return Report(diff, sections, repository_url, "" if project_prefix == "." else project_prefix)


def _unchecked_and_misfits(
    config: Config, change: LeafChange, validation: object
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What the report did not check for a changed leaf, and what of it cannot fit the default teacher context."""
    from labtax.validate.context_fit import FitSettings, leaf_misfits

    leaf = change.leaf
    if leaf is None or change.status is ChangeStatus.DELETED:
        return (), ()
    unchecked = ("remote documents",) if leaf.document is not None and not leaf.document.is_local else ()
    fit = FitSettings(TEACHER_CONTEXT_ASSUMED)
    misfits = tuple(m.message for m in leaf_misfits(leaf, fit, config.project_root, config, remote=False))
    return unchecked, misfits


# The report does not know the teacher; it checks context fit against generate's default context.
TEACHER_CONTEXT_ASSUMED = 4096


def generating_changes(diff: DiffResult) -> list[LeafChange]:
    """The changes generation would look at: new or changed leaves that can be read."""
    return [c for c in diff.changes if c.leaf is not None and c.drives_generation]


def _by_directory(diagnostics: Iterable[Diagnostic]) -> dict[str, list[Diagnostic]]:
    """Diagnostics grouped by the directory of their file: a leaf's qna.yaml and attribution.txt together."""
    grouped: dict[str, list[Diagnostic]] = {}
    for diagnostic in diagnostics:
        grouped.setdefault(posixpath.dirname(diagnostic.file), []).append(diagnostic)
    return grouped


def reviewer_report(
    config: Config,
    base: str | None = None,
    *,
    repository_url: str | None = None,
    params: GenerationParams | None = None,
) -> str:
    """The markdown page for the changes since the merge-base with `base` (see `changed_leaves`); request
    counts planned with `params` (the release's generation parameters; default: generate's defaults)."""
    diff = changed_leaves(config, base)
    return render_markdown(build_report(config, diff, repository_url=repository_url, params=params))


# --- markdown --------------------------------------------------------------------------------------


def document_link(report: Report, leaf: Leaf) -> str | None:
    """The leaf's document reference as markdown: a link to the repository at the pinned commit."""
    document = leaf.document
    if document is None:
        return None
    patterns = ", ".join(code(p) for p in document.patterns) or "(no patterns)"
    if document.is_local:
        directory = posixpath.normpath(posixpath.join(report.project_prefix, document.repo))
        head = report.diff.head_commit
        if report.repository_url and head:
            url = f"{report.repository_url.rstrip('/')}/tree/{head}/{quote(directory)}"
            where = link(f"{document.repo} @ {head[:12]}", url)
        else:
            # Relative to the repository root, where the report file is written in CI.
            where = f"[{text(document.repo)}]({quote(directory)})"
        return f"{where} (in this repository; tree {code(document.commit[:12])}), patterns {patterns}"
    from labtax.output import redact_credentials

    repository = redact_credentials(document.repo).removesuffix(".git").rstrip("/")
    url = f"{repository}/tree/{document.commit}"
    if urlsplit(repository).netloc == "gitlab.com":
        url = f"{repository}/-/tree/{document.commit}"
    return f"{link(f'{repository} @ {document.commit[:12]}', url)}, patterns {patterns}"


def word_count(leaf: Leaf) -> int:
    return sum(len(seed_text(seed).split()) for seed in leaf.seed_examples)


_STATUS_ICON = {"added": "🆕", "modified": "✏️", "renamed": "🔀", "deleted": "🗑️"}


def _status_cell(change: LeafChange, leaf_diff: LeafDiff | None = None) -> str:
    label = str(change.status)
    if change.is_pure_rename:
        label = "renamed (content unchanged)"
    elif change.status is ChangeStatus.RENAMED:
        label = "renamed and edited"
    if leaf_diff is not None and change.old_leaf is not None:
        label += f": seeds {leaf_diff.tally()}" if leaf_diff.tally() else ": seeds unchanged"
    return f"{_STATUS_ICON[str(change.status)]} {label}"


def _problems_cell(
    diagnostics: list[Diagnostic], not_checked: tuple[str, ...] = (), misfits: tuple[str, ...] = ()
) -> str:
    errors = sum(1 for d in diagnostics if d.severity is Severity.ERROR) + len(misfits)
    warnings = len(diagnostics) + len(misfits) - errors
    unchecked = f"; ⚪ {', '.join(not_checked)} not checked" if not_checked else ""
    if not diagnostics and not misfits:
        return f"✅ none{unchecked}"
    parts = [
        f"❌ {errors} error{'s' * (errors != 1)}" if errors else "",
        f"⚠️ {warnings} warning{'s' * (warnings != 1)}" if warnings else "",
    ]
    return ", ".join(p for p in parts if p) + unchecked


def _summary_table(report: Report) -> list[str]:
    lines = [
        "| Leaf | Change | Branch | Kind | Seeds | Q&A | Words | Validation | Teacher requests |",
        "|---|---|---|---|--:|--:|--:|---|--:|",
    ]
    for section in report.sections:
        change, leaf = section.change, section.change.leaf or section.change.old_leaf
        cells = [
            code(change.path),
            _status_cell(change, section.leaf_diff),
            text(change.branch or "(none)"),
            text(change.kind or "?"),
            str(len(leaf.seed_examples)) if leaf else "?",
            str(len(leaf.qna_pairs)) if leaf else "?",
            str(word_count(leaf)) if leaf else "?",
            _problems_cell(section.diagnostics, section.not_checked, section.context_misfits)
            if change.status is not ChangeStatus.DELETED
            else "",
            str(section.expected_requests) if section.pipeline else "none",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _leaf_section(report: Report, section: LeafSection) -> list[str]:
    change = section.change
    leaf = change.leaf
    title = (
        f"{code(change.old_path or '')} → {code(change.path)}"
        if change.status is ChangeStatus.RENAMED
        else code(change.path)
    )
    lines = ["", f"### {title}", ""]
    lines.append(
        f"- **Change:** {_status_cell(change)}; branch {text(change.branch or '(none)')}, "
        f"kind {text(change.kind or '?')}"
    )
    hashes = (
        f"{code((change.old_hash or '')[:12])} → {code((change.hash or '')[:12])}"
        if change.old_hash and change.hash
        else code((change.hash or change.old_hash or "none")[:12])
    )
    lines.append(f"- **Leaf hash:** {hashes}")
    if change.status is ChangeStatus.DELETED:
        lines.append("- **Generation:** none (the leaf is deleted; its data leaves the next release)")
        return lines
    if leaf is None:
        lines.append("- **Content:** the qna.yaml cannot be read as a YAML mapping; see the validation problems below")
    else:
        contexts = sum(1 for seed in leaf.seed_examples if seed.context)
        lines.append(
            f"- **Seeds:** {len(leaf.seed_examples)} seed examples ({contexts} with context), "
            f"{len(leaf.qna_pairs)} Q&A pairs, {word_count(leaf)} words"
        )
        if leaf.task_description:
            lines.append(f"- **Task:** {text(leaf.task_description)}")
        if leaf.domain:
            lines.append(f"- **Domain:** {text(leaf.domain)}")
        lines.extend(_attribution_lines(leaf))
        document = document_link(report, leaf)
        if document:
            lines.append(f"- **Document:** {document}")
        if section.leaf_diff is not None and change.old_leaf is not None:
            lines.extend(_change_lines(section.leaf_diff))
    if section.pipeline:
        lines.append(
            f"- **Generation:** {section.expected_requests} teacher requests expected ({text(section.pipeline)} "
            f"pipeline, target {section.target_samples} samples, at nominal keep rates)"
        )
    elif leaf is None:
        lines.append("- **Generation:** unknown until the qna.yaml can be read")
    else:
        lines.append(
            "- **Generation:** none (nothing that reaches the teacher changed, so the cached data is reused: "
            "a rename, or metadata such as created_by, attribution or formatting)"
        )
    lines.extend(_diagnostic_lines(section.diagnostics))
    if section.not_checked:
        lines.append(
            f"- **Not checked:** ⚪ {text(', '.join(section.not_checked))} (the report does not fetch them; "
            "`labtax validate --check-documents` does, in the pull-request workflow)"
        )
    if section.context_misfits:
        lines.append(f"- **Context fit** (teacher context of {TEACHER_CONTEXT_ASSUMED} tokens assumed):")
        lines += [f"  - ❌ {text(message)}" for message in section.context_misfits]
    lines.extend(_duplicate_lines(section.near_duplicates))
    if section.leaf_diff is not None:
        lines.extend(seed_details(section.leaf_diff, all_new=change.old_leaf is None))
    return lines


# --- what changed inside a leaf ---------------------------------------------------------------------


def clipped(value: str | list[str], limit: int = FIELD_CHARS) -> str:
    """Untrusted text as escaped inline markdown (see `text`) that keeps its line breaks as <br>, cut to
    about `limit` characters with an ellipsis. Takes text or `seeddiff.tokens`."""
    words = tokens(value) if isinstance(value, str) else value
    parts: list[str] = []
    used = 0
    for word in words:
        if used + len(word) > limit:
            parts.append((text(word[: limit - used]) if not parts else "") + "…")
            break
        used += len(word) + 1
        parts.append("<br>" if word == "\n" else text(word))
    return " ".join(parts)


def render_word_diff(old: str, new: str) -> str:
    """A word diff as inline markdown: removed words in <del>, added words in <ins>, both escaped text.

    Long unchanged runs keep `DIFF_CONTEXT_WORDS` words on each side of an edit and elide the rest."""
    runs = word_diff(old, new)
    keep, margin = DIFF_CONTEXT_WORDS, 4  # eliding fewer than `margin` words saves nothing
    parts = []
    for position, (kind, words) in enumerate(runs):
        if kind == "delete":
            parts.append(f"<del>{clipped(words)}</del>")
        elif kind == "insert":
            parts.append(f"<ins>{clipped(words)}</ins>")
        else:
            first, last = position == 0, position == len(runs) - 1
            if first and not last and len(words) > keep + margin:
                words = ["…", *words[-keep:]]
            elif last and not first and len(words) > keep + margin:
                words = [*words[:keep], "…"]
            elif not first and not last and len(words) > 2 * keep + margin:
                words = [*words[:keep], "…", *words[-keep:]]
            parts.append(clipped(words))
    return " ".join(part for part in parts if part) or "(whitespace only)"


_FIELD_LABELS = {
    "task_description": "task description",
    "document_outline": "document outline",
    "created_by": "created by",
    "version": "schema version",
}


def _change_lines(leaf_diff: LeafDiff) -> list[str]:
    """The leaf's own changes, outside its seeds: seed tally, document pin, other fields."""
    unchanged = sum(1 for c in leaf_diff.seeds if c.status == "unchanged" and not c.moved)
    tally = leaf_diff.tally()
    lines = [f"- **Seed changes:** {tally + '; ' if tally else 'none; '}{unchanged} unchanged"]
    if leaf_diff.document:
        pins = "; ".join(f"{text(c.name)} {code(c.old)} → {code(c.new)}" for c in leaf_diff.document)
        lines.append(f"- **Document pin changed:** {pins}")
    if leaf_diff.documents_changed:
        lines.append("- **Documents changed:** the pinned documents' content differs from the base (same pin)")
    if leaf_diff.fields or leaf_diff.other_keys:
        lines.append("- **Other changes:**")
        for field_change in leaf_diff.fields:
            label = _FIELD_LABELS.get(field_change.name, field_change.name)
            lines.append(f"  - {text(label)}: {render_word_diff(field_change.old, field_change.new)}")
        if leaf_diff.other_keys:
            lines.append(f"  - other keys: {', '.join(code(k) for k in leaf_diff.other_keys)}")
    return lines


def _seed_fields(seed: SeedExample) -> list[tuple[str, str]]:
    fields = [("context", seed.context)] if seed.context else []
    if len(seed.qna) == 1:
        return [*fields, ("question", seed.qna[0].question), ("answer", seed.qna[0].answer)]
    for number, pair in enumerate(seed.qna, start=1):
        fields += [(f"question {number}", pair.question), (f"answer {number}", pair.answer)]
    return fields


def _seed_item(change: SeedChange) -> list[str]:
    """One seed as a list item: its number (and old number), then its fields, or the changed ones as a word diff."""
    # "seed 3", not "#3": GitHub would link "#3" to issue 3.
    if change.status == ADDED:
        head = f"- **seed {change.new_index}**"
    elif change.status == REMOVED:
        head = f"- **was seed {change.old_index}**"
    else:
        was = f"was seed {change.old_index}" + (", moved" if change.moved else "")
        head = f"- **seed {change.new_index}** ({was})"
    if change.status in (ADDED, REMOVED):
        return [head, *(f"  - **{name}:** {clipped(value)}" for name, value in _seed_fields(change.seed))]
    if change.status != EDITED:  # moved only
        return [f"{head}: {clipped(_excerpt(change.seed), EXCERPT_CHARS)}"]
    assert change.old is not None and change.new is not None
    old_fields, new_fields = dict(_seed_fields(change.old)), dict(_seed_fields(change.new))
    lines = [f"{head}: {clipped(_excerpt(change.new), EXCERPT_CHARS)}"]
    for name in [*new_fields, *(n for n in old_fields if n not in new_fields)]:
        before, after = old_fields.get(name, ""), new_fields.get(name, "")
        if tokens(before) != tokens(after):
            label = f"{name} (changed)" if name == "context" else name
            lines.append(f"  - **{label}:** {render_word_diff(before, after)}")
    return lines


def seed_details(leaf_diff: LeafDiff, *, all_new: bool = False) -> list[str]:
    """The seeds a reviewer must read, grouped, in a <details> block (expanded when short).

    The <summary> holds only our own words and numbers: HTML blocks are not escaped by markdown."""
    groups: list[tuple[str, list[SeedChange]]]
    if all_new:
        groups = [("Seeds", list(leaf_diff.seeds))]
        title = f"The {len(leaf_diff.seeds)} seed examples of the new leaf"
    else:
        groups = [
            ("Added", leaf_diff.with_status(ADDED)),
            ("Edited", leaf_diff.with_status(EDITED)),
            ("Moved", [c for c in leaf_diff.moved if c.status != EDITED]),
            ("Removed", leaf_diff.with_status(REMOVED)),
        ]
        title = f"Seed changes: {leaf_diff.tally()}"
    shown = sum(len(changes) for _, changes in groups)
    if not shown:
        return []
    opening = "<details open>" if shown <= OPEN_SEED_CHANGES else "<details>"
    lines = ["", opening, f"<summary>{title}</summary>", ""]
    for label, changes in groups:
        if changes:
            lines.extend([f"**{label}**", ""])
            for change in changes:
                lines.extend(_seed_item(change))
            lines.append("")
    lines.extend(["</details>", ""])
    return lines


def _attribution_lines(leaf: Leaf) -> list[str]:
    if leaf.attribution is None:
        return ["- **Attribution:** ❌ no attribution.txt"]
    fields = leaf.attribution.fields
    title = fields.get("Title of work", "")
    work = fields.get("Link to work", "")
    described = link(title or work or "(untitled)", work if work.startswith(("http://", "https://")) else None)
    licence = leaf.attribution.license or "(none given)"
    creators = fields.get("Creator names", "")
    revision = fields.get("Revision", "")
    line = f"- **Attribution:** {described}; licence {code(licence)}"
    if creators:
        line += f"; by {text(creators)}"
    if revision:
        line += f"; revision {code(revision)}"
    return [line]


def _diagnostic_lines(diagnostics: list[Diagnostic]) -> list[str]:
    if not diagnostics:
        return ["- **Validation:** ✅ no problems"]
    lines = [f"- **Validation:** {_problems_cell(diagnostics)}"]
    for d in diagnostics:
        icon = "❌" if d.severity is Severity.ERROR else "⚠️"
        lines.append(f"  - {icon} {code(f'{d.file}:{d.line}:{d.column}')} {code(d.rule)} {text(d.message)}")
    return lines


def _duplicate_lines(duplicates: list[NearDuplicate]) -> list[str]:
    if not duplicates:
        return ["- **Near-duplicate seeds:** none found elsewhere in the taxonomy"]
    lines = [
        f"- **Near-duplicate seeds** (Jaccard similarity of word 3-grams ≥ {NEAR_DUPLICATE_THRESHOLD}):",
        "",
        "  | Seed here | Similar seed | Leaf | Similarity |",
        "  |---|---|---|--:|",
    ]
    for d in duplicates:
        lines.append(
            f"  | seed {d.seed.index}: {text(d.seed.excerpt)} | seed {d.other.index}: {text(d.other.excerpt)} "
            f"| {code(d.other.leaf)} | {d.similarity:.2f} |"
        )
    lines.append("")
    return lines


def _shorten(value: str, limit: int = EXCERPT_CHARS) -> str:
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 1].rstrip() + "…"


def _near_duplicate_summary(report: Report) -> str:
    flagged = [s for s in report.sections if s.near_duplicates]
    if not flagged:
        return "Near-duplicate seeds: none found elsewhere in the taxonomy."
    seeds = sum(len({d.seed.index for d in s.near_duplicates}) for s in flagged)
    leaves = "1 leaf" if len(flagged) == 1 else f"{len(flagged)} leaves"
    return (
        f"⚠️ **Near-duplicate seeds: {seeds} seed{'s' * (seeds != 1)} in {leaves}** nearly repeat seeds elsewhere "
        f"in the taxonomy (Jaccard similarity ≥ {NEAR_DUPLICATE_THRESHOLD}): "
        + ", ".join(code(s.change.path) for s in flagged)
        + "."
    )


def render_markdown(report: Report) -> str:
    diff = report.diff
    counts = Counter(str(c.status) for c in diff.changes)
    lines = [REPORT_MARKER, "## labtax: taxonomy changes", ""]
    if diff.everything_new:
        against = "every leaf is new (no base to compare with)"
    else:
        against = f"compared with {code(diff.base_ref)} at merge-base {code((diff.base_commit or '')[:12])}"
        if diff.base_info is not None:
            # The commit's first line is untrusted text (anyone can push a branch): escaped like the rest.
            against += f" ({diff.base_info.date.date().isoformat()}: {text(_shorten(diff.base_info.summary))})"
    if not diff.changes:
        lines.append(f"No leaf changed ({against}).")
        return "\n".join(lines) + "\n"
    tally = ", ".join(f"{counts[s]} {s}" for s in ("added", "modified", "renamed", "deleted") if counts[s])
    noun = "leaf" if len(diff.changes) == 1 else "leaves"
    lines.append(f"**{len(diff.changes)} {noun} changed** ({tally}); {against}.")
    lines.append(_near_duplicate_summary(report))
    generating = sum(1 for s in report.sections if s.pipeline)
    lines.append(
        f"Generation: **{report.expected_requests} teacher requests** expected for {generating} "
        f"{'leaf' if generating == 1 else 'leaves'} (fewer where results are already cached)."
    )
    lines.append("")
    lines.extend(_summary_table(report))
    for section in report.sections:
        lines.extend(_leaf_section(report, section))
    lines.extend(["", "<sub>Generated by `labtax report`; see docs/report.md.</sub>"])
    return "\n".join(lines) + "\n"


__all__ = [
    "REPORT_MARKER",
    "LeafSection",
    "NearDuplicate",
    "Report",
    "build_report",
    "near_duplicates",
    "render_markdown",
    "reviewer_report",
]
