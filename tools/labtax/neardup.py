"""Near-duplicate text detection: the one MinHash routine in labtax.

Texts are compared as sets of word n-gram shingles of their normalised words (`labtax.text.shingles`).
MinHash signatures (datasketch, xxhash as the token hash, a pinned permutation scheme) go into a
MinHashLSH index, which only *proposes* candidates; every candidate is then verified by the exact
Jaccard similarity of the two shingle sets, so nothing is ever called a duplicate on a MinHash
estimate alone, and a similarity shown to a user is a true number.

Users: curation's dedup and decontamination (`labtax.curate.dedup`) and the reviewer report's
near-duplicate seeds (`labtax.report`). numpy and datasketch are imported inside the functions, so
importing this module costs nothing on the contributor path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labtax.text import jaccard, shingles

if TYPE_CHECKING:
    import numpy as np

# Pinned so that a datasketch upgrade that changes its default scheme cannot change which texts match.
SCHEME = "affine32"
# (false positive, false negative) weights for choosing the LSH bands. Candidates are verified against
# the threshold afterwards, so a false positive of the banding costs one comparison while a false
# negative is a duplicate missed: weigh recall 9 to 1 (20 bands of 6 rows at 128 permutations and
# threshold 0.7, instead of 14 of 9).
LSH_WEIGHTS = (0.1, 0.9)
# Below this many texts, worker processes cost more to start than they save.
PARALLEL_MIN_TEXTS = 20_000


@dataclass(frozen=True)
class DuplicateOf:
    """Text `index` duplicates the earlier text `kept` (Jaccard `similarity` of their shingles)."""

    index: int
    kept: int
    similarity: float


def default_workers() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)))


def minhash_signatures(texts: Sequence[str], ngram: int, num_perm: int, workers: int = 1) -> np.ndarray:
    """One row of `num_perm` uint32 minima per text (datasketch's bulk generator, seed 1).

    With `workers` > 1 and enough texts, contiguous chunks are hashed in worker processes; each row
    depends only on its text, so the result is the same for any number of workers.
    """
    if workers > 1 and len(texts) >= PARALLEL_MIN_TEXTS:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        import numpy as np

        size = -(-len(texts) // workers)
        chunks = [list(texts[start : start + size]) for start in range(0, len(texts), size)]
        # spawn, not fork: the caller may hold threads (torch, tokenizers) that fork would copy broken.
        try:
            with ProcessPoolExecutor(len(chunks), mp_context=multiprocessing.get_context("spawn")) as pool:
                parts = list(pool.map(_signature_chunk, chunks, [ngram] * len(chunks), [num_perm] * len(chunks)))
            return np.vstack(parts)
        except (BrokenProcessPool, OSError):
            pass  # workers could not start (no __main__ file to re-import, no semaphores): hash here instead
    return _signature_chunk(texts, ngram, num_perm)


def _token_hash(token: bytes) -> int:
    import xxhash

    return int(xxhash.xxh32_intdigest(token))


def _signature_chunk(texts: Sequence[str], ngram: int, num_perm: int) -> np.ndarray:
    import numpy as np
    from datasketch import MinHash

    token_sets = ([s.encode("utf-8") for s in shingles(text, ngram)] for text in texts)
    signatures = np.empty((len(texts), num_perm), dtype=np.uint32)
    for row, minhash in enumerate(
        MinHash.generator(token_sets, num_perm=num_perm, hashfunc=_token_hash, scheme=SCHEME)
    ):
        signatures[row] = minhash.hashvalues
    return signatures


class NearDuplicateIndex:
    """Texts indexed for near-duplicate look-up: the LSH proposes, the exact Jaccard similarity decides.

    `add` texts under integer keys (with their row of `minhash_signatures`); `matches` returns every
    indexed text whose shingle-set Jaccard similarity with a query reaches the threshold. Shingle sets
    are recomputed on demand, so memory stays at one signature per text.
    """

    def __init__(self, *, ngram: int, num_perm: int, threshold: float) -> None:
        from datasketch import MinHashLSH

        self.ngram, self.num_perm, self.threshold = ngram, num_perm, threshold
        self._texts: dict[int, str] = {}
        self._lsh: Any = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS)

    def add(self, key: int, text: str, signature: np.ndarray) -> None:
        self._texts[key] = text
        self._lsh.insert(key, _lean(signature), check_duplication=False)

    def matches(self, text: str, signature: np.ndarray) -> list[tuple[int, float]]:
        """(key, similarity) of every indexed text at or above the threshold, most similar first, then by key."""
        candidates = self._lsh.query(_lean(signature))
        if not candidates:
            return []
        mine = shingles(text, self.ngram)
        scored = [(key, jaccard(mine, shingles(self._texts[key], self.ngram))) for key in candidates]
        return sorted(((k, s) for k, s in scored if s >= self.threshold), key=lambda item: (-item[1], item[0]))

    def best(self, text: str, signature: np.ndarray) -> tuple[int, float] | None:
        """The most similar indexed text at or above the threshold (ties: the smallest key), or None."""
        found = self.matches(text, signature)
        return found[0] if found else None


def _lean(signature: np.ndarray) -> Any:
    from datasketch import LeanMinHash

    return LeanMinHash(seed=1, hashvalues=signature, scheme=SCHEME)


def find_near_duplicates(
    texts: Sequence[str], *, ngram: int = 3, num_perm: int = 128, threshold: float = 0.7, workers: int = 1
) -> list[DuplicateOf]:
    """Near duplicates among `texts`, in order: a text is a duplicate when it is similar to any earlier
    text, kept or not, so a chain of small edits (a ~ b ~ c) keeps only its first text, as clustering
    into connected components would, without depending on which one was kept."""
    signatures = minhash_signatures(texts, ngram, num_perm, workers)
    index = NearDuplicateIndex(ngram=ngram, num_perm=num_perm, threshold=threshold)
    duplicates = []
    for position, text in enumerate(texts):
        best = index.best(text, signatures[position])
        if best is not None:
            duplicates.append(DuplicateOf(position, best[0], best[1]))
        index.add(position, text, signatures[position])
    return duplicates
