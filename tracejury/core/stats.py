"""Interval statistics for gates: Wilson (one rate), Newcombe's hybrid score interval (a
difference of two rates), one-sided p-values consistent with them, Holm's correction,
Horvitz–Thompson weighting with Kish's effective sample size, cluster-robust effective n,
and sample sizes from a minimum detectable effect.

Pure and total: every function returns finite numbers on every corner (0/n, n/n, 0/0, tiny
n, n in the millions). Wilson and Newcombe match statsmodels' ``proportion_confint(method=
"wilson")`` and ``confint_proportions_2indep(method="newcomb")`` (tests hold them to 1e-9).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from statistics import NormalDist

__all__ = [
    "adjust",
    "cluster_effective_n",
    "cluster_effective_n_from_sums",
    "kish_effective_n",
    "n_per_arm",
    "newcombe_diff",
    "one_sided_p",
    "wilson",
    "z_two_sided",
]

_NORMAL = NormalDist()


def z_two_sided(alpha: float) -> float:
    """The normal quantile for a two-sided ``alpha`` (1.96 for 0.05)."""
    return -_NORMAL.inv_cdf(alpha / 2.0)  # the lower tail keeps precision for tiny alpha


def wilson(count: float, n: float, alpha: float) -> tuple[float, float]:
    """Wilson score interval of a proportion at two-sided ``alpha``; (0, 1) when n is 0.

    ``count`` and ``n`` may be fractional (weighted: an effective count and n)."""
    if n <= 0:
        return 0.0, 1.0
    return _wilson(count, n, z_two_sided(alpha))


def _wilson(count: float, n: float, crit: float) -> tuple[float, float]:
    """``wilson`` with the normal quantile given (Newcombe's interval needs it twice)."""
    if n <= 0:
        return 0.0, 1.0
    q = min(max(count / n, 0.0), 1.0)
    crit2 = crit * crit
    denom = 1.0 + crit2 / n
    center = (q + crit2 / (2.0 * n)) / denom
    dist = crit * math.sqrt(q * (1.0 - q) / n + crit2 / (4.0 * n * n)) / denom
    return max(0.0, center - dist), min(1.0, center + dist)


def newcombe_diff(count1: float, n1: float, count2: float, n2: float, alpha: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval of ``p1 - p2`` at two-sided ``alpha``.

    An empty arm carries no information: its Wilson interval is (0, 1), so the difference's
    interval widens accordingly instead of failing."""
    p1 = count1 / n1 if n1 > 0 else 0.5
    p2 = count2 / n2 if n2 > 0 else 0.5
    crit = z_two_sided(alpha) if n1 > 0 or n2 > 0 else 0.0  # empty arms need no quantile
    l1, u1 = _wilson(count1, n1, crit)
    l2, u2 = _wilson(count2, n2, crit)
    diff = p1 - p2
    low = diff - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upp = diff + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, low), min(1.0, upp)


def one_sided_p(count1: float, n1: float, count2: float, n2: float, margin: float) -> float:
    """One-sided p-value of H0: ``p1 - p2 <= margin``, inverted from the Newcombe interval:
    the smallest one-sided level at which the lower bound exceeds ``margin``."""
    if n1 <= 0 or n2 <= 0:
        return 1.0
    # ``newcombe_diff(count1, n1, count2, n2, 2p)[0] > margin``, with what does not depend
    # on p computed once and only the two Wilson bounds the lower bound needs (the same
    # operations in the same order: identical results; a gate run makes ~50 calls per window)
    p1, p2 = count1 / n1, count2 / n2
    q1, q2 = min(max(p1, 0.0), 1.0), min(max(p2, 0.0), 1.0)
    var1, var2, diff = q1 * (1.0 - q1) / n1, q2 * (1.0 - q2) / n2, p1 - p2
    inv_cdf, sqrt = _NORMAL.inv_cdf, math.sqrt

    def excludes(p: float) -> bool:
        crit = -inv_cdf(2.0 * p / 2.0)
        crit2 = crit * crit
        denom1, denom2 = 1.0 + crit2 / n1, 1.0 + crit2 / n2
        low1 = (q1 + crit2 / (2.0 * n1)) / denom1 - crit * sqrt(var1 + crit2 / (4.0 * n1 * n1)) / denom1
        upp2 = (q2 + crit2 / (2.0 * n2)) / denom2 + crit * sqrt(var2 + crit2 / (4.0 * n2 * n2)) / denom2
        low = diff - sqrt((p1 - max(0.0, low1)) ** 2 + (min(1.0, upp2) - p2) ** 2)
        return max(-1.0, low) > margin

    if not excludes(0.5 - 1e-12):
        return 1.0
    lo, hi = 1e-300, 0.5 - 1e-12
    if excludes(lo):
        return lo
    for _ in range(200):
        mid = _geometric_mid(lo, hi) if hi / lo > 1e3 else (lo + hi) / 2.0
        if excludes(mid):
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-12 * hi:
            break
    return hi


def _geometric_mid(lo: float, hi: float) -> float:
    """√(lo·hi) without underflow: lo·hi is below the smallest double once hi < ~1e-24
    (lo starts at 1e-300), and a zero midpoint would ask for the quantile of 0."""
    prod = lo * hi
    return math.sqrt(prod) if prod > 0 else math.sqrt(lo) * math.sqrt(hi)


def adjust(pvalues: Sequence[float], alpha: float, method: str) -> list[bool]:
    """Which hypotheses are rejected at family-wise ``alpha``: ``holm`` (step-down),
    ``bonferroni`` or ``none``."""
    m = len(pvalues)
    if method == "none":
        return [p <= alpha for p in pvalues]
    if method == "bonferroni":
        return [p <= alpha / m for p in pvalues]
    if method != "holm":
        raise ValueError(f"unknown correction {method!r}")
    rejected = [False] * m
    for rank, i in enumerate(sorted(range(m), key=lambda k: pvalues[k])):
        if pvalues[i] > alpha / (m - rank):
            break
        rejected[i] = True
    return rejected


def kish_effective_n(weights: Iterable[float]) -> float:
    """Kish's effective sample size ``(Σw)² / Σw²`` of inverse-probability weights."""
    total = squares = 0.0
    for w in weights:
        total += w
        squares += w * w
    return total * total / squares if squares > 0 else 0.0


def cluster_effective_n(outcomes: Sequence[float], weights: Sequence[float], clusters: Sequence[Hashable]) -> float:
    """Effective n of a weighted rate whose observations are correlated within clusters
    (sessions): ``p(1-p) / var``, with the cluster-robust (sandwich) variance of the ratio
    estimator. Equals Kish's n when every cluster has one observation."""
    sums: dict[Hashable, list[float]] = {}
    for y, w, c in zip(outcomes, weights, clusters, strict=True):
        s = sums.setdefault(c, [0.0, 0.0])
        s[0] += w
        s[1] += w * y
    n_eff = cluster_effective_n_from_sums([(a, b) for a, b in sums.values()], len(outcomes))
    return n_eff if n_eff is not None else kish_effective_n(weights)


def cluster_effective_n_from_sums(clusters: Sequence[tuple[float, float]], n: int) -> float | None:
    """The same from per-cluster sums ``(Σw, Σw·y)`` — what SQL aggregates per session;
    None when the rate is 0 or 1 (no spread to correct: use Kish's n)."""
    total = sum(w for w, _ in clusters)
    if total <= 0:
        return None
    p = sum(wy for _, wy in clusters) / total
    g = len(clusters)
    var = sum((wy - p * w) ** 2 for w, wy in clusters) / (total * total)
    if g > 1:
        var *= g / (g - 1)
    if var <= 0:
        return None
    return min(p * (1 - p) / var, float(n))


def n_per_arm(baseline_rate: float, effect: float, alpha: float, power: float) -> int:
    """Traces per arm for a one-sided two-proportion test at level ``alpha`` to detect
    ``baseline_rate → baseline_rate + effect`` with ``power`` (normal approximation)."""
    p1, p2 = baseline_rate, min(1.0, baseline_rate + effect)
    if effect <= 0:
        raise ValueError("effect must be positive")
    pbar = (p1 + p2) / 2.0
    za, zb = _NORMAL.inv_cdf(1 - alpha), _NORMAL.inv_cdf(power)
    num = za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return math.ceil((num / effect) ** 2)
