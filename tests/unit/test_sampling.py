"""Sampling: deterministic draws, solved base rate, unbiased Horvitz-Thompson estimates."""

from __future__ import annotations

import random
import statistics

import pytest

from tracejury.core.errors import ConfigError
from tracejury.core.sampling import (
    SamplingConfig,
    TraceSignals,
    base_rate_for,
    default_sampling,
    draw,
    sample,
)

CONFIG = default_sampling()


def _population(n: int, seed: int = 1) -> list[TraceSignals]:
    r = random.Random(seed)
    return [
        TraceSignals(f"tr_{i}", truncated=r.random() < 0.05, tool_failed=r.random() < 0.02,
                     negative_feedback=r.random() < 0.03)
        for i in range(n)
    ]  # fmt: skip


def test_draw_is_deterministic_and_uniform() -> None:
    assert draw("tr_1", "v1", 7) == draw("tr_1", "v1", 7)
    assert draw("tr_1", "v1", 7) != draw("tr_1", "v1", 8)
    assert draw("tr_1", "v1", 7) != draw("tr_1", "v2", 7)
    values = [draw(f"tr_{i}", "v1", 0) for i in range(20000)]
    assert min(values) >= 0 and max(values) < 1
    assert abs(statistics.mean(values) - 0.5) < 0.01


def test_weights_multiply_and_cap() -> None:
    assert TraceSignals("a").weight(CONFIG) == 1
    assert TraceSignals("a", truncated=True, tool_failed=True).weight(CONFIG) == pytest.approx(1.7 * 2.2)
    everything = TraceSignals("a", True, True, True, True, True, True, True)
    assert everything.weight(CONFIG) == CONFIG.max_weight


def test_base_rate_hits_the_target() -> None:
    weights = [t.weight(CONFIG) for t in _population(50000)]
    rate = base_rate_for(weights, 1000)
    assert sum(min(1, rate * w) for w in weights) == pytest.approx(1000, rel=1e-6)
    assert base_rate_for(weights, 10**9) == 1.0  # all of it: every p_i = 1
    assert base_rate_for(weights, 0) == 0.0


def test_sample_is_reproducible_and_oversamples_failures() -> None:
    population = _population(50000)
    a, rate = sample(population, CONFIG, seed=3, target_size=2000)
    b, _ = sample(population, CONFIG, seed=3, target_size=2000)
    assert a == b
    assert 1800 < len(a) < 2200
    picked = {d.trace_id for d in a}
    failing = [t for t in population if t.tool_failed]
    share_failing = sum(t.trace_id in picked for t in failing) / len(failing)
    share_clean = sum(t.trace_id in picked for t in population if t.weight(CONFIG) == 1) / sum(
        t.weight(CONFIG) == 1 for t in population
    )
    assert share_failing > 1.8 * share_clean  # tool failures weigh 2.2 (samp-v2)


def test_horvitz_thompson_is_unbiased_over_seeds() -> None:
    population = _population(20000, seed=5)
    truth = sum(t.truncated for t in population) / len(population)
    by_id = {t.trace_id: t for t in population}
    naive, weighted = [], []
    for seed in range(40):
        drawn, _ = sample(population, CONFIG, seed=seed, target_size=1000)
        naive.append(sum(by_id[d.trace_id].truncated for d in drawn) / len(drawn))
        total = sum(1 / d.probability for d in drawn)
        weighted.append(sum(by_id[d.trace_id].truncated / d.probability for d in drawn) / total)
    assert abs(statistics.mean(weighted) - truth) < 0.006
    assert statistics.mean(naive) > truth * 1.5  # unweighted, oversampling biases upward


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown signal 'slow'"):
        SamplingConfig.from_yaml("version: s\nweights: {slow: 2}\n")
    with pytest.raises(ConfigError, match="must be >= 1"):
        SamplingConfig.from_yaml("version: s\nweights: {truncated: 0.5}\n")
