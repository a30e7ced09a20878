"""Interval statistics against statsmodels (computed here, so nothing is frozen by hand),
with every corner: 0/n, n/n, 0/0, tiny n and n in the millions."""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from tracejury.core.stats import (
    adjust,
    cluster_effective_n,
    kish_effective_n,
    n_per_arm,
    newcombe_diff,
    one_sided_p,
    wilson,
)

NS = [1, 2, 3, 7, 20, 100, 9000, 1_000_003, 5_000_000]
ALPHAS = [0.10, 0.05, 0.01, 0.001]


def _counts(n: int) -> list[int]:
    return sorted({0, 1, n // 3, n // 2, n - 1, n} - {-1})


@pytest.mark.parametrize("alpha", ALPHAS)
def test_wilson_matches_statsmodels(alpha: float) -> None:
    for n in NS:
        for c in _counts(n):
            ours = wilson(c, n, alpha)
            ref = proportion_confint(c, n, alpha=alpha, method="wilson")
            assert ours == pytest.approx(tuple(map(float, ref)), abs=1e-9), (c, n, alpha)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_newcombe_matches_statsmodels(alpha: float) -> None:
    grid = [(c, n) for n in [1, 3, 20, 9000, 1_000_003] for c in _counts(n)]
    for (c1, n1), (c2, n2) in itertools.product(grid, repeat=2):
        ours = newcombe_diff(c1, n1, c2, n2, alpha)
        ref = confint_proportions_2indep(c1, n1, c2, n2, method="newcomb", compare="diff", alpha=alpha)
        assert ours == pytest.approx(tuple(map(float, ref)), abs=1e-9), (c1, n1, c2, n2)


def test_corners_are_finite_never_nan() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels itself divides by zero on 0/0
        assert all(math.isnan(x) for x in proportion_confint(0, 0, alpha=0.05, method="wilson"))
    assert wilson(0, 0, 0.05) == (0.0, 1.0)
    assert newcombe_diff(0, 0, 5, 10, 0.05)[0] >= -1.0
    for args in [(0, 0, 0, 0), (0, 10, 0, 10), (10, 10, 10, 10), (0, 1, 1, 1), (3, 5_000_000, 0, 5_000_000)]:
        lo, hi = newcombe_diff(*args, 0.05)
        assert math.isfinite(lo) and math.isfinite(hi) and -1 <= lo <= hi <= 1
        p = one_sided_p(*args, 0.0)
        assert math.isfinite(p) and 0 < p <= 1


def test_one_sided_p_is_consistent_with_the_interval() -> None:
    p = one_sided_p(41, 9000, 18, 9000, 0.0)
    assert 0.001 < p < 0.005
    lo_at = lambda level: newcombe_diff(41, 9000, 18, 9000, 2 * level)[0]  # noqa: E731
    assert lo_at(p * 1.01) > 0 > lo_at(p * 0.99)
    assert one_sided_p(18, 9000, 18, 9000, 0.0) == 1.0
    assert one_sided_p(41, 9000, 18, 9000, 0.01) == 1.0  # the effect is under the margin


def test_one_sided_p_of_a_huge_effect_is_tiny_not_a_crash() -> None:
    # p < 1e-150: the geometric bisection's lo·hi (lo = 1e-300) underflowed to 0 and asked
    # for the normal quantile of 0 (StatisticsError) — a gate crashed on a big regression
    for args in [(855, 9000, 18, 9000), (4000, 50000, 18, 9000), (500_000, 1_000_000, 10, 1_000_000)]:
        p = one_sided_p(*args, 0.0)
        assert 0 < p < 1e-100
        assert newcombe_diff(*args, 2 * p * 1.01)[0] > 0


def test_one_sided_p_is_exactly_the_inversion_of_newcombe_diff() -> None:
    # one_sided_p inlines the lower bound for speed; it must give the very same floats as
    # bisecting on newcombe_diff itself (the definition)
    def reference(c1: float, n1: float, c2: float, n2: float, margin: float) -> float:
        if n1 <= 0 or n2 <= 0:
            return 1.0

        def excludes(p: float) -> bool:
            return newcombe_diff(c1, n1, c2, n2, 2.0 * p)[0] > margin

        if not excludes(0.5 - 1e-12):
            return 1.0
        lo, hi = 1e-300, 0.5 - 1e-12
        if excludes(lo):
            return lo
        for _ in range(200):
            mid = (math.sqrt(lo) * math.sqrt(hi) if lo * hi == 0 else math.sqrt(lo * hi)) if hi / lo > 1e3 else (
                (lo + hi) / 2.0)  # fmt: skip
            lo, hi = (lo, mid) if excludes(mid) else (mid, hi)
            if hi - lo < 1e-12 * hi:
                break
        return hi

    ns = [0, 1, 5, 20, 300, 9000, 1_000_000, 37.5]
    for n1, n2 in itertools.product(ns, ns):
        for c1, c2 in {(0, 0), (n1, 0), (0, n2), (n1 / 3, n2 / 7), (n1 * 0.9, n2 * 0.1), (n1, n2)}:
            for margin in (0.0, 0.01, -0.02):
                assert one_sided_p(c1, n1, c2, n2, margin) == reference(c1, n1, c2, n2, margin), (c1, n1, c2, n2)


def test_holm_bonferroni_none() -> None:
    ps = [0.001, 0.02, 0.04, 0.3]
    assert adjust(ps, 0.05, "none") == [True, True, True, False]
    assert adjust(ps, 0.05, "bonferroni") == [True, False, False, False]
    # Holm: 0.001 <= 0.05/4, 0.02 <= 0.05/3 fails (0.0167) -> stop
    assert adjust(ps, 0.05, "holm") == [True, False, False, False]
    assert adjust([0.01, 0.012, 0.2], 0.05, "holm") == [True, True, False]


def test_kish_and_cluster_effective_n() -> None:
    assert kish_effective_n([1.0] * 50) == pytest.approx(50)
    assert kish_effective_n([1.0] * 50 + [10.0] * 5) < 55
    ys = [1, 0, 0, 1, 0, 0, 1, 0]
    ws = [1.0] * 8
    singletons = list(range(8))
    # one observation per cluster: the sandwich variance is the binomial one (up to g/(g-1))
    assert cluster_effective_n(ys, ws, singletons) == pytest.approx(8 * 7 / 8, rel=1e-9)
    # perfectly correlated pairs: half the information
    paired = [0, 0, 1, 1, 2, 2, 3, 3]
    ys_pairs = [1, 1, 0, 0, 0, 0, 1, 1]
    assert cluster_effective_n(ys_pairs, ws, paired) == pytest.approx(4 * 3 / 4, rel=1e-9)


def test_sample_size_for_the_worked_example() -> None:
    # 0.2% -> 0.455% at one-sided 5%, 80% power: the worked example's 9,000 per window is enough
    n = n_per_arm(0.002, 0.00255, 0.05, 0.8)
    assert 5000 < n < 9000
    with pytest.raises(ValueError):
        n_per_arm(0.002, 0.0, 0.05, 0.8)
