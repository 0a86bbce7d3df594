"""Confidence for small per-leaf samples: a leaf has a handful of held-out or seed questions, so every score
is shown with its 95 % interval, and the gate calls a leaf's drop a regression only when the interval of
the paired difference (the same questions, new model minus reference) lies below zero.

Means use Student's t (two-sided 95 %; the quantiles for small samples are tabulated, no scipy needed);
proportions (multiple-choice accuracy) use Wilson's score interval, which stays inside [0, 1] and is
sensible at 0 / n and n / n where the normal approximation is not.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# t_{0.975, df} for df = 1..30; beyond, the normal 1.96 is within 2 %.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
Z975 = 1.959964


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    def format(self, digits: int = 2) -> str:
        if self.n < 2:
            return f"{self.mean:.{digits}f} (n={self.n})"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def t_quantile(df: int) -> float:
    return _T975[df - 1] if 1 <= df <= len(_T975) else Z975


def mean_interval(values: Sequence[float]) -> Interval | None:
    """The mean and its two-sided 95 % t-interval (with one value, the interval is the value itself)."""
    if not values:
        return None
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Interval(mean, mean, mean, 1)
    half = t_quantile(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half, len(values))


def proportion_interval(successes: int, n: int) -> Interval | None:
    """A proportion and its 95 % Wilson score interval."""
    if n <= 0:
        return None
    p = successes / n
    z2 = Z975 * Z975
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z975 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), n)


def paired_difference(new: Sequence[float], reference: Sequence[float]) -> Interval | None:
    """new - reference over the same questions, with its 95 % t-interval."""
    return mean_interval([a - b for a, b in zip(new, reference, strict=True)])


def clearly_below(difference: Interval | None, drop: float) -> bool:
    """A regression the gate acts on: the mean fell by more than `drop` and the whole interval is below 0."""
    return difference is not None and difference.n >= 2 and difference.mean < -drop and difference.high < 0
