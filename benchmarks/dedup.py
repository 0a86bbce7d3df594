"""Near-duplicate removal: labtax's MinHash LSH (`labtax.neardup.find_near_duplicates`) at scale,
and against an exact pairwise Jaccard scan on a subset.

    python benchmarks/dedup.py                       # 200,000 samples, 2 workers, 5,000-sample comparison
    python benchmarks/dedup.py --samples 50000 --subset 2000 --workers 1

The samples imitate generated Q&A pairs: a question from a few templates and an answer of 20 to 150
words drawn from a Zipf-distributed vocabulary, so common words and phrases recur as they do in
teacher output. 8% are near duplicates of an earlier sample (1 to 8 word substitutions, insertions or
deletions: some land above the 0.7 threshold, some below) and 2% are exact copies.

Both methods answer the same question: which samples have an earlier sample whose word-3-gram
Jaccard similarity is at least the threshold? The exact baseline compares every pair (i < j) of
shingle sets. Reported: wall time of each, the LSH method's recall and precision against the exact
answer, and the speed ratio (exact time / LSH time) on the subset.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from labtax.neardup import find_near_duplicates
from labtax.text import jaccard, shingles

QUESTIONS = (
    "What does the document say about {}?",
    "Explain how {} works.",
    "Why is {} important for the system?",
    "Summarise the role of {} in two sentences.",
    "How would you describe {} to a new engineer?",
)


def vocabulary(size: int, rng: random.Random) -> list[str]:
    syllables = ["ta", "ri", "mo", "ken", "sa", "lo", "vi", "dor", "pe", "na", "gu", "shi", "ra", "tem", "bo", "li"]
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))))
    return sorted(words)


def generate(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = vocabulary(8000, rng)
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    texts: list[str] = []
    for _ in range(count):
        roll = rng.random()
        if texts and roll < 0.02:
            texts.append(rng.choice(texts))
        elif texts and roll < 0.10:
            texts.append(edit(rng.choice(texts), rng, words))
        else:
            topic = " ".join(rng.choices(words, weights, k=2))
            answer = " ".join(rng.choices(words, weights, k=rng.randint(20, 150)))
            texts.append(f"{rng.choice(QUESTIONS).format(topic)}\n{answer}.")
    return texts


def edit(text: str, rng: random.Random, words: list[str]) -> str:
    tokens = text.split(" ")
    for _ in range(rng.randint(1, 8)):
        position = rng.randrange(len(tokens))
        action = rng.random()
        if action < 0.5:
            tokens[position] = rng.choice(words)
        elif action < 0.75:
            tokens.insert(position, rng.choice(words))
        elif len(tokens) > 5:
            del tokens[position]
    return " ".join(tokens)


def cpu_seconds() -> tuple[float, float]:
    """User + system CPU seconds of this process and of its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def exact_scan(texts: list[str], threshold: float, ngram: int) -> set[int]:
    sets = [shingles(text, ngram) for text in texts]
    return {j for j in range(len(sets)) if any(jaccard(sets[i], sets[j]) >= threshold for i in range(j))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--subset", type=int, default=5_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {cores} cores available, load average {load:.1f} at start; workers={args.workers}")

    texts = generate(args.samples, args.seed)
    before = cpu_seconds()
    started = time.perf_counter()
    duplicates = find_near_duplicates(texts, threshold=args.threshold, workers=args.workers)
    full_seconds = time.perf_counter() - started
    main_cpu, child_cpu = (now - then for now, then in zip(cpu_seconds(), before, strict=True))
    verdict = "PASS" if full_seconds < 60 else "FAIL"
    print(
        f"full run: {len(texts):,} samples, {len(duplicates):,} near duplicates removed in {full_seconds:.1f} s wall "
        f"({len(texts) / full_seconds:,.0f} samples/s) -> target < 60 s: {verdict}"
    )
    # On a shared machine the wall time includes waiting for a core; the CPU time is the work itself.
    print(
        f"  CPU time: {main_cpu:.1f} s in the main process (LSH index, verification) + {child_cpu:.1f} s in "
        f"{args.workers} signature worker(s); load average now {os.getloadavg()[0]:.1f}"
    )

    subset = texts[: args.subset]
    started = time.perf_counter()
    found = {d.index for d in find_near_duplicates(subset, threshold=args.threshold, workers=1)}
    lsh_seconds = time.perf_counter() - started
    started = time.perf_counter()
    truth = exact_scan(subset, args.threshold, 3)
    exact_seconds = time.perf_counter() - started
    agreed = len(found & truth)
    recall = agreed / len(truth) if truth else 1.0
    precision = agreed / len(found) if found else 1.0
    pairs = len(subset) * (len(subset) - 1) // 2
    print(f"\nsubset of {len(subset):,} samples ({pairs:,} pairs), threshold {args.threshold}:")
    print(f"{'method':<34}{'seconds':>10}{'duplicates':>12}{'recall':>9}{'precision':>11}")
    print(f"{'exact pairwise Jaccard (baseline)':<34}{exact_seconds:>10.2f}{len(truth):>12}{1.0:>9.3f}{1.0:>11.3f}")
    print(f"{'MinHash LSH, 1 worker (labtax)':<34}{lsh_seconds:>10.2f}{len(found):>12}{recall:>9.3f}{precision:>11.3f}")
    print(f"speed ratio (baseline / LSH): {exact_seconds / lsh_seconds:.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
