"""Sample planning for gates: what each gate needs to decide, what the latest batches give
(``tracejury gate plan``), and the sample size at which every evaluator gate can decide
(``tracejury batch create --for-gates``, and the one-line warning of ``batch create``).

The arithmetic is pure (``tracejury.core.gate_plan``); this module reads the store.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from tracejury.core.errors import ConfigError
from tracejury.core.gate_plan import expected_effective_n, plan_segment, rate_for_needs
from tracejury.core.gates import GateSpec, calibrate_to_decide, pooled_audit
from tracejury.core.segments import key_matches, project_key
from tracejury.store import gates as store
from tracejury.store.gate_aggregate import trace_conditions

__all__ = ["DEFAULT_RATE", "GateNeeds", "Shortfall", "gate_needs", "gate_plan", "shortfalls", "size_for_gates"]

DEFAULT_RATE = 0.05
"""The fail rate needs are computed at when neither a baseline batch nor the gate gives one."""


def gate_plan(engine: Engine, specs: Sequence[GateSpec], release: str, baseline: str | None) -> list[dict[str, Any]]:
    """Per gate and segment group: the effective evaluations it needs, what the latest done
    batches (or, for signal gates, the newest window of traffic) give, and the verdict it can reach."""
    base_release = baseline or store.previous_release(engine, release)
    out = []
    for spec in specs:
        if spec.metric.judge_agreement is not None:
            out.append(_agreement_plan(engine, spec, release))
            continue
        data = store.gate_inputs(engine, spec, release, base_release)
        segments = data.segments
        if spec.scan is not None and segments:  # a scan needs its whole sample to reach min samples first
            from tracejury.core.gate_scan import merge_inputs

            segments = [merge_inputs("(all)", segments)]
        pooled = pooled_audit(segments)  # a calibrated gate's effective n is the calibrated one
        segments = [calibrate_to_decide(spec, s, pooled, len(segments))[0] for s in segments]
        rows = [plan_segment(spec, s, len(segments)) for s in segments]
        if not rows:
            rows = [{"segment": "(all)", "needed": spec.required_samples(0.0, 1), "current": 0.0, "baseline": 0.0,
                     "verdict": "insufficient_data", "why": data.empty_reason}]  # fmt: skip
        source = data.current_source
        out.append({
            "gate": spec.id, "design": "scan" if spec.scan else "sample" if spec.sampled else "windows",
            "metric": spec.metric.label, "batches": list(source.batches) if source else [],
            "pending": list(source.pending) if source else [], "segments": rows,
        })  # fmt: skip
    return out


def _agreement_plan(engine: Engine, spec: GateSpec, release: str) -> dict[str, Any]:
    """A judge_agreement gate's plan: the audit labels it needs per rubric version, and has."""
    from tracejury.store.agreement import audit_agreements

    need = spec.required_samples(0.0, 1)
    versions = audit_agreements(engine, spec.metric.judge_agreement or "", release)
    rows: list[dict[str, Any]] = []
    for a in versions:
        rows.append({"segment": f"version={a.version}", "needed": need, "current": float(a.n), "baseline": None,
                     "verdict": "decides" if a.n >= need else "insufficient_data"})  # fmt: skip
        if a.n < need:
            rows[-1]["why"] = f"label {need - a.n} more audit items"
    if not rows:
        rows = [{"segment": "(all)", "needed": need, "current": 0.0, "baseline": None,
                 "verdict": "insufficient_data", "why": f"no audit label in {release}"}]  # fmt: skip
    return {"gate": spec.id, "design": "agreement", "metric": spec.metric.label, "batches": [], "pending": [],
            "segments": rows}  # fmt: skip


def audit_plan(engine: Engine, rubric: str, release: str, *, width: float, disagreement: float,
               audit_rate: float | None = None) -> dict[str, Any]:  # fmt: skip
    """How many audit labels make the calibrated rate of ``rubric`` over the release's sample
    this wide (95%), and the audit rate that draws them.

    The calibrated variance is about ``λ²·V_S[g] + σ²_r / n_A`` (``core.calibration``; the
    covariance term is small at the tuned λ): the judge's sampling variance, which labels
    cannot remove, plus the label variance per audit item over the labels. ``σ²_r`` is
    measured on the release's audit labels when it has some, else assumed from
    ``disagreement`` (a residual of ±1 on that share of traces). ``audit_rate``: the rubric's
    current one, reported beside the one to set."""
    from tracejury.core.calibration import ppi
    from tracejury.core.gates import EMPTY

    spec = GateSpec.model_validate({"id": "audit_plan", "metric": {"evaluator": rubric},  # one arm: no baseline
                                    "baseline": {"kind": "threshold", "value": 0.0}, "interval": "wilson",
                                    "calibration": {"method": "ppi", "min_labels": 1}})  # fmt: skip
    data = store.gate_inputs(engine, spec, release, None)
    cur = data.segments[0].current if data.segments else None
    arm = cur or EMPTY
    if arm.n == 0:
        raise ConfigError(f"no done batch scored {rubric} in release {release}")
    judge = arm.judge_sums()
    z = 1.959963984540054
    target = (width / (2 * z)) ** 2
    if arm.audit.labelled:
        c = ppi(judge, arm.audit)
        lam, labelled_var = c.lam, max(c.variance - c.lam**2 * judge.variance, 0.0)
        residual, source = labelled_var * arm.audit.labelled, "labels"
    else:
        lam, residual, source = 1.0, disagreement * (1.0 - disagreement), "assumed"
    floor = lam**2 * judge.variance
    needed = math.ceil(residual / (target - floor)) if target > floor else None
    scored = arm.n
    return {
        "rubric": rubric, "release": release, "batch": ", ".join(data.current_batches), "scored": scored,
        "judgeRate": arm.judge_rate, "labelled": arm.audit.labelled, "lambda": lam,
        "residualVariance": residual, "source": source, "width": width,
        "floorWidth": 2 * z * math.sqrt(floor), "labelsNeeded": needed,
        "auditRate": min(needed / scored, 1.0) if needed is not None else None,
        "currentAuditRate": audit_rate,
    }  # fmt: skip


@dataclass
class GateNeeds:
    """One evaluator gate's segment groups in a release's traffic: each group's sampling
    weights and the effective evaluations it needs."""

    spec: GateSpec
    weights: dict[str, list[float]] = field(default_factory=dict)
    needs: dict[str, int] = field(default_factory=dict)


def _matches(spec: GateSpec, conds: list[tuple[str, bool]], row: Any) -> bool:
    """Whether a ``sampling_rows`` row is in the gate's population (its ``where``; ``conds``:
    its ``trace_conditions``)."""
    if any(bool(getattr(row, column)) is not value for column, value in conds):
        return False
    return not spec.where.segment or key_matches(row.segment_key, spec.where.segment)


def _baseline_rates(engine: Engine, spec: GateSpec, release: str, baseline: str | None) -> dict[str, float]:
    """Per group, the baseline arm's rate from its newest done batch (empty when there is none)."""
    try:
        base_release = baseline or store.previous_release(engine, release)
        data = store.gate_inputs(engine, spec, release, base_release)
    except ConfigError:
        return {}
    return {s.segment: s.baseline.rate for s in data.segments if s.baseline.n > 0}


def gate_needs(engine: Engine, specs: Sequence[GateSpec], rows: Sequence[Any], weights: Sequence[float],
               evaluators: Collection[str], release: str, baseline: str | None) -> list[GateNeeds]:  # fmt: skip
    """The evaluator gates (not scans: a scan tests what the sample holds) whose evaluator a
    batch scores, with their groups' weights and needs in this release's traffic."""
    out = []
    for spec in specs:
        if not spec.sampled or spec.scan is not None or spec.evaluator_id not in evaluators:
            continue
        g = GateNeeds(spec)
        groups: dict[str, list[float]] = defaultdict(list)
        conds = trace_conditions(spec)
        for row, w in zip(rows, weights, strict=True):
            if _matches(spec, conds, row):
                groups[project_key(row.segment_key, spec.group_by)].append(w)
        g.weights = dict(groups)
        threshold = spec.baseline.kind == "threshold"
        observed = {} if threshold else _baseline_rates(engine, spec, release, baseline)
        for name in groups:
            rate = observed.get(name)
            if rate is None:
                given = getattr(spec.min_samples, "baseline_rate", None)
                rate = given if given is not None else DEFAULT_RATE
            if threshold:
                rate = spec.baseline.value or 0.0
            g.needs[name] = spec.required_samples(rate, len(groups))
        out.append(g)
    return out


def size_for_gates(needs: Sequence[GateNeeds]) -> tuple[float | None, list[str]]:
    """The smallest base rate at which every group's expected effective n reaches its need
    plus two standard deviations' headroom (``2·√need``), and the groups no sample of this
    release can serve (too little traffic)."""
    weights: dict[str, list[float]] = {}
    wanted: dict[str, int] = {}
    impossible = []
    for g in needs:
        for name, ws in g.weights.items():
            key = f"{g.spec.id} {name or '(all)'}"
            if len(ws) < g.needs[name]:  # even every trace (p = 1) would not do
                impossible.append(f"{key} (needs {g.needs[name]}, has {len(ws)} traces)")
                continue
            # headroom: the realised effective n of a Poisson sample scatters around its
            # expectation; sized at the need itself, about half the groups would fall short
            weights[key], wanted[key] = ws, g.needs[name] + math.ceil(2 * math.sqrt(g.needs[name]))
    return (rate_for_needs(weights, wanted) if wanted else None), impossible


@dataclass(frozen=True)
class Shortfall:
    """A gate group a sample is too small for."""

    gate: str
    segment: str
    expected: float
    needed: int


def shortfalls(needs: Sequence[GateNeeds], base_rate: float) -> list[Shortfall]:
    """The groups whose expected effective n at ``base_rate`` is below their need."""
    out = []
    for g in needs:
        for name, ws in g.weights.items():
            expected = expected_effective_n([min(1.0, base_rate * w) for w in ws])
            if expected < g.needs[name] * 0.995:  # a sample sized for the need, up to rounding of its rate
                out.append(Shortfall(g.spec.id, name or "(all)", expected, g.needs[name]))
    return out

