"""Calibrated rates: people's audit labels correct the judge's error. Pure.

Prediction-powered inference (Angelopoulos et al., Science 2023; PPI++, 2024) for the design
tracejury runs, which is **two-phase sampling**:

1. a batch draws trace ``i`` with probability ``p_i`` (weight ``w_i = 1/p_i``); the judge gives
   every drawn trace a verdict ``g_i`` (1 = failed);
2. escalation audits each scored judgment with probability ``a`` (the rubric's
   ``audit_rate``, hashed from the trace), so trace ``i`` is audited with probability
   ``p_i·a`` (weight ``v_i = 1/(p_i a)``), and a person labels it: ``h_i``.

The labelled set ``A`` is nested in the judged sample ``S`` (PPI's unlabelled set is
independent of its labelled one; here it contains it). The estimator and its linearization
variance::

    θ = λ·G + R                G = Σ_S w g / Σ_S w        R = Σ_A v (h − λg) / Σ_A v
    V = λ²·V_S[g] + 2λ·C + V_A[r]
        V_S[g] = Σ_S w²(g − G)² / (Σ_S w)²              (the judge's sampling variance)
        V_A[r] = Σ_A v²(r − R)² / (Σ_A v)²              (the labels' variance; r = h − λg)
        C      = f · Σ_A v²(g − ḡ)(r − R) / (Σ_A v)²,   f = n_A / n_S
                                                       (the phase-1 covariance of g and r)

``λ`` (PPI++'s power tuning) minimises ``V``: ``λ = s_gh (1 − f) / (V_S[g] + s_gg (1 − 2f))``
with ``s`` the ``v²``-weighted moments on ``A`` — without weights, the regression slope of
``h`` on ``g`` — clipped to [0, 1]. ``λ = 1`` is plain PPI; ``λ = 0`` is the human-only
estimate on the labels (variance ``V_A[h]``), so a useless judge costs nothing but the
labels. The interval is valid whatever the judge's error: a judge that misses half the
failures moves ``G`` and the correction ``R`` moves it back, and ``V_A[r]`` grows with
the disagreement.

Verdicts and labels are binary, so an arm's audit is four cells ``(g, h)``, each with its
count, ``Σv`` and ``Σv²``: additive across segments and windows like the rest of an arm.
The judge side needs only what an arm already holds: ``n``, ``Σw``, ``Σw·g``, ``Σw²``,
``Σw²·g``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MIN_FAILED_LABELS", "NO_AUDIT", "PSEUDO", "AuditCells", "Calibrated", "JudgeSums", "ppi"]


@dataclass(frozen=True)
class AuditCells:
    """Labelled audit items of an arm, per cell ``2·g + h`` (g: the judge failed the trace, h:
    the person did): count, Σv and Σv² with v = 1/(batch p × audit p)."""

    n: tuple[int, int, int, int] = (0, 0, 0, 0)
    w: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    w2: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    @property
    def labelled(self) -> int:
        """How many audit labels."""
        return sum(self.n)

    @property
    def failed(self) -> int:
        """How many of them people failed."""
        return self.n[1] + self.n[3]

    def __add__(self, other: AuditCells) -> AuditCells:
        return AuditCells(
            tuple(a + b for a, b in zip(self.n, other.n, strict=True)),  # type: ignore[arg-type]
            tuple(a + b for a, b in zip(self.w, other.w, strict=True)),  # type: ignore[arg-type]
            tuple(a + b for a, b in zip(self.w2, other.w2, strict=True)),  # type: ignore[arg-type]
        )

    @classmethod
    def of(cls, items: Iterable[tuple[bool, bool, float]]) -> AuditCells:
        """From (judge failed, human failed, v) per labelled item (tests, simulations)."""
        return cls.grouped((g, h, 1, v, v * v) for g, h, v in items)

    @classmethod
    def grouped(cls, groups: Iterable[tuple[bool, bool, int, float, float]]) -> AuditCells:
        """From (judge failed, human failed, count, Σv, Σv²) per group of items (SQL rows)."""
        n, w, w2 = [0] * 4, [0.0] * 4, [0.0] * 4
        for g, h, count, v, v2 in groups:
            c = 2 * int(g) + int(h)
            n[c] += count
            w[c] += v
            w2[c] += v2
        return cls(tuple(n), tuple(w), tuple(w2))  # type: ignore[arg-type]

    def as_list(self) -> list[list[float]]:
        """JSON shape: ``[[n, Σv, Σv²] per cell (g,h) = 00, 01, 10, 11]``."""
        return [[self.n[c], self.w[c], self.w2[c]] for c in range(4)]

    @classmethod
    def from_list(cls, cells: list[list[float]]) -> AuditCells:
        """The inverse of ``as_list`` (replaying stored inputs)."""
        return cls(tuple(int(c[0]) for c in cells), tuple(float(c[1]) for c in cells),  # type: ignore[arg-type]
                   tuple(float(c[2]) for c in cells))  # type: ignore[arg-type]  # fmt: skip


NO_AUDIT = AuditCells()


@dataclass(frozen=True)
class JudgeSums:
    """The judge's verdicts over the sample S: n, Σw, Σw·g, Σw², Σw²·g."""

    n: int
    w: float
    wg: float
    w2: float
    w2g: float

    @property
    def rate(self) -> float:
        return self.wg / self.w if self.w > 0 else 0.0

    @property
    def variance(self) -> float:
        """V_S[g] = Σw²(g − G)²/(Σw)² (Hajek linearization)."""
        if self.w <= 0:
            return 0.0
        g = self.rate
        return max(((1.0 - 2.0 * g) * self.w2g + g * g * self.w2) / self.w**2, 0.0)


@dataclass(frozen=True)
class Calibrated:
    """A calibrated rate and what it rests on."""

    rate: float
    """The estimate, clipped to [0, 1]."""
    variance: float
    judge_rate: float
    """The judge's rate over the sample (G)."""
    human_rate: float
    """The labels' rate on the audit (the human-only estimate)."""
    lam: float
    """The power-tuning parameter used."""
    labelled: int
    sample_n: int
    estimate: float
    """The estimate before clipping (θ)."""

    @property
    def effective_n(self) -> float:
        """``p(1 − p)/V``: the n of an unweighted, perfectly labelled sample as precise,
        capped at the sample's n. The rate is held off 0 and 1 by half a label so a
        correction of everything to 0 still carries its variance."""
        if self.variance <= 0:
            return float(self.sample_n)
        floor = 0.5 / max(self.labelled, 1)
        p = min(max(self.rate, floor), 1.0 - floor)
        return min(p * (1.0 - p) / self.variance, float(self.sample_n))

    def wilson(self, confidence: float = 0.95) -> tuple[float, float]:
        """The Wilson interval at the effective n: what gates compare (``core.stats.wilson``).
        It covers better than the normal one when a few labelled failures carry the
        correction (the estimate and its variance move together)."""
        from tracejury.core.stats import wilson

        n = self.effective_n
        return wilson(self.rate * n, n, 1.0 - confidence)

    def interval(self, z: float = 1.959963984540054) -> tuple[float, float]:
        """The normal interval ``θ ± z√V``, clipped to [0, 1] (PPI's; ``wilson`` is reported)."""
        half = z * math.sqrt(self.variance)
        return max(self.estimate - half, 0.0), min(self.estimate + half, 1.0)


def _padded(audit: AuditCells, pseudo: float) -> AuditCells:
    """The audit with ``pseudo`` observations (at the mean v) added to each disagreement cell."""
    if pseudo <= 0 or audit.labelled == 0:
        return audit
    v = sum(audit.w) / audit.labelled
    n, w, w2 = list(audit.n), list(audit.w), list(audit.w2)
    for c in (1, 2):  # (g, h) = (0, 1) and (1, 0)
        w[c] += pseudo * v
        w2[c] += pseudo * v * v
    return AuditCells(tuple(n), tuple(w), tuple(w2))  # type: ignore[arg-type]


def _moments(audit: AuditCells) -> tuple[float, float, float, float, float, float]:
    """(ḡ, h̄, s_gg, s_gh, s_hh, Σv) on the audit: v-weighted means, v²-weighted moments."""
    total = sum(audit.w)
    if total <= 0:
        return 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    cells = [(c >> 1, c & 1) for c in range(4)]
    gbar = sum(audit.w[c] * g for c, (g, _) in enumerate(cells)) / total
    hbar = sum(audit.w[c] * h for c, (_, h) in enumerate(cells)) / total
    s = [0.0, 0.0, 0.0]
    for c, (g, h) in enumerate(cells):
        dg, dh = g - gbar, h - hbar
        s[0] += audit.w2[c] * dg * dg
        s[1] += audit.w2[c] * dg * dh
        s[2] += audit.w2[c] * dh * dh
    t2 = total * total
    return gbar, hbar, s[0] / t2, s[1] / t2, s[2] / t2, total


PSEUDO = 0.5
"""Observations added to each disagreement cell for the variance (not the estimate): half a
label, the same half label ``Calibrated.effective_n`` holds the rate off 0 and 1 by (with a
quarter, labels holding no failure gave twice their count in effective n, and A/A runs
blocked: ``bench/calibration_sim.py``)."""
MIN_FAILED_LABELS = 5
"""A segment group is calibrated by its own audit labels only when people failed at least this
many of them; else by its arm's pooled labels: a correction carried by one or two failures
moves with them (a group whose labels hold no failure would claim a rate of 0)."""


def ppi(judge: JudgeSums, audit: AuditCells, *, lam: float | None = None, drawn_from: int | None = None,
        pseudo: float = PSEUDO) -> Calibrated:  # fmt: skip
    """The calibrated rate of ``judge``'s sample from ``audit``'s labels (module docstring).

    ``lam`` fixes the power-tuning parameter (None: the variance-minimising one, clipped to
    [0, 1]). ``drawn_from`` is the n of the sample the audit was drawn from when it is not
    ``judge``'s (a part of an arm, or a group calibrated with its arm's pooled labels).

    ``pseudo``: the moments behind λ and the variance count ``pseudo`` extra observations in
    each disagreement cell (a continuity correction): 40 labels that happen to
    hold no disagreement — common when failures are rare — would otherwise say the judge is
    exact (a label variance of 0) and the rate known to the last trace. The estimate uses the
    labels as they are."""
    n_a = audit.labelled
    if n_a == 0:
        raise ValueError("calibration needs at least one audit label")
    n_s = drawn_from if drawn_from is not None else judge.n
    f = min(n_a / n_s, 1.0) if n_s > 0 else 1.0
    gbar, hbar = _moments(audit)[:2]
    _, _, s_gg, s_gh, s_hh, _ = _moments(_padded(audit, pseudo))
    v_s = judge.variance
    if lam is None:
        denom = v_s + s_gg * (1.0 - 2.0 * f)
        lam = min(max(s_gh * (1.0 - f) / denom, 0.0), 1.0) if denom > 0 else 0.0
    g_rate = judge.rate
    resid = hbar - lam * gbar
    # V_A[r] and C from the moments: r − R = (h − h̄) − λ(g − ḡ)
    v_r = s_hh - 2.0 * lam * s_gh + lam * lam * s_gg
    cov = f * (s_gh - lam * s_gg)
    variance = max(lam * lam * v_s + 2.0 * lam * cov + v_r, 0.0)
    estimate = lam * g_rate + resid
    return Calibrated(min(max(estimate, 0.0), 1.0), variance, g_rate, hbar, lam, n_a, judge.n, estimate)
