"""Which questions the precheck asks: every Q&A pair of every added or edited seed of the changed leaves.

Seeds are matched by content (`labtax.seeddiff`), so a reordered or untouched seed is not asked again;
an added leaf has every seed added. Deleted leaves and pure renames drive no generation and ask
nothing. The list is capped at `max_questions` in leaf order; the rest are counted as omitted.
"""

from __future__ import annotations

from dataclasses import replace

from labtax.gitdiff import DiffResult
from labtax.precheck.records import PrecheckItem, PrecheckLeaf, PrecheckResult
from labtax.seeddiff import ADDED, EDITED, leaf_change_diff

DEFAULT_MAX_QUESTIONS = 100


def precheck_questions(diff: DiffResult, max_questions: int = DEFAULT_MAX_QUESTIONS) -> PrecheckResult:
    """The question list for the leaves `diff` changed (nobody has answered them yet)."""
    leaves = []
    omitted = 0
    budget = max_questions
    for change in diff.changes:
        leaf_diff = leaf_change_diff(change)
        if leaf_diff is None or change.leaf is None:
            continue
        items = []
        for seed_change in leaf_diff.seeds:
            if seed_change.status not in (ADDED, EDITED) or seed_change.new is None:
                continue
            seed = seed_change.new
            for number, pair in enumerate(seed.qna, start=1):
                if budget <= 0:
                    omitted += 1
                    continue
                budget -= 1
                assert seed_change.new_index is not None
                items.append(PrecheckItem(seed_change.new_index, number, pair.question, seed.context, pair.answer))
        if items:
            leaves.append(PrecheckLeaf(change.path, str(change.leaf.kind), str(change.status), tuple(items)))
    return PrecheckResult(tuple(leaves), diff.base_ref, diff.base_commit, diff.head_commit, omitted)


def at_most(result: PrecheckResult, max_questions: int) -> PrecheckResult:
    """The first `max_questions` questions of `result` (a question list read from a file), the rest omitted."""
    leaves = []
    budget = max_questions
    omitted = result.omitted
    for leaf in result.leaves:
        kept = leaf.items[: max(budget, 0)]
        omitted += len(leaf.items) - len(kept)
        budget -= len(kept)
        if kept:
            leaves.append(replace(leaf, items=kept))
    return replace(result, leaves=tuple(leaves), omitted=omitted)
