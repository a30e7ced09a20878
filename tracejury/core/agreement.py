"""Judge–human agreement: how far a rubric's judge can be trusted, from the review labels. Pure.

For every reviewed (trace, rubric) the newest human label is compared with the judge's label
on the evaluation that was escalated. Per rubric version: the confusion matrix (rows: the
judge's label, columns: the human's, in the rubric's label order), the observed agreement and
**Cohen's kappa**

    kappa = (p_o - p_e) / (1 - p_e),   p_e = sum_k (row_k / n) (col_k / n)

(undefined, None, when p_e = 1: both raters used one label only). Per segment: how often the
human label differs from the judge's (``errorRate``) and how often the pass/fail verdict
flips. Escalated items are chosen *because* the judge looked shaky, so their error rate
overstates the judge's error on all traffic. The **audit** items — every item whose reasons
include ``audit``, shaky or not: the draw is a hash of the trace, independent of the
judgment — are a probability sample; weighted by 1/inclusion p (``weight``) their rates
estimate the judge's error on all scored traffic: ``audit`` per version holds the weighted
kappa, agreement, and the judge's miss rate (``failToPass``: of what people fail, the share
the judge passed) and false-alarm rate (``passToFail``), also per time window (``windows``,
by the judgment's time) to show a judge drifting.

``decide_agreement`` is the ``judge_agreement`` gate on those audit numbers, and
``apply_judge_floors`` makes a rubric's judged gates inconclusive when its judge is below
the floor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tracejury.core.gate_spec import GateSpec
from tracejury.core.gates import Outcome, empty_outcome
from tracejury.core.segments import project_key

__all__ = [
    "AuditAgreement",
    "SegmentErrors",
    "agreement",
    "apply_judge_floors",
    "audit_agreement",
    "cohens_kappa",
    "confusion_matrix",
    "decide_agreement",
]


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


def cohens_kappa(matrix: Sequence[Sequence[float]]) -> float | None:
    """Cohen's kappa of a square confusion matrix of counts or weights; None when it is
    undefined (no pairs, or chance agreement is 1: both raters used one and the same label)."""
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
    """Items the audit drew (a probability sample)."""
    audit_disagree: int = 0
    audit_weight: float = 0.0
    """Σ 1/inclusion p over the audit items."""
    audit_weight_disagree: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON shape (``auditErrorRate`` is 1/p-weighted)."""
        return {
            "segment": self.segment, "n": self.n, "disagree": self.disagree,
            "errorRate": self.disagree / self.n if self.n else None, "verdictFlips": self.verdict_flips,
            "auditN": self.audit_n, "auditDisagree": self.audit_disagree,
            "auditErrorRate": self.audit_weight_disagree / self.audit_weight if self.audit_weight else None,
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
    audit: list[Mapping[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class AuditAgreement:
    """A judge against people on one rubric version's audit labels, 1/p-weighted."""

    version: str
    labels: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]
    """Confusion matrix of counts (rows: the judge's label, columns: the person's)."""
    weights: tuple[tuple[float, ...], ...]
    """The same matrix, each item weighing 1/inclusion p."""
    fail_pass: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    """Weighted (judge failed & person failed, judge passed & person failed, judge failed &
    person passed, total): the miss and false-alarm rates' numerators and denominators."""

    @property
    def n(self) -> int:
        return sum(sum(row) for row in self.counts)

    @property
    def kappa(self) -> float | None:
        return cohens_kappa(self.weights)

    @property
    def observed(self) -> float | None:
        total = sum(sum(row) for row in self.weights)
        return sum(self.weights[i][i] for i in range(len(self.labels))) / total if total > 0 else None

    def as_dict(self) -> dict[str, Any]:
        """JSON shape."""
        both, missed, alarm, total = self.fail_pass
        failed = both + missed
        return {
            "version": self.version, "labels": list(self.labels), "n": self.n,
            "counts": [list(r) for r in self.counts], "weights": [list(r) for r in self.weights],
            "failPass": list(self.fail_pass), "kappa": self.kappa, "observedAgreement": self.observed,
            "failToPass": missed / failed if failed > 0 else None,
            "passToFail": alarm / (total - failed) if total - failed > 0 else None,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AuditAgreement:
        """The inverse of ``as_dict`` (replays)."""
        return cls(d["version"], tuple(d["labels"]), tuple(tuple(r) for r in d["counts"]),
                   tuple(tuple(r) for r in d["weights"]), tuple(d["failPass"]))  # type: ignore[arg-type]  # fmt: skip


def _is_audit(row: Mapping[str, Any]) -> bool:
    return "audit" in row["reasons"] and row["judgeStatus"] == "scored" and row["judgeLabel"] is not None


def audit_agreement(rows: Iterable[Mapping[str, Any]], labels: Sequence[str] = ()) -> AuditAgreement | None:
    """The weighted confusion matrix of audit rows of one rubric version (None: no audit row).
    ``labels`` orders the matrix; labels the rows use beyond it are appended."""
    audit = [r for r in rows if _is_audit(r)]
    if not audit:
        return None
    order = list(labels)
    for r in audit:
        for label in (r["judgeLabel"], r["humanLabel"]):
            if label not in order:
                order.append(label)
    index = {label: i for i, label in enumerate(order)}
    counts = [[0] * len(order) for _ in order]
    weights = [[0.0] * len(order) for _ in order]
    both = missed = alarm = total = 0.0
    for r in audit:
        i, j, v = index[r["judgeLabel"]], index[r["humanLabel"]], float(r.get("weight") or 1.0)
        counts[i][j] += 1
        weights[i][j] += v
        total += v
        if r["humanPassed"] is False:
            both += v if r["judgePassed"] is False else 0.0
            missed += v if r["judgePassed"] is not False else 0.0
        elif r["judgePassed"] is False:
            alarm += v
    return AuditAgreement(audit[0]["rubricVersion"], tuple(order), tuple(map(tuple, counts)),
                          tuple(map(tuple, weights)), (both, missed, alarm, total))  # type: ignore[arg-type]  # fmt: skip


def _window_start(ts: datetime, size: str) -> str:
    day = ts.date()
    if size == "week":
        day -= timedelta(days=day.weekday())
    return day.isoformat()


def agreement(rows: Iterable[Mapping[str, Any]], by: Sequence[str] = (), window: str | None = None
              ) -> list[dict[str, Any]]:  # fmt: skip
    """Fold reviewed items (``tracejury.store.agreement.labelled_pairs`` rows: ``rubric``,
    ``rubricVersion``, ``labels``, ``segment``, ``reasons``, ``judgeStatus``, ``judgeLabel``,
    ``judgePassed``, ``humanLabel``, ``humanPassed``, ``weight``, ``judgedAt``) into one report
    per rubric version.

    ``by`` groups segments by these dimensions (empty: the whole segment key). Items whose
    judge gave no verdict count in ``judgeFailed`` and nowhere else. ``window`` (``day`` or
    ``week``) adds the audit agreement per time window of the judgments.
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
        if "audit" in r["reasons"]:
            v.audit.append(r)
            s.audit_n += 1
            s.audit_disagree += wrong
            s.audit_weight += float(r.get("weight") or 1.0)
            s.audit_weight_disagree += float(r.get("weight") or 1.0) if wrong else 0.0
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
            "audit": _audit_dict(v, window),
        })  # fmt: skip
    return out


def _audit_dict(v: _Version, window: str | None) -> dict[str, Any] | None:
    found = audit_agreement(v.audit, v.labels)
    if found is None:
        return None
    out = found.as_dict()
    if window is not None:
        by_window: dict[str, list[Mapping[str, Any]]] = {}
        for r in v.audit:
            at = r.get("judgedAt")
            if at is not None:
                by_window.setdefault(_window_start(at, window), []).append(r)
        out["windows"] = []
        for start, items in sorted(by_window.items()):
            d = audit_agreement(items, v.labels).as_dict()  # type: ignore[union-attr]
            out["windows"].append({"start": start, **{k: d[k] for k in _WINDOW_KEYS}})
    return out


_WINDOW_KEYS = ("n", "kappa", "observedAgreement", "failToPass", "passToFail")


# --- the judge_agreement gate ---------------------------------------------------------------


def decide_agreement(spec: GateSpec, versions: Sequence[AuditAgreement], release: str = "") -> list[Outcome]:
    """A ``judge_agreement`` gate: per rubric version judged in the release, the audit labels'
    weighted kappa and agreement against the floor. Fewer labels than ``min_samples`` is
    ``insufficient_data``; below the floor is ``inconclusive`` — the judge is broken, and
    ``apply_judge_floors`` carries that to the rubric's judged gates. Kappa is undefined only
    when judge and people used one and the same label throughout: perfect agreement."""
    floor = spec.floor
    assert floor is not None and spec.metric.judge_agreement is not None
    need = spec.required_samples(0.0, 1)
    if not versions:
        reason = f"no audit label of {spec.metric.judge_agreement} in {release or 'the release'}"
        empty = empty_outcome(spec, reason)
        empty.design = "agreement"
        return [empty]
    out = []
    for a in versions:
        o = empty_outcome(spec, "")
        o.segment, o.design, o.min_samples = f"version={a.version}", "agreement", need
        o.current = a.as_dict()
        o.estimate = a.kappa
        kappa = a.kappa if a.kappa is not None else 1.0
        observed = a.observed or 0.0
        if a.n < need:
            o.decision, o.reason = "insufficient_data", f"needs {need} audit labels, has {a.n}"
        elif floor.kappa is not None and kappa < floor.kappa:
            o.decision = "inconclusive"
            o.reason = (f"judge broken: kappa {kappa:.2f} < floor {floor.kappa:.2f} on {a.n} audit labels;"
                        f" the gates of {spec.metric.judge_agreement} are inconclusive")  # fmt: skip
        elif floor.agreement is not None and observed < floor.agreement:
            o.decision = "inconclusive"
            o.reason = (f"judge broken: agreement {observed:.1%} < floor {floor.agreement:.1%} on {a.n} audit"
                        f" labels; the gates of {spec.metric.judge_agreement} are inconclusive")  # fmt: skip
        else:
            o.decision = "pass"
            o.reason = f"kappa {kappa:.2f}, agreement {observed:.1%} on {a.n} audit labels: at or above the floor"
        out.append(o)
    return out


def apply_judge_floors(decided: Sequence[tuple[GateSpec, Outcome]]) -> None:
    """A judge below its floor is not evidence: every pass or block of a gate on that rubric's
    verdicts becomes ``inconclusive``, saying which agreement gate and what it decided first —
    except outcomes whose rates were calibrated by people's labels (PPI is valid whatever the
    judge's error), which keep their decision with a note."""
    broken = {
        spec.metric.judge_agreement: o for spec, o in decided
        if spec.metric.judge_agreement and o.design == "agreement" and o.decision == "inconclusive"
    }  # fmt: skip
    for spec, o in decided:
        source = broken.get(spec.metric.evaluator)
        if source is None or o.decision not in ("pass", "block"):
            continue
        if (o.current.get("calibration") or {}).get("method") == "ppi":
            # a calibrated rate is valid however bad the judge: people's labels corrected it
            o.notes.append(f"the judge is below its agreement floor ({source.gate}); this rate is calibrated by"
                           " people's audit labels, so the decision stands")  # fmt: skip
            continue
        o.notes.append(f"decided {o.decision} on the judge's verdicts before the agreement floor")
        o.decision = "inconclusive"
        o.reason = f"the judge of {spec.metric.evaluator} is below its agreement floor ({source.gate}: {source.reason})"
