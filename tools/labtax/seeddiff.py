"""What changed inside one leaf: seeds added, removed, edited and moved, the document pin, other fields.

Seeds are matched by content, not by position, so that inserting a seed at the top or reordering
seeds does not read as every seed being edited:

1. identical seeds (same context, questions and answers) are paired first, in file order;
2. the remaining seeds are paired by similarity, best pairs first: the word-level similarity of the
   whole seed (difflib's `SequenceMatcher.ratio`), raised to `ANCHORED_SIMILARITY` when the two share
   their question(s) or their (non-empty) context, since that is the same seed with its other half
   rewritten. Pairs under `EDIT_SIMILARITY` are not the same seed: one is removed, the other added;
3. among the paired seeds, those outside the longest run that kept its relative order are `moved`
   (a reorder is shown as a reorder; an insertion above a seed does not move it).

Pure functions over two `Leaf` values: the report renders the result, the precheck asks the model the
questions of the added and edited seeds.
"""

from __future__ import annotations

import bisect
import difflib
from dataclasses import dataclass

from labtax.gitdiff import ChangeStatus, LeafChange
from labtax.taxonomy.leaf import DocumentRef, Leaf, SeedExample

EDIT_SIMILARITY = 0.5
ANCHORED_SIMILARITY = 0.75

ADDED = "added"
REMOVED = "removed"
EDITED = "edited"
UNCHANGED = "unchanged"


@dataclass(frozen=True)
class SeedChange:
    """One seed across the two versions. Indices are 1-based, as a reviewer counts seeds in the file."""

    status: str  # added | removed | edited | unchanged
    old_index: int | None  # its place at the base; None when added
    new_index: int | None  # its place now; None when removed
    old: SeedExample | None
    new: SeedExample | None
    moved: bool = False  # its place among the kept seeds changed (edited or not)

    @property
    def seed(self) -> SeedExample:
        """The current version (the old one for a removed seed)."""
        seed = self.new or self.old
        assert seed is not None
        return seed


@dataclass(frozen=True)
class FieldChange:
    """A changed scalar outside the seeds: `name` is how the report labels it (e.g. `task_description`)."""

    name: str
    old: str
    new: str


@dataclass(frozen=True)
class LeafDiff:
    seeds: tuple[SeedChange, ...]  # current seeds in file order, then removed seeds in their old order
    document: tuple[FieldChange, ...]  # the document pin: repo, commit, patterns
    fields: tuple[FieldChange, ...]  # task description, domain, outline, version, creator, attribution
    documents_changed: bool  # nothing above differs, yet the hash does: the pinned documents' content changed
    other_keys: tuple[str, ...] = ()  # other top-level qna.yaml keys whose value changed

    def with_status(self, status: str) -> list[SeedChange]:
        return [change for change in self.seeds if change.status == status]

    @property
    def moved(self) -> list[SeedChange]:
        return [change for change in self.seeds if change.moved]

    @property
    def changed_seeds(self) -> list[SeedChange]:
        """The seeds a reviewer needs to read: added, edited (the precheck asks these), removed, moved."""
        return [change for change in self.seeds if change.status != UNCHANGED or change.moved]

    def tally(self) -> str:
        """`2 added, 1 edited, 1 moved, 1 removed` (empty when no seed changed)."""
        counts = [
            (len(self.with_status(ADDED)), "added"),
            (len(self.with_status(EDITED)), "edited"),
            (len(self.moved), "moved"),
            (len(self.with_status(REMOVED)), "removed"),
        ]
        return ", ".join(f"{count} {label}" for count, label in counts if count)


# --- matching --------------------------------------------------------------------------------------


def seed_key(seed: SeedExample) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A seed's identity: its context and Q&A pairs, with runs of whitespace made one space."""
    return (_squash(seed.context or ""), tuple((_squash(p.question), _squash(p.answer)) for p in seed.qna))


def _squash(value: str) -> str:
    return " ".join(value.split())


def seed_words(seed: SeedExample) -> list[str]:
    return [
        word for part in (seed.context or "", *(f"{p.question} {p.answer}" for p in seed.qna)) for word in part.split()
    ]


def similarity(old: SeedExample, new: SeedExample) -> float:
    """How alike two seeds are (0..1): word-level ratio, raised when they share questions or context."""
    old_key, new_key = seed_key(old), seed_key(new)
    matcher = difflib.SequenceMatcher(None, seed_words(old), seed_words(new), autojunk=False)
    score = matcher.ratio() if matcher.real_quick_ratio() >= EDIT_SIMILARITY else 0.0
    same_questions = [q for q, _ in old_key[1]] == [q for q, _ in new_key[1]]
    same_context = bool(old_key[0]) and old_key[0] == new_key[0]
    return max(score, ANCHORED_SIMILARITY) if same_questions or same_context else score


def match_seeds(old: tuple[SeedExample, ...], new: tuple[SeedExample, ...]) -> tuple[SeedChange, ...]:
    """Pair the two versions' seeds by content (see the module docstring)."""
    pairs: dict[int, int] = {}  # new position -> old position (0-based)
    unused: dict[tuple[str, tuple[tuple[str, str], ...]], list[int]] = {}
    for index, seed in enumerate(old):
        unused.setdefault(seed_key(seed), []).append(index)
    for index, seed in enumerate(new):
        same = unused.get(seed_key(seed))
        if same:
            pairs[index] = same.pop(0)
    exact = set(pairs)
    exact_old = set(pairs.values())
    rest_old = [i for i in range(len(old)) if i not in exact_old]
    rest_new = [i for i in range(len(new)) if i not in pairs]
    candidates = []
    for n in rest_new:
        for o in rest_old:
            score = similarity(old[o], new[n])
            if score >= EDIT_SIMILARITY:
                candidates.append((-score, abs(o - n), n, o))
    taken_old: set[int] = set()
    for _, _, n, o in sorted(candidates):
        if n not in pairs and o not in taken_old:
            pairs[n] = o
            taken_old.add(o)
    moved = _moved(sorted(pairs.items()))
    changes = []
    for n, seed in enumerate(new):
        if n not in pairs:
            changes.append(SeedChange(ADDED, None, n + 1, None, seed))
            continue
        o = pairs[n]
        status = UNCHANGED if n in exact else EDITED
        changes.append(SeedChange(status, o + 1, n + 1, old[o], seed, moved=n in moved))
    paired_old = set(pairs.values())
    changes.extend(SeedChange(REMOVED, o + 1, None, seed, None) for o, seed in enumerate(old) if o not in paired_old)
    return tuple(changes)


def _moved(pairs: list[tuple[int, int]]) -> set[int]:
    """New positions of the pairs outside a longest subsequence increasing in old position."""
    if not pairs:
        return set()
    tails: list[int] = []  # old position ending the best run of each length
    tail_at: list[int] = []  # index into `pairs` of that run's end
    previous = [-1] * len(pairs)
    for i, (_, o) in enumerate(pairs):
        length = bisect.bisect_left(tails, o)
        if length == len(tails):
            tails.append(o)
            tail_at.append(i)
        else:
            tails[length], tail_at[length] = o, i
        previous[i] = tail_at[length - 1] if length else -1
    kept: set[int] = set()
    i = tail_at[-1]
    while i >= 0:
        kept.add(i)
        i = previous[i]
    return {n for i, (n, _) in enumerate(pairs) if i not in kept}


# --- the whole leaf --------------------------------------------------------------------------------

_FIELDS = ("task_description", "domain", "document_outline", "created_by", "version")


def diff_leaf(old: Leaf, new: Leaf) -> LeafDiff:
    """Everything that differs between two versions of a leaf, as a reviewer reads it."""
    seeds = match_seeds(old.seed_examples, new.seed_examples)
    document = _document_changes(old, new)
    fields = [
        FieldChange(name, str(getattr(old, name)), str(getattr(new, name)))
        for name in _FIELDS
        if getattr(old, name) != getattr(new, name)
    ]
    if (old.attribution is None) != (new.attribution is None):
        presence = ("absent", "present")
        fields.append(
            FieldChange("attribution.txt", presence[old.attribution is not None], presence[new.attribution is not None])
        )
    old_attribution = old.attribution.fields if old.attribution else {}
    new_attribution = new.attribution.fields if new.attribution else {}
    for name in sorted(old_attribution.keys() | new_attribution.keys()):
        before, after = old_attribution.get(name, ""), new_attribution.get(name, "")
        if before != after:
            fields.append(FieldChange(f"attribution: {name}", before, after))
    known = {*_FIELDS, "seed_examples", "document"}
    other_keys = tuple(
        sorted(
            str(key)
            for key in old.content.keys() | new.content.keys()
            if key not in known and old.content.get(key) != new.content.get(key)
        )
    )
    nothing_else = (
        not document
        and not fields
        and not other_keys
        and all(change.status == UNCHANGED and not change.moved for change in seeds)
    )
    documents_changed = nothing_else and old.leaf_hash != new.leaf_hash and new.document is not None
    return LeafDiff(seeds, tuple(document), tuple(fields), documents_changed, other_keys)


def _document_changes(old: Leaf, new: Leaf) -> list[FieldChange]:
    before, after = old.document, new.document
    if before == after:
        return []
    if before is None or after is None:
        return [FieldChange("document", _describe(before), _describe(after))]
    changes = []
    if before.repo != after.repo:
        changes.append(FieldChange("repo", before.repo, after.repo))
    if before.commit != after.commit:
        changes.append(FieldChange("commit", before.commit, after.commit))
    if before.patterns != after.patterns:
        changes.append(FieldChange("patterns", ", ".join(before.patterns), ", ".join(after.patterns)))
    return changes


def leaf_change_diff(change: LeafChange) -> LeafDiff | None:
    """What changed inside a changed leaf: every seed of an added leaf, the seed-level diff of an edited
    (or renamed and edited) one; None for deletions, pure renames and unreadable qna.yaml files."""
    if change.leaf is None or not change.drives_generation:
        return None
    if change.old_leaf is None:
        return added_leaf(change.leaf) if change.status is ChangeStatus.ADDED else None
    return diff_leaf(change.old_leaf, change.leaf)


def _describe(document: DocumentRef | None) -> str:
    return f"{document.repo} @ {document.commit}" if document else "none"


def added_leaf(new: Leaf) -> LeafDiff:
    """A new leaf as a diff: every seed added."""
    seeds = tuple(SeedChange(ADDED, None, n, None, seed) for n, seed in enumerate(new.seed_examples, start=1))
    return LeafDiff(seeds, (), (), False)


# --- word diff -------------------------------------------------------------------------------------


def tokens(value: str) -> list[str]:
    """Words and line breaks ("\n", one per run of newlines): a haiku's lines or a context's paragraphs
    stay visible in a word diff."""
    found: list[str] = []
    for line in value.strip().splitlines():
        words = line.split()
        if words:
            if found:
                found.append("\n")
            found.extend(words)
    return found


def word_diff(old: str, new: str) -> list[tuple[str, list[str]]]:
    """(`equal`|`delete`|`insert`, tokens) runs turning `old` into `new`, word by word (see `tokens`)."""
    a, b = tokens(old), tokens(new)
    runs: list[tuple[str, list[str]]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag in ("delete", "replace"):
            runs.append(("delete", a[i1:i2]))
        if tag in ("insert", "replace"):
            runs.append(("insert", b[j1:j2]))
        if tag == "equal":
            runs.append(("equal", a[i1:i2]))
    return runs


__all__ = [
    "ADDED",
    "EDITED",
    "REMOVED",
    "UNCHANGED",
    "FieldChange",
    "LeafDiff",
    "SeedChange",
    "added_leaf",
    "diff_leaf",
    "leaf_change_diff",
    "match_seeds",
    "tokens",
    "word_diff",
]
