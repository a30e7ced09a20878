"""What changed between two releases: config fields that differ, and the rates that moved
most, ranked by evidence (the one-sided p-value of the move), so a blocked gate comes with
actionable hypotheses.

Rates are ``Arm``s, as in gates: a weak signal counts every trace (weight 1); an evaluator's
fail rate comes from sampled evaluations, so it is the Horvitz–Thompson ratio (Σ 1/p over
failed verdicts / Σ 1/p) with Kish's effective n — oversampling failures does not make a
release look worse.

An evaluator's rates are calibrated by people's audit labels (``tracejury.core.results``) when
both releases have enough of them for the group (its own, or its evaluator's pooled ones):
both arms or neither, since a calibrated rate against a judge-only one would compare people's
verdicts with the judge's error. The interval and p-value then rest on the calibrated
rates and effective n, as a calibrated gate's do."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tracejury.core.calibration import AuditCells
from tracejury.core.gates import Arm, calibrate
from tracejury.core.results import MIN_LABELS, label_source
from tracejury.core.stats import newcombe_diff, one_sided_p

__all__ = ["CONFIG_FIELDS", "ConfigChange", "Move", "calibrate_pair", "config_changes", "rank_moves", "unweighted"]

CONFIG_FIELDS = (
    "config.model.name", "config.model.version", "config.systemPromptVersion", "config.temperature",
    "config.maxTokens", "config.retryPolicyId", "config.toolSchemaVersion", "config.retrievalConfigVersion",
    "config.embeddingModelVersion", "config.judgeRubricVersion",
)  # fmt: skip
"""Versioned config fields compared between releases."""


def _get(doc: Mapping[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


@dataclass(frozen=True)
class ConfigChange:
    """A config field whose values differ between the releases (share of traces each)."""

    field: str
    baseline: dict[str, float]
    current: dict[str, float]


def config_changes(baseline: Iterable[Mapping[str, Any]], current: Iterable[Mapping[str, Any]]) -> list[ConfigChange]:
    """Fields of ``CONFIG_FIELDS`` whose value distribution differs."""
    base, cur = list(baseline), list(current)

    def shares(docs: list[Mapping[str, Any]], field: str) -> dict[str, float]:
        counts = Counter(str(_get(d, field)) for d in docs)
        return {k: v / len(docs) for k, v in counts.most_common()} if docs else {}

    out = []
    for field in CONFIG_FIELDS:
        b, c = shares(base, field), shares(cur, field)
        if set(b) != set(c):
            out.append(ConfigChange(field, b, c))
    return out


@dataclass(frozen=True)
class Move:
    """A rate that moved: what, where, from and to, and how strong the evidence is."""

    what: str
    segment: str
    baseline: tuple[int, int]
    """(failures, observations), unweighted."""
    current: tuple[int, int]
    direction: str
    p_value: float
    interval: tuple[float, float]
    baseline_rate: float = 0.0
    """The baseline's rate, weighted (Horvitz–Thompson) when its observations are sampled,
    calibrated when ``calibrated``."""
    current_rate: float = 0.0
    calibrated: bool = False
    """Both rates are calibrated by audit labels (``calibrate_pair``)."""
    judge_baseline_rate: float = 0.0
    """The judge's (uncalibrated) baseline rate; the rate itself when not ``calibrated``."""
    judge_current_rate: float = 0.0

    @property
    def delta(self) -> float:
        """current rate − baseline rate (weighted)."""
        return self.current_rate - self.baseline_rate


def unweighted(count: int, n: int) -> Arm:
    """An arm of ``n`` observations of weight 1 (a weak signal over every trace)."""
    return Arm(count, n, float(count), float(n), float(n))


def calibrate_pair(base: Arm, cur: Arm, pooled_base: tuple[AuditCells, int], pooled_cur: tuple[AuditCells, int],
                   min_labels: int = MIN_LABELS) -> tuple[Arm, Arm]:  # fmt: skip
    """Both arms calibrated when each has a label source (``core.results.label_source``:
    its own labels, else its release's pooled ones for the evaluator), else both as given.
    When either arm borrows the pooled labels, both do (as gates: one arm on its own
    correction and the other on the pooled one would show the judge's segment-specific
    error as a move)."""
    sb, sc = label_source(base, pooled_base, min_labels), label_source(cur, pooled_cur, min_labels)
    if sb is None or sc is None:
        return base, cur
    if "pooled" in (sb[2], sc[2]):
        sb, sc = (*pooled_base, "pooled"), (*pooled_cur, "pooled")
    return calibrate(base, sb), calibrate(cur, sc)


def _evidence(arm: Arm) -> tuple[float, float]:
    """(count, n) the interval uses: the counts themselves when every weight is 1 and the
    rate is the judge's, else the rate × the effective n (as gates compare arms)."""
    if arm.calibrated is None and arm.weight_sum == arm.n and arm.weight_sq == arm.n:
        return arm.failures, arm.n
    return arm.rate * arm.effective_n, arm.effective_n


def rank_moves(rates: Iterable[tuple[str, str, Arm, Arm]], *, top: int = 15) -> list[Move]:
    """Rank (what, segment, baseline arm, current arm) by the one-sided p-value of a move in
    either direction (95% Newcombe interval of the difference kept)."""
    moves = []
    for what, segment, base, cur in rates:
        if base.n == 0 or cur.n == 0:
            continue
        (cb, nb), (cc, nc) = _evidence(base), _evidence(cur)
        up, down = one_sided_p(cc, nc, cb, nb, 0.0), one_sided_p(cb, nb, cc, nc, 0.0)
        p, direction = (up, "up") if up <= down else (down, "down")
        calibrated = base.calibrated is not None and cur.calibrated is not None
        moves.append(Move(what, segment, (base.failures, base.n), (cur.failures, cur.n), direction, p,
                          newcombe_diff(cc, nc, cb, nb, 0.05), base.rate, cur.rate, calibrated,
                          base.judge_rate, cur.judge_rate))  # fmt: skip
    moves.sort(key=lambda m: (m.p_value, -abs(m.delta)))
    return moves[:top]
