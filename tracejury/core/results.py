"""Per-segment results of a batch: failure rates weighted by inverse inclusion probability.

With failure-aware sampling, a failing trace is more likely to be judged; weighting each
evaluation by ``1/p_i`` (Horvitz–Thompson) undoes that, so the weighted fail rate estimates
the release's fail rate. Judge failures, not-applicable and missing-evidence results are
counted, never folded into the rate.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tracejury.core.segments import project_key

__all__ = ["SegmentResult", "summarise"]


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
