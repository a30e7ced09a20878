"""Failure-aware Poisson sampling with deterministic draws and stored inclusion probabilities.

Each trace i is kept independently with probability ``p_i = min(1, base_rate * weight_i)``;
``weight_i`` multiplies the configured factor of every failure signal the trace shows. The
draw is ``sha256(domain | config version | seed | trace id)`` mapped to [0, 1), so every rerun
and every worker decides the same. ``p_i`` is stored with each sampled trace so estimates can
weight by ``1 / p_i``; traces not sampled still count in the denominators through it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tracejury.core.yamlconf import load_model

__all__ = [
    "SIGNALS",
    "SampleDraw",
    "SamplingConfig",
    "TraceSignals",
    "base_rate_for",
    "default_sampling",
    "draw",
    "inclusion_probability",
    "sample",
]

DOMAIN = "tracejury.sample"
SIGNALS = ("latency_above_p95", "truncated", "tool_failed", "retrieval_empty", "retrieval_low",
           "negative_feedback", "fallback_used")  # fmt: skip


class SamplingConfig(BaseModel):
    """Versioned weights of the failure signals."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(min_length=1)
    """Stored with every batch; part of the draw's hash input."""
    weights: dict[str, float] = {}
    """Signal name → multiplier (>= 1); signals not listed weigh 1."""
    max_weight: float = Field(default=50.0, ge=1.0)
    """Cap on the product, so one trace never dominates the estimate's variance."""

    @field_validator("weights")
    @classmethod
    def _known(cls, weights: dict[str, float]) -> dict[str, float]:
        for name, w in weights.items():
            if name not in SIGNALS:
                raise ValueError(f"unknown signal {name!r} (known: {', '.join(SIGNALS)})")
            if w < 1:
                raise ValueError(f"weight of {name} must be >= 1, got {w}")
        return weights

    @classmethod
    def from_yaml(cls, text: str, *, file: str = "<sampling>") -> SamplingConfig:
        """Parse YAML; errors name file, line and field."""
        return load_model(cls, text, file=file)


@cache
def default_sampling() -> SamplingConfig:
    """The shipped default (``defaults/sampling.yaml``)."""
    text = resources.files("tracejury.core").joinpath("defaults/sampling.yaml").read_text()
    return SamplingConfig.from_yaml(text, file="tracejury/core/defaults/sampling.yaml")


@dataclass(frozen=True, slots=True)
class TraceSignals:
    """The failure signals of one trace (from the store's weak-signal columns)."""

    trace_id: str
    latency_above_p95: bool = False
    truncated: bool = False
    tool_failed: bool = False
    retrieval_empty: bool = False
    retrieval_low: bool = False
    negative_feedback: bool = False
    fallback_used: bool = False

    def weight(self, config: SamplingConfig) -> float:
        """Product of the multipliers of the signals present, capped."""
        w = 1.0
        for name, factor in config.weights.items():
            if getattr(self, name):
                w *= factor
        return min(w, config.max_weight)


def draw(trace_id: str, config_version: str, seed: int) -> float:
    """The trace's uniform draw in [0, 1): the same on every worker and rerun."""
    digest = hashlib.sha256(f"{DOMAIN}|{config_version}|{seed}|{trace_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def inclusion_probability(weight: float, base_rate: float) -> float:
    """``min(1, base_rate * weight)``."""
    return min(1.0, base_rate * weight)


def base_rate_for(weights: Sequence[float], target: float) -> float:
    """The base rate whose expected sample size ``sum(min(1, r * w_i))`` equals ``target``
    (bisection; the sum is monotone in r). A target at or above the population gives 1/min w."""
    if target <= 0 or not weights:
        return 0.0
    if target >= len(weights):
        return 1.0 / min(weights)
    counts = Counter(weights)  # few distinct weights: sum over them, not over every trace
    lo, hi = 0.0, 1.0 / min(weights)
    for _ in range(100):
        mid = (lo + hi) / 2
        if sum(n * min(1.0, mid * w) for w, n in counts.items()) < target:
            lo = mid
        else:
            hi = mid
    return hi


@dataclass(frozen=True, slots=True)
class SampleDraw:
    """One sampled trace and its inclusion probability."""

    trace_id: str
    probability: float


def sample(
    traces: Iterable[TraceSignals],
    config: SamplingConfig,
    *,
    seed: int,
    target_size: float,
) -> tuple[list[SampleDraw], float]:
    """Poisson-sample traces for an expected ``target_size``; returns (sampled, base rate)."""
    traces = list(traces)
    weights = [t.weight(config) for t in traces]
    rate = base_rate_for(weights, target_size)
    picked = []
    for t, w in zip(traces, weights, strict=True):
        p = inclusion_probability(w, rate)
        if p > 0 and draw(t.trace_id, config.version, seed) < p:
            picked.append(SampleDraw(t.trace_id, p))
    return picked, rate
