"""Exact and near-duplicate removal across the whole dataset, and decontamination against the
held-out evaluation seeds.

Near duplicates: MinHash signatures of word n-gram shingles (datasketch, xxhash as the token hash)
indexed in a MinHashLSH. Samples are visited in a fixed order (leaf path, then file line); each one
is queried against the samples before it, and dropped when a candidate's Jaccard similarity (exact,
on the shingle sets) reaches the threshold, so the first of a cluster survives and the result is
deterministic.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labtax.curate.text import jaccard, normalise, shingles

# Pinned so that a datasketch upgrade that changes its default scheme cannot change which samples survive.
SCHEME = "affine32"
LSH_WEIGHTS = (0.1, 0.9)  # (false positive, false negative) weights for choosing the LSH bands


@dataclass(frozen=True)
class DuplicateOf:
    """Sample `index` duplicates the earlier sample `kept` (Jaccard `similarity` of their shingles)."""

    index: int
    kept: int
    similarity: float


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


def _token_hash(token: bytes) -> int:
    import xxhash

    return int(xxhash.xxh32_intdigest(token))


def minhash_signatures(texts: Sequence[str], ngram: int, num_perm: int, workers: int = 1) -> np.ndarray:
    """One row of `num_perm` uint32 minima per text (datasketch's bulk generator, seed 1).

    With `workers` > 1 and enough texts, contiguous chunks are hashed in worker processes; each row
    depends only on its text, so the result is the same for any number of workers.
    """
    if workers > 1 and len(texts) >= PARALLEL_MIN_TEXTS:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        size = -(-len(texts) // workers)
        chunks = [list(texts[start : start + size]) for start in range(0, len(texts), size)]
        # spawn, not fork: the caller may hold threads (torch, tokenizers) that fork would copy broken.
        from concurrent.futures.process import BrokenProcessPool

        try:
            with ProcessPoolExecutor(len(chunks), mp_context=multiprocessing.get_context("spawn")) as pool:
                parts = list(pool.map(_signature_chunk, chunks, [ngram] * len(chunks), [num_perm] * len(chunks)))
            return np.vstack(parts)
        except (BrokenProcessPool, OSError):
            pass  # workers could not start (no __main__ file to re-import, no semaphores): hash here instead
    return _signature_chunk(texts, ngram, num_perm)


PARALLEL_MIN_TEXTS = 20_000


def _signature_chunk(texts: Sequence[str], ngram: int, num_perm: int) -> np.ndarray:
    from datasketch import MinHash

    token_sets = ([s.encode("utf-8") for s in shingles(text, ngram)] for text in texts)
    signatures = np.empty((len(texts), num_perm), dtype=np.uint32)
    for row, minhash in enumerate(
        MinHash.generator(token_sets, num_perm=num_perm, hashfunc=_token_hash, scheme=SCHEME)
    ):
        signatures[row] = minhash.hashvalues
    return signatures


def default_workers() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)))


def _lean(signature: np.ndarray) -> object:
    from datasketch import LeanMinHash

    return LeanMinHash(seed=1, hashvalues=signature, scheme=SCHEME)


def _lsh(threshold: float, num_perm: int) -> object:
    from datasketch import MinHashLSH

    # Candidates are verified against the threshold afterwards, so a false positive of the banding
    # costs one comparison while a false negative is a duplicate kept: weigh recall 9 to 1
    # (20 bands of 6 rows at 128 permutations and threshold 0.7, instead of 14 of 9).
    return MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS)


def find_near_duplicates(
    texts: Sequence[str], *, ngram: int = 3, num_perm: int = 128, threshold: float = 0.7, workers: int = 1
) -> list[DuplicateOf]:
    """Near-duplicate detection over `texts` in order: a text is a duplicate when it is similar to
    any earlier text, kept or not, so a chain of small edits (a ~ b ~ c) keeps only its first text,
    as clustering into connected components would, without depending on which one was kept.

    The LSH only proposes candidates; each is verified by the exact Jaccard similarity of the shingle
    sets (recomputed on demand, so memory stays at one signature per text), so nothing is dropped
    on a MinHash estimate alone.
    """
    signatures = minhash_signatures(texts, ngram, num_perm, workers)
    lsh = _lsh(threshold, num_perm)
    duplicates = []
    for index in range(len(texts)):
        minhash = _lean(signatures[index])
        candidates = lsh.query(minhash)  # type: ignore[attr-defined]
        best = _best_match(texts, index, candidates, ngram) if candidates else None
        if best is not None and best[1] >= threshold:
            duplicates.append(DuplicateOf(index, best[0], best[1]))
        lsh.insert(index, minhash, check_duplication=False)  # type: ignore[attr-defined]
    return duplicates


def _best_match(texts: Sequence[str], index: int, candidates: list[int], ngram: int) -> tuple[int, float]:
    """The most similar candidate by exact Jaccard similarity (ties: the earliest)."""
    mine = shingles(texts[index], ngram)
    scored = [(jaccard(mine, shingles(texts[c], ngram)), -c) for c in candidates]
    similarity, negative_index = max(scored)
    return -negative_index, similarity


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
        self.signatures = minhash_signatures([h.question for h in self.held_out], ngram, num_perm)
        self.lsh = _lsh(threshold, num_perm)
        for i in range(len(self.held_out)):
            self.lsh.insert(i, _lean(self.signatures[i]), check_duplication=False)  # type: ignore[attr-defined]

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
            candidates = self.lsh.query(_lean(signatures[index]))  # type: ignore[attr-defined]
            if candidates:
                held_out_texts = [self.held_out[c].question for c in candidates]
                best, similarity = _best_match(
                    [*held_out_texts, question], len(candidates), list(range(len(candidates))), self.ngram
                )
                if similarity >= self.threshold:
                    hit = self.held_out[candidates[best]]
                    found.append(Contamination(index, hit.leaf, hit.question, "near", similarity))
        return found
