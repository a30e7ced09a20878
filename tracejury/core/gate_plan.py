"""Sample planning for gates: how many effective evaluations a gate needs to decide, the
smallest rise it can catch with what it has, and the sampling rate that gives every
segment group its need. Pure arithmetic (normal approximation of the one-sided test the
gate runs: H0 "the rise is within the margin", at the gate's level corrected for its
segment groups by Bonferroni's bound — Holm's first step).

For a rise from ``p0`` to ``p1 = p0 + mde`` beyond the margin ``m``, per arm:

    n = ( (z_{1−α/k} + z_{power}) · √(p0(1−p0) + p1(1−p1)) / (mde − m) )²

(``p1(1−p1)`` alone for a threshold baseline). 3% → 6%, margin 0.01, α 0.05 over 4 groups,
power 0.9: 2,653 per arm.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import TYPE_CHECKING

from tracejury.core.gate_spec import GateSpec

if TYPE_CHECKING:
    from tracejury.core.gates import SegmentInputs

__all__ = [
    "NEVER",
    "detectable_rise",
    "expected_effective_n",
    "needed_n",
    "plan_segment",
    "rate_for_needs",
]

_NORMAL = NormalDist()
NEVER = 10**9
"""``needed_n`` of a rise the gate can never block (within its margin)."""


def _z(spec: GateSpec, family: int, power: float) -> float:
    alpha = spec.alpha / max(1, family) if spec.correction != "none" else spec.alpha
    return _NORMAL.inv_cdf(1.0 - alpha) + _NORMAL.inv_cdf(power)


def _sd(spec: GateSpec, p0: float, p1: float) -> float:
    if spec.baseline.kind == "threshold":
        return math.sqrt(p1 * (1.0 - p1))
    return math.sqrt(p0 * (1.0 - p0) + p1 * (1.0 - p1))


def needed_n(spec: GateSpec, p0: float, mde: float, power: float, family: int = 1) -> int:
    """Effective evaluations per arm to block a rise of ``mde`` over ``p0`` with ``power``
    (``NEVER`` when the rise is within the gate's margin)."""
    p0 = min(max(p0, 0.0), 1.0)
    p1 = min(1.0, p0 + mde) if spec.direction == "increase" else max(0.0, p0 - mde)
    beyond = abs(p1 - p0) - spec.margin.of(p0)
    if beyond <= 0:
        return NEVER
    sd = max(_sd(spec, p0, p1), 1e-9)
    return min(NEVER, math.ceil((_z(spec, family, power) * sd / beyond) ** 2))


def detectable_rise(spec: GateSpec, p0: float, n: float, power: float, family: int = 1) -> float | None:
    """The smallest rise over ``p0`` blocked with ``power`` at ``n`` effective evaluations
    per arm (bisection on ``needed_n``); None when no rise up to the whole scale is."""
    if n <= 0:
        return None
    top = (1.0 - p0) if spec.direction == "increase" else p0
    if top <= 0 or needed_n(spec, p0, top, power, family) > n:
        return None
    lo, hi = 0.0, top
    for _ in range(60):
        mid = (lo + hi) / 2
        if needed_n(spec, p0, mid, power, family) <= n:
            hi = mid
        else:
            lo = mid
    return hi


def expected_effective_n(probabilities: Sequence[float]) -> float:
    """Kish's effective n a Poisson sample with these inclusion probabilities gives, in
    expectation: ``N² / Σ 1/p`` (``Σw → N``, ``Σw² → Σ 1/p``)."""
    inv = sum(1.0 / p for p in probabilities if p > 0)
    return len(probabilities) ** 2 / inv if inv > 0 and all(p > 0 for p in probabilities) else 0.0


def rate_for_needs(weights: Mapping[str, Sequence[float]], needs: Mapping[str, int]) -> float | None:
    """The smallest base rate ``r`` of failure-aware sampling (``p = min(1, r·w)``) at which
    every group's expected effective n reaches its need; None when even ``p = 1`` for
    every trace does not (the group has too little traffic)."""
    groups = [g for g in needs if weights.get(g)]
    if not groups:
        return None
    counts = {g: Counter(weights[g]) for g in groups}  # few distinct weights: sum over them

    def enough(r: float) -> bool:
        for g in groups:
            n = sum(counts[g].values())
            inv = sum(k / min(1.0, r * w) for w, k in counts[g].items())
            if n * n / inv < needs[g]:
                return False
        return True

    top = 1.0 / min(min(counts[g]) for g in groups)
    if not enough(top):
        return None
    lo, hi = 0.0, top
    for _ in range(60):
        mid = (lo + hi) / 2
        if enough(mid):
            hi = mid
        else:
            lo = mid
    return hi


def plan_segment(spec: GateSpec, seg: SegmentInputs, family: int) -> dict[str, object]:
    """What one segment group needs, what the data gives, and the verdict it can reach:
    ``decides`` (a pass or a block is possible) or ``insufficient_data`` (short by how many
    effective evaluations, and about how many more sampled ones at this sample's design
    effect). Signal gates count per window of traffic (the newest complete window)."""
    from tracejury.core.gates import EMPTY, baseline_rate

    need = spec.required_samples(max(baseline_rate(spec, seg.baseline), seg.baseline.judge_rate), family)
    if spec.sampled:
        cur = seg.current or EMPTY
        base = seg.baseline
    else:
        cur = seg.windows[-1].arm if seg.windows else EMPTY
        base = (seg.windows[-1].baseline or seg.baseline) if seg.windows else seg.baseline
    threshold = spec.baseline.kind == "threshold"
    have = cur.effective_n if threshold else min(cur.effective_n, base.effective_n)
    short = max(0.0, need - have)
    design_effect = cur.n / cur.effective_n if cur.effective_n > 0 else 1.0
    p0 = baseline_rate(spec, seg.baseline)
    power = spec.min_samples.power if not isinstance(spec.min_samples, int) else 0.8
    rise = detectable_rise(spec, p0, have, power, family)
    return {
        "segment": seg.segment or "(all)", "needed": need, "current": round(cur.effective_n, 1),
        "baseline": None if threshold else round(base.effective_n, 1), "baselineRate": p0,
        "verdict": "decides" if short == 0 else "insufficient_data",
        "shortBy": math.ceil(short),
        # signal gates count every trace: what they lack is traffic, not a bigger sample
        "moreSampled": math.ceil(short * design_effect) if spec.sampled else None,
        "detectableRise": rise, "power": power,
    }  # fmt: skip
