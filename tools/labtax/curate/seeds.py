"""The leaves' own training seeds as training samples, beside the synthetic ones.

LAB trains on generated data alone; but the seeds are the best data a leaf has (written and reviewed by
people: LIMA's point that a few good examples teach), and a student trained on synthetic data without
them has been measured to learn less than one trained on the seeds alone (docs/teaching.md). So curation
adds every leaf's training seeds to its phase (`[mix] seeds = true`, the default): knowledge seeds go
through the same knowledge mixing as generated pairs (with their documents), skill seeds to phase 2,
a grounded seed with its context. Held-out seeds never: they are the evaluation's questions
(docs/heldout.md). Seeds skip the filters, deduplication and selection meant for the teacher's output.
"""

from __future__ import annotations

from collections.abc import Iterable

from labtax.curate.samples import Candidate
from labtax.records.sample import Message, Sample, SampleMetadata, sample_id
from labtax.taxonomy.leaf import Leaf, LeafKind, training_seeds

SEED_PIPELINE = "seed"  # a sample's `pipeline` when it is one of the leaf's own seeds, not generated


def seed_sample(leaf: Leaf, user: str, answer: str) -> Sample:
    """A seed question and answer of `leaf` in the sample format (no teacher, no scores, no exchanges)."""
    from labtax.sdg.params import SCORE_KEYS

    metadata = SampleMetadata(
        leaf=leaf.path,
        leaf_hash=leaf.leaf_hash,
        pipeline=SEED_PIPELINE,
        prompt_version="",
        teacher="",
        scores=dict.fromkeys(SCORE_KEYS, -1),
        exchanges=(),
    )
    return Sample((Message("user", user), Message("assistant", answer)), metadata)


def seed_candidates(leaves: Iterable[Leaf]) -> list[Candidate]:
    """Every training seed's question-answer pairs, as candidates of their leaf (in file order)."""
    found = []
    for leaf in leaves:
        for seed in training_seeds(leaf):
            for pair in seed.qna:
                grounded = leaf.kind is LeafKind.GROUNDED_SKILL and seed.context
                user = f"{seed.context}\n\n{pair.question}" if grounded else pair.question
                row = seed_sample(leaf, user, pair.answer)
                found.append(Candidate(sample_id(row), leaf.path, str(leaf.kind), 0, row))
    return found
