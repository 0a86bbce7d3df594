"""The report's near-duplicate seeds: labtax's exact prefix-filtered join against datasketch's MinHash LSH.

    python benchmarks/report_near_duplicates.py [--leaves 2000] [--changed 20] [--repeat 3]

`labtax report` runs in the core install, without datasketch (numpy, scipy). This times
`labtax.report.near_duplicates` (exact: every pair at Jaccard >= 0.5, in pure Python) against the
reference it replaced, datasketch's `MinHash.bulk` + `MinHashLSH` (128 permutations, threshold 0.5,
exact Jaccard on the candidates), on a synthetic taxonomy shaped like a real one: `--leaves` leaves
of 5 seeds each (questions and answers of 20-60 words from a 3,000-word vocabulary with a Zipf-like
skew and shared phrasing), a tenth of them edited copies of another leaf's seeds (near-duplicates at
all similarities); the pull request changes `--changed` leaves. Prints median CPU times, the ratio,
and the reference's recall (pairs it finds / pairs that exist). Needs the `curate` extra (datasketch).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import statistics
import time
from collections.abc import Callable, Iterable, Sequence

from labtax.config import load_config
from labtax.report import (
    NEAR_DUPLICATE_THRESHOLD,
    SHINGLE_WORDS,
    NearDuplicate,
    SeedRef,
    _excerpt,
    near_duplicates,
    seed_text,
    shingles,
)
from labtax.taxonomy.leaf import Leaf, QnaPair, SeedExample
from labtax.validate import validate_paths

PERMUTATIONS = 128


def minhash_near_duplicates(
    changed: Sequence[Leaf], taxonomy: Iterable[Leaf], threshold: float = NEAR_DUPLICATE_THRESHOLD
) -> dict[str, list[NearDuplicate]]:
    """The report's previous implementation (datasketch MinHash LSH candidates, exact Jaccard on them)."""
    from datasketch import MinHash, MinHashLSH

    seeds: list[tuple[SeedRef, set[str]]] = []
    for leaf in {leaf.path: leaf for leaf in [*taxonomy, *changed]}.values():
        for number, seed in enumerate(leaf.seed_examples, start=1):
            grams = shingles(seed_text(seed), SHINGLE_WORDS)
            if grams:
                seeds.append((SeedRef(leaf.path, number, _excerpt(seed)), grams))
    hashes = MinHash.bulk([[g.encode("utf-8") for g in grams] for _, grams in seeds], num_perm=PERMUTATIONS)
    index = MinHashLSH(threshold=threshold, num_perm=PERMUTATIONS)
    for number, minhash in enumerate(hashes):
        index.insert(number, minhash)
    changed_paths = {leaf.path for leaf in changed}
    found: dict[str, list[NearDuplicate]] = {path: [] for path in changed_paths}
    for number, (ref, grams) in enumerate(seeds):
        if ref.leaf not in changed_paths:
            continue
        for other_number in index.query(hashes[number]):
            other, other_grams = seeds[other_number]
            if other.leaf == ref.leaf:
                continue
            similarity = len(grams & other_grams) / len(grams | other_grams)
            if similarity >= threshold:
                found[ref.leaf].append(NearDuplicate(ref, other, similarity))
    return found


def synthetic_taxonomy(leaves: int, seed: int = 0) -> list[Leaf]:
    rng = random.Random(seed)
    vocabulary = [f"word{i}" for i in range(3000)]
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    phrases = [" ".join(rng.choices(vocabulary, weights, k=4)) for _ in range(200)]

    def sentence(words: int) -> str:
        parts: list[str] = []
        while len(parts) < words:
            parts.extend(rng.choice(phrases).split() if rng.random() < 0.3 else rng.choices(vocabulary, weights, k=3))
        return " ".join(parts[:words])

    [template] = [
        leaf for leaf in validate_paths(load_config()).leaves if leaf.path.endswith("freeform/haiku/qna.yaml")
    ]
    made: list[Leaf] = []
    for number in range(leaves):
        if made and rng.random() < 0.1:  # an edited copy of another leaf's seeds
            source = rng.choice(made).seed_examples
            seeds = []
            for example in source:
                words = f"{example.qna[0].question} {example.qna[0].answer}".split()
                for _ in range(rng.randint(0, len(words) // 3)):
                    words[rng.randrange(len(words))] = rng.choice(vocabulary)
                half = len(words) // 2
                seeds.append(SeedExample(None, (QnaPair(" ".join(words[:half]), " ".join(words[half:])),)))
        else:
            seeds = [
                SeedExample(None, (QnaPair(sentence(rng.randint(8, 20)), sentence(rng.randint(12, 40))),))
                for _ in range(5)
            ]
        made.append(dataclasses.replace(template, path=f"bench/leaf_{number:05d}/qna.yaml", seed_examples=tuple(seeds)))
    return made


def pairs(found: dict[str, list[NearDuplicate]]) -> set[tuple[str, int, str, int]]:
    return {(d.seed.leaf, d.seed.index, d.other.leaf, d.other.index) for v in found.values() for d in v}


def timed(
    function: Callable[[], dict[str, list[NearDuplicate]]], repeat: int
) -> tuple[float, dict[str, list[NearDuplicate]]]:
    """Median CPU seconds of this process (on a shared machine, wall time mostly measures the others)."""
    times, result = [], {}
    for _ in range(repeat):
        start = time.process_time()
        result = function()
        times.append(time.process_time() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description="report near-duplicates: exact join vs MinHash LSH")
    parser.add_argument("--leaves", type=int, default=2000)
    parser.add_argument("--changed", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    taxonomy = synthetic_taxonomy(args.leaves)
    # The pull request changes the last leaves (the copies among them have originals elsewhere).
    changed = taxonomy[-args.changed :]
    exact_seconds, exact = timed(lambda: near_duplicates(changed, taxonomy), args.repeat)
    lsh_seconds, lsh = timed(lambda: minhash_near_duplicates(changed, taxonomy), args.repeat)
    truth, found = pairs(exact), pairs(lsh)
    assert found <= truth, "the reference reported a pair below the threshold"
    seeds = sum(len(leaf.seed_examples) for leaf in taxonomy)
    print(
        f"{args.leaves} leaves ({seeds} seeds), {args.changed} changed; median of {args.repeat}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'':<44}{'CPU s':>9}{'pairs':>7}")
    print(f"{'labtax exact prefix-filtered join':<44}{exact_seconds:>9.3f}{len(truth):>7}")
    print(f"{'datasketch MinHash LSH (128 perm.) + Jaccard':<44}{lsh_seconds:>9.3f}{len(found):>7}")
    recall = len(found) / max(1, len(truth))
    print(f"ratio (reference / labtax): {lsh_seconds / exact_seconds:.2f}x; reference recall {recall:.3f}")


if __name__ == "__main__":
    main()
