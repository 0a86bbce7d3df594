"""Exact and near-duplicate removal across the whole dataset, and decontamination against the
held-out evaluation seeds.

Exact duplicates: equal normalised question and answer (`labtax.text.normalise`). Near duplicates and
near-contamination: `labtax.neardup` (MinHash LSH candidates, verified by the exact Jaccard similarity
of word n-gram shingles). Samples are visited in a fixed order (leaf path, then file line); each one
is compared with the samples before it, so the first of a cluster survives and the result is
deterministic.

Grounded-skill samples are compared by what they ask and answer, not by the passage they share: a
leaf asks several questions over one context (and one instruction over many contexts), so two of them
are near duplicates only when their contexts are near duplicates *and* their instruction + answer are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from labtax.neardup import DuplicateOf, NearDuplicateIndex, find_near_duplicates, minhash_signatures
from labtax.text import jaccard, normalise, shingles


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


def find_grounded_near_duplicates(
    contexts: Sequence[str], texts: Sequence[str], *, ngram: int, num_perm: int, threshold: float, workers: int = 1
) -> list[DuplicateOf]:
    """Near duplicates among grounded samples (`texts`: instruction + answer, `contexts`: their passages).

    Contexts are first grouped into clusters of near duplicates (the first of a chain represents it);
    within a cluster, instruction + answer are compared as `find_near_duplicates` compares texts. Three
    different questions over one context stay; the same question and answer over two different
    passages stay too (a yes/no answer is short, the passages are what differ)."""
    distinct = list(dict.fromkeys(normalise(context) for context in contexts))
    root = list(range(len(distinct)))
    for found in find_near_duplicates(distinct, ngram=ngram, num_perm=num_perm, threshold=threshold, workers=workers):
        root[found.index] = root[found.kept]  # `kept` is earlier, so its root is final
    cluster_of = {text: root[i] for i, text in enumerate(distinct)}
    members: dict[int, list[int]] = {}
    for index, context in enumerate(contexts):
        members.setdefault(cluster_of[normalise(context)], []).append(index)
    duplicates = []
    for indices in members.values():
        if len(indices) < 2:
            continue
        group = [texts[i] for i in indices]
        for found in find_near_duplicates(group, ngram=ngram, num_perm=num_perm, threshold=threshold):
            duplicates.append(DuplicateOf(indices[found.index], indices[found.kept], found.similarity))
    return sorted(duplicates, key=lambda d: d.index)


@dataclass(frozen=True)
class HeldOutQuestion:
    """A held-out seed question; `context` is set for a grounded skill's (its question only means
    something over that passage, and the leaf's other samples may repeat the instruction)."""

    leaf: str
    question: str
    context: str = ""


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
        self.grounded = [h for h in held_out if h.context]
        self.grounded_contexts = [shingles(h.context, ngram) for h in self.grounded]
        self.held_out = [h for h in held_out if not h.context]
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

    def check(
        self, questions: Sequence[str], user_texts: Sequence[str], contexts: Sequence[str] | None = None
    ) -> list[Contamination]:
        """Contaminated samples. `questions` are what each sample asks (a grounded sample's instruction),
        `user_texts` every user turn, `contexts` a grounded sample's passage ("" for others)."""
        found = []
        contexts = contexts if contexts is not None else [""] * len(questions)
        signatures = minhash_signatures(questions, self.ngram, self.num_perm)
        for index, (question, user_text, context) in enumerate(zip(questions, user_texts, contexts, strict=True)):
            grounded = self._grounded_hit(index, question, context)
            if grounded is not None:
                found.append(grounded)
                continue
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

    def _grounded_hit(self, index: int, question: str, context: str) -> Contamination | None:
        """A grounded held-out seed is contaminated by a sample over (nearly) its passage that asks (nearly)
        its question; the same instruction over another passage is the leaf's task, not a leak."""
        if not context or not self.grounded:
            return None
        passage = shingles(context, self.ngram)
        asked = normalise(question)
        for held, held_passage in zip(self.grounded, self.grounded_contexts, strict=True):
            if jaccard(passage, held_passage) < self.threshold:
                continue
            target = normalise(held.question)
            if asked == target:
                return Contamination(index, held.leaf, held.question, "exact", 1.0)
            if len(target.split()) >= self.min_words and f" {target} " in f" {asked} ":
                return Contamination(index, held.leaf, held.question, "contains", 1.0)
            similarity = jaccard(shingles(question, self.ngram), shingles(held.question, self.ngram))
            if similarity >= self.threshold:
                return Contamination(index, held.leaf, held.question, "near", similarity)
        return None
