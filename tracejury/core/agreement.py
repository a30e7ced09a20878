"""Judge–human agreement: how far a rubric's judge can be trusted, from the review labels. Pure.

For every reviewed (trace, rubric) the newest human label is compared with the judge's label
on the evaluation that was escalated. Per rubric version: the confusion matrix (rows: the
judge's label, columns: the human's, in the rubric's label order), the observed agreement and
**Cohen's kappa**

    kappa = (p_o - p_e) / (1 - p_e),   p_e = sum_k (row_k / n) (col_k / n)

(undefined, None, when p_e = 1: both raters used one label only). Per segment: how often the
human label differs from the judge's (``errorRate``) and how often the pass/fail verdict
flips, with the same counts for audit-only items. Escalated items are chosen *because* the
judge looked shaky, so their error rate overstates the judge's error on all traffic; items
whose only reason is ``audit`` are a random sample, and their rate is the unbiased one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracejury.core.segments import project_key

__all__ = ["SegmentErrors", "agreement", "cohens_kappa", "confusion_matrix"]


def confusion_matrix(pairs: Iterable[tuple[str, str]], labels: Sequence[str]) -> list[list[int]]:
    """Counts of (judge label, human label) pairs: ``m[i][j]`` = judge said ``labels[i]``
    and the human ``labels[j]``. A label outside ``labels`` is a ``ValueError``."""
    index = {label: i for i, label in enumerate(labels)}
    m = [[0] * len(labels) for _ in labels]
    for judge, human in pairs:
        if judge not in index or human not in index:
            raise ValueError(f"label {judge if judge not in index else human!r} is not one of {list(labels)}")
        m[index[judge]][index[human]] += 1
    return m


def cohens_kappa(matrix: Sequence[Sequence[int]]) -> float | None:
    """Cohen's kappa of a square confusion matrix; None when it is undefined (no pairs, or
    chance agreement is 1)."""
    n = sum(sum(row) for row in matrix)
    if n == 0:
        return None
    k = len(matrix)
    p_o = sum(matrix[i][i] for i in range(k)) / n
    rows = [sum(matrix[i]) / n for i in range(k)]
    cols = [sum(matrix[i][j] for i in range(k)) / n for j in range(k)]
    p_e = sum(r * c for r, c in zip(rows, cols, strict=True))
    if p_e >= 1.0:
        return None
    return (p_o - p_e) / (1.0 - p_e)


@dataclass
class SegmentErrors:
    """The judge's disagreements with people in one segment group."""

    segment: str
    n: int = 0
    """Reviewed items where the judge gave a verdict."""
    disagree: int = 0
    """Of those, where the newest human label differs from the judge's label."""
    verdict_flips: int = 0
    """Where the human's pass/fail differs from the judge's."""
    audit_n: int = 0
    """Items escalated for audit only (a random sample)."""
    audit_disagree: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON shape."""
        return {
            "segment": self.segment, "n": self.n, "disagree": self.disagree,
            "errorRate": self.disagree / self.n if self.n else None, "verdictFlips": self.verdict_flips,
            "auditN": self.audit_n, "auditDisagree": self.audit_disagree,
            "auditErrorRate": self.audit_disagree / self.audit_n if self.audit_n else None,
        }  # fmt: skip


@dataclass
class _Version:
    rubric: str
    version: str
    labels: list[str]
    pairs: list[tuple[str, str]] = field(default_factory=list)
    judge_failed: int = 0
    flips: int = 0
    segments: dict[str, SegmentErrors] = field(default_factory=dict)


def agreement(rows: Iterable[Mapping[str, Any]], by: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Fold reviewed items (``tracejury.store.agreement.labelled_pairs`` rows: ``rubric``,
    ``rubricVersion``, ``labels``, ``segment``, ``reasons``, ``judgeStatus``, ``judgeLabel``,
    ``judgePassed``, ``humanLabel``, ``humanPassed``) into one report per rubric version.

    ``by`` groups segments by these dimensions (empty: the whole segment key). Items whose
    judge gave no verdict count in ``judgeFailed`` and nowhere else.
    """
    versions: dict[tuple[str, str], _Version] = {}
    for r in rows:
        key = (r["rubric"], r["rubricVersion"])
        v = versions.setdefault(key, _Version(key[0], key[1], list(r.get("labels") or [])))
        if r["judgeStatus"] != "scored" or r["judgeLabel"] is None:
            v.judge_failed += 1
            continue
        for label in (r["judgeLabel"], r["humanLabel"]):
            if label not in v.labels:  # a label the snapshot does not list still counts
                v.labels.append(label)
        v.pairs.append((r["judgeLabel"], r["humanLabel"]))
        flip = r["judgePassed"] != r["humanPassed"]
        v.flips += flip
        group = project_key(r["segment"], by) if by else r["segment"]
        s = v.segments.setdefault(group, SegmentErrors(group))
        wrong = r["judgeLabel"] != r["humanLabel"]
        s.n += 1
        s.disagree += wrong
        s.verdict_flips += flip
        if list(r["reasons"]) == ["audit"]:
            s.audit_n += 1
            s.audit_disagree += wrong
    out = []
    for (rubric, version), v in sorted(versions.items()):
        matrix = confusion_matrix(v.pairs, v.labels)
        n = len(v.pairs)
        segments = sorted(v.segments.values(), key=lambda s: (-(s.disagree / s.n), -s.n, s.segment))
        out.append({
            "rubric": rubric, "rubricVersion": version, "labels": v.labels, "n": n,
            "judgeFailed": v.judge_failed, "matrix": matrix,
            "observedAgreement": sum(matrix[i][i] for i in range(len(matrix))) / n if n else None,
            "kappa": cohens_kappa(matrix), "verdictFlips": v.flips,
            "segments": [s.as_dict() for s in segments],
        })  # fmt: skip
    return out
