"""Exact and near-duplicate removal across the whole dataset, and decontamination against the
held-out evaluation seeds.

Exact duplicates: equal normalised question and answer (`labtax.text.normalise`). Near duplicates and
near-contamination: `labtax.neardup` (MinHash LSH candidates, verified by the exact Jaccard similarity
of word n-gram shingles). Samples are visited in a fixed order (leaf path, then file line); each one
is compared with the samples before it, so the first of a cluster survives and the result is
deterministic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from labtax.neardup import DuplicateOf, NearDuplicateIndex, minhash_signatures
from labtax.text import normalise


def exact_key(question: str, answer: str) -> str:
    return hashlib.sha256(f"{normalise(question)}\0{normalise(answer)}".encode()).hexdigest()


def find_exact_duplicates(keys: Sequence[str]) -> list[DuplicateOf]:
    """Every index whose key was seen before, pointing at the first index with that key."""
    first: dict[str, int] = {}
    duplicates = []
    for index, key in enumerate(keys):
        if key in first:
            duplicates.append(DuplicateOf(index, first[key], 1.0))
        else:
            first[key] = index
    return duplicates


@dataclass(frozen=True)
class HeldOutQuestion:
    leaf: str
    question: str


@dataclass(frozen=True)
class Contamination:
    index: int
    leaf: str
    question: str
    how: str  # "exact", "contains" or "near"
    similarity: float


class Decontaminator:
    """Finds samples whose question is, contains, or nearly is a held-out evaluation question."""

    def __init__(
        self, held_out: Sequence[HeldOutQuestion], *, ngram: int, num_perm: int, threshold: float, min_words: int
    ):
        self.held_out = list(held_out)
        self.ngram, self.num_perm, self.threshold, self.min_words = ngram, num_perm, threshold, min_words
        self.exact = {normalise(h.question): i for i, h in reversed(list(enumerate(self.held_out)))}
        # Containment is checked only for held-out questions long enough to be specific.
        self.long = [
            (i, f" {normalise(h.question)} ")
            for i, h in enumerate(self.held_out)
            if len(normalise(h.question).split()) >= min_words
        ]
        self.index = NearDuplicateIndex(ngram=ngram, num_perm=num_perm, threshold=threshold)
        questions = [h.question for h in self.held_out]
        for i, signature in enumerate(minhash_signatures(questions, ngram, num_perm)):
            self.index.add(i, questions[i], signature)

    def check(self, questions: Sequence[str], user_texts: Sequence[str]) -> list[Contamination]:
        found = []
        signatures = minhash_signatures(questions, self.ngram, self.num_perm)
        for index, (question, user_text) in enumerate(zip(questions, user_texts, strict=True)):
            normal = normalise(question)
            if normal in self.exact:
                hit = self.held_out[self.exact[normal]]
                found.append(Contamination(index, hit.leaf, hit.question, "exact", 1.0))
                continue
            padded = f" {normalise(user_text)} "
            contained = next((i for i, text in self.long if text in padded), None)
            if contained is not None:
                hit = self.held_out[contained]
                found.append(Contamination(index, hit.leaf, hit.question, "contains", 1.0))
                continue
            best = self.index.best(question, signatures[index])
            if best is not None:
                hit = self.held_out[best[0]]
                found.append(Contamination(index, hit.leaf, hit.question, "near", best[1]))
        return found
