"""ROUGE-L (Lin, 2004): the F-measure of the longest common subsequence of two texts' words.

Written here rather than taken from `rouge-score`: the whole metric is the LCS below, and rouge-score
brings nltk, absl-py and numpy along. Words are lower-cased `\\w+` runs (Unicode), so answers in any
language are scored; rouge-score's default tokenizer keeps only [a-z0-9] and would score a French or
Japanese answer as empty. F is the balanced F1 (beta = 1), as rouge-score reports `fmeasure`.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence, in O(len(a) * len(b)) time and O(len(b)) memory."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 of `candidate` against `reference`, 0..1 (0 when either has no words)."""
    a, b = words(candidate), words(reference)
    if not a or not b:
        return 0.0
    common = lcs_length(a, b)
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(b)
    return 2 * precision * recall / (precision + recall)
