"""Per-segment results of a batch: failure rates weighted by inverse inclusion probability,
and the same rates calibrated by people's audit labels where there are enough of them.

With failure-aware sampling, a failing trace is more likely to be judged; weighting each
evaluation by ``1/p_i`` (Horvitz–Thompson) undoes that, so the weighted fail rate estimates
the release's fail rate. Judge failures, not-applicable and missing-evidence results are
counted, never folded into the rate.

The weighted rate is the judge's: if the judge misses failures, so does the rate. Where the
review queue audited the rubric version's judgments (``tracejury.core.calibration``), the
labels correct it. A group with ``MIN_LABELS`` audit labels of its own is calibrated by them
(strata ``group``); a group with fewer borrows the correction pooled over its evaluator's
groups (strata ``pooled``) when the pool holds ``MIN_LABELS``; else it stays judge-only. The
judge side of a calibration is the rate as gates count it (``tracejury.core.gates.Arm``): a
reviewer's label replaces the verdict of a trace escalated for a reason other than the audit
alone, as the audit's cells do — the predictor the labels correct is the same on both sides.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from tracejury.core.calibration import MIN_FAILED_LABELS, NO_AUDIT, AuditCells, Calibrated
from tracejury.core.gate_spec import Calibration
from tracejury.core.gates import Arm, add_arms, calibrate
from tracejury.core.segments import project_key

__all__ = [
    "MIN_LABELS",
    "LabelSource",
    "SegmentResult",
    "calibrated_json",
    "group_arms",
    "label_source",
    "pooled_labels",
    "summarise",
    "with_calibration",
]

MIN_LABELS: int = Calibration().min_labels
"""Audit labels a group needs to be calibrated by its own (else it borrows its evaluator's
pooled correction, which needs as many): the default ``min_labels`` of a gate's
``calibration``, so ``batch results``, ``diff`` and a default calibrated gate agree."""

LabelSource = tuple[AuditCells, int, str]
"""The labels a calibration uses, the n of the sample they were drawn from, and ``group`` or
``pooled`` (as ``tracejury.core.gates.calibrate`` takes them)."""


@dataclass
class SegmentResult:
    """One evaluator in one segment group."""

    evaluator: str
    segment: str
    scored: int = 0
    failed: int = 0
    judge_failed: int = 0
    not_applicable: int = 0
    missing_evidence: int = 0
    weight_scored: float = 0.0
    weight_failed: float = 0.0
    labelled: int = 0
    """Audit labels of the batch's rubric version in the group."""
    calibrated: Calibrated | None = None
    """The calibrated rate, when the group's or the pooled labels suffice."""
    strata: str = ""
    """Where the calibration's labels came from: ``group`` or ``pooled``."""

    @property
    def fail_rate(self) -> float | None:
        """Unweighted share of scored verdicts that failed."""
        return self.failed / self.scored if self.scored else None

    @property
    def weighted_fail_rate(self) -> float | None:
        """Horvitz–Thompson (ratio) estimate of the fail rate."""
        return self.weight_failed / self.weight_scored if self.weight_scored else None

    def as_dict(self) -> dict[str, object]:
        """JSON shape."""
        return {
            "evaluator": self.evaluator, "segment": self.segment, "scored": self.scored,
            "failed": self.failed, "failRate": self.fail_rate,
            "weightedFailRate": self.weighted_fail_rate, "judgeFailed": self.judge_failed,
            "notApplicable": self.not_applicable, "missingEvidence": self.missing_evidence,
            "labelled": self.labelled,
            "calibrated": None if self.calibrated is None else calibrated_json(self.calibrated, self.strata),
        }  # fmt: skip


def calibrated_json(c: Calibrated, strata: str) -> dict[str, object]:
    """JSON shape of a calibrated rate: the estimate, its 95% interval, the labels it used
    (the pool's when ``strata`` is ``pooled``), PPI++'s λ, the labels' own rate, and the
    judge's rate it corrected."""
    return {
        "rate": c.rate, "interval95": list(c.wilson()), "labelled": c.labelled, "lambda": c.lam,
        "humanRate": c.human_rate, "judgeRate": c.judge_rate, "strata": strata,
    }  # fmt: skip


def summarise(rows: Iterable[tuple[str, str, str, bool | None, int, float]], by: Sequence[str]) -> list[SegmentResult]:
    """Fold (evaluator, segment key, status, passed, count, sum of 1/p) rows into groups."""
    out: dict[tuple[str, str], SegmentResult] = {}
    for evaluator, key, status, passed, n, weight in rows:
        group = project_key(key, by)
        r = out.setdefault((evaluator, group), SegmentResult(evaluator, group))
        if status == "scored":
            r.scored += n
            r.weight_scored += weight
            if passed is False:
                r.failed += n
                r.weight_failed += weight
        elif status == "judge_failed":
            r.judge_failed += n
        elif status == "not_applicable":
            r.not_applicable += n
        else:
            r.missing_evidence += n
    return [out[k] for k in sorted(out)]


_EMPTY = Arm(0, 0, 0.0, 0.0, 0.0, weight_sq_failed=0.0)


def group_arms(rates: Iterable[tuple[str, str, Arm]], by: Sequence[str]) -> dict[tuple[str, str], Arm]:
    """(evaluator, segment key, arm) summed per (evaluator, segment group of ``by``)."""
    out: dict[tuple[str, str], Arm] = {}
    for evaluator, key, arm in rates:
        group = (evaluator, project_key(key, by))
        out[group] = add_arms(out.get(group, _EMPTY), arm)
    return out


def pooled_labels(rates: Iterable[tuple[str, str, Arm]]) -> dict[str, tuple[AuditCells, int]]:
    """Per evaluator: its audit labels over all groups, and the n they were drawn from."""
    return {evaluator: (arm.audit, arm.n) for (evaluator, _), arm in group_arms(rates, []).items()}


def label_source(arm: Arm, pooled: tuple[AuditCells, int], min_labels: int = MIN_LABELS) -> LabelSource | None:
    """The labels a group is calibrated by: its own when it holds ``min_labels``, else its
    evaluator's pooled ones when they do, else None (judge-only)."""
    if arm.n == 0:
        return None
    if arm.audit.labelled >= min_labels and arm.audit.failed >= MIN_FAILED_LABELS:
        return arm.audit, arm.n, "group"
    if pooled[0].labelled >= min_labels:
        return pooled[0], pooled[1], "pooled"
    return None


def with_calibration(results: Sequence[SegmentResult], rates: Sequence[tuple[str, str, Arm]], by: Sequence[str],
                     min_labels: int = MIN_LABELS) -> list[SegmentResult]:  # fmt: skip
    """``results`` with each group's audit label count and, where ``label_source`` finds
    enough labels, its calibrated rate; ``rates`` are the batch's arms per (evaluator,
    segment key) with their audit cells, counted as gates count them."""
    arms = group_arms(rates, by)
    pooled = pooled_labels(rates)
    out = []
    for r in results:
        arm = arms.get((r.evaluator, r.segment))
        if arm is None:
            out.append(r)
            continue
        source = label_source(arm, pooled.get(r.evaluator, (NO_AUDIT, 0)), min_labels)
        calibrated = calibrate(arm, source).calibrated if source is not None else None
        out.append(replace(r, labelled=arm.audit.labelled, calibrated=calibrated,
                           strata=source[2] if source is not None and calibrated is not None else ""))  # fmt: skip
    return out
