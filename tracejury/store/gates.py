"""Gate queries: aggregate a gate's metric per segment group and window by SQL (nothing
loads evaluations or traces into Python), resolve baselines, and store runs and outcomes.

Per gate, at most four queries: the windows' boundaries, the distinct segment keys, and one
GROUP BY per arm. Grouping by a subset of dimensions maps stored keys through a ``CASE``.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Engine, and_, case, func, literal, select
from sqlalchemy.sql import ColumnElement

from tracejury.core.errors import ConfigError
from tracejury.core.gates import Arm, GateSpec, Outcome, SegmentInputs, WindowArm
from tracejury.core.segments import key_matches, project_key
from tracejury.core.stats import cluster_effective_n_from_sums
from tracejury.store.tables import EvaluationRow, GateOutcome, GateRun, StoredTrace

__all__ = [
    "GateData",
    "gate_history",
    "gate_inputs",
    "load_run",
    "previous_release",
    "save_run",
]

_T = StoredTrace.__table__
_E = EvaluationRow.__table__
_SIGNAL_COLUMN = {
    "format_invalid": "format_invalid", "tool_timeout": "tool_timeout", "tool_error": "tool_error",
    "empty_retrieval": "retrieval_empty", "truncation": "truncated", "fallback": "fallback_used",
    "guardrail_block": "guard_block",
}  # fmt: skip
_TRACE_FIELDS = {
    "req.toolRequired": "tool_required", "runtime.truncated": "truncated",
    "runtime.fallbackUsed": "fallback_used", "outputs.formatValid": "format_invalid",
}  # fmt: skip


@dataclass
class GateData:
    """A gate's inputs and how they were gathered (for the audit trail)."""

    segments: list[SegmentInputs]
    baseline: dict[str, Any]
    windows: list[dict[str, Any]]
    current_batches: list[str]
    """The batch whose evaluations each release's arm read (evaluator metrics)."""


def previous_release(engine: Engine, release: str) -> str | None:
    """The release whose traffic started last before this one's."""
    starts = select(_T.c.release_id, func.min(_T.c.ts).label("start")).group_by(_T.c.release_id)
    with engine.connect() as conn:
        rows = {r.release_id: r.start for r in conn.execute(starts)}
    if release not in rows:
        raise ConfigError(f"release {release!r} has no stored traces")
    earlier = [(start, rid) for rid, start in rows.items() if start < rows[release]]
    return max(earlier)[1] if earlier else None


def _trace_filter(spec: GateSpec) -> list[ColumnElement[bool]]:
    conds = []
    for field, wanted in spec.where.trace.items():
        column = _TRACE_FIELDS.get(field)
        if column is None:
            raise ConfigError(
                f"gate {spec.id}: where.trace field {field!r} is not filterable (use one of {', '.join(_TRACE_FIELDS)})"
            )
        # formatValid is stored inverted, as format_invalid
        value = (not wanted) if field == "outputs.formatValid" else wanted
        conds.append(_T.c[column].is_(value))
    return conds


def _windows(
    engine: Engine, spec: GateSpec, release_cond: ColumnElement[bool]
) -> list[tuple[datetime, datetime | None]]:
    """Complete windows of the current release's (filtered) traffic, as [start, end) in ts."""
    window = spec.hysteresis.window
    with engine.connect() as conn:
        if window.traces is not None:
            size = window.traces
            ranked = (
                select(_T.c.ts, func.row_number().over(order_by=(_T.c.ts, _T.c.trace_id)).label("rn"))
                .where(release_cond)
                .subquery()
            )
            starts = list(
                conn.execute(select(ranked.c.ts).where((ranked.c.rn - 1) % size == 0).order_by(ranked.c.ts)).scalars()
            )
            total = conn.execute(select(func.count()).where(release_cond)).scalar_one()
            complete = total // size
            bounds = [*starts, None]
            return [(bounds[k], bounds[k + 1]) for k in range(complete)]
        first, last = conn.execute(select(func.min(_T.c.ts), func.max(_T.c.ts)).where(release_cond)).one()
    if first is None:
        return []
    step = timedelta(hours=window.hours or 1)
    out = []
    k = 0
    while first + (k + 1) * step <= last:
        out.append((first + k * step, first + (k + 1) * step))
        k += 1
    return out


def _window_case(windows: list[tuple[datetime, datetime | None]], ts: Any) -> Any:
    """The window index of a timestamp column (-1 outside every complete window)."""
    whens = []
    for k, (start, end) in enumerate(windows):
        cond = ts >= start if end is None else and_(ts >= start, ts < end)
        whens.append((cond, k))
    return case(*whens, else_=-1) if whens else literal(-1)


@dataclass(frozen=True)
class _ArmTraffic:
    """Which traffic an arm is: one release, or other releases in a time range (rolling)."""

    release: str
    rolling: tuple[datetime, datetime] | None = None

    def on(self, release_col: Any, ts_col: Any) -> ColumnElement[bool]:
        if self.rolling is None:
            return release_col == self.release
        return and_(release_col != self.release, ts_col >= self.rolling[0], ts_col < self.rolling[1])


Row = tuple[str, int, str, int, int, float, float, float, int, str | None]
"""(segment key, window, version, failures, n, Σw failed, Σw, Σw², judge failed, session)."""


def _aggregate(
    engine: Engine,
    spec: GateSpec,
    traffic: _ArmTraffic,
    windows: list[tuple[datetime, datetime | None]],
    batches: list[str],
) -> list[Row]:
    """``Row``s (one per session too when the gate clusters by session); the batches an
    evaluator metric read are appended to ``batches`` (for the audit)."""
    m = spec.metric
    filters = _trace_filter(spec)
    session = [_T.c.session_id_hash] if spec.cluster == "session" else []
    with engine.connect() as conn:
        if m.signal is not None:
            fact = _T.c.latency_ms > m.bound_ms if m.signal == "latency_over" else _T.c[_SIGNAL_COLUMN[m.signal]]
            failed = func.sum(case((fact, 1), else_=0))
            window = _window_case(windows, _T.c.ts).label("w")
            stmt = (
                select(_T.c.segment_key, window, failed, func.count(), *session)
                .where(traffic.on(_T.c.release_id, _T.c.ts), *filters)
                .group_by(_T.c.segment_key, "w", *session)
            )
            return [
                (r[0], r[1], "", int(r[2] or 0), r[3], float(r[2] or 0), float(r[3]), float(r[3]), 0,
                 r[4] if session else None)
                for r in conn.execute(stmt)
            ]  # fmt: skip
        evaluator = m.evaluator or m.judge_failure_rate
        # One sample design per release: the evaluations of the latest batch that scored
        # this evaluator there. Mixing batches would mix inclusion probabilities, and 1/p of
        # one batch is not the weight of a trace in the union of two samples (biased).
        # Evaluations carry their trace's release, segment key, timestamp and 1/p (copied at
        # write time), so this is one GROUP BY over an index, no join with traces unless the
        # gate filters on trace fields.
        in_arm = traffic.on(_E.c.release_id, _E.c.trace_ts)
        last = select(func.max(_E.c.id)).where(_E.c.evaluator_id == evaluator, in_arm).group_by(_E.c.release_id)
        chosen = sorted(conn.execute(select(_E.c.batch_id).where(_E.c.id.in_(last))).scalars())
        batches.extend(chosen)
        source = _E.join(_T, _T.c.trace_id == _E.c.trace_id) if filters or session else _E
        window = _window_case(windows, _E.c.trace_ts).label("w")
        stmt = (
            select(
                _E.c.segment_key,
                window,
                _E.c.evaluator_version,
                _E.c.status,
                _E.c.passed,
                func.count(),
                func.sum(_E.c.weight),
                func.sum(_E.c.weight * _E.c.weight),
                *session,
            )  # fmt: skip
            .select_from(source)
            .where(
                _E.c.evaluator_id == evaluator,
                in_arm,
                _E.c.batch_id.in_(chosen),
                _E.c.status.in_(["scored", "judge_failed"]),
                *filters,
            )  # fmt: skip
            .group_by(_E.c.segment_key, "w", _E.c.evaluator_version, _E.c.status, _E.c.passed, *session)
        )
        out: list[Row] = []
        for row in conn.execute(stmt):
            key, w, version, status, passed, n, ws, wsq = row[:8]
            sid = row[8] if session else None
            if m.judge_failure_rate:
                bad = status == "judge_failed"
                out.append((key, w, version, n if bad else 0, n, ws if bad else 0.0, ws, wsq, 0, sid))
            elif status == "judge_failed":
                out.append((key, w, version, 0, 0, 0.0, 0.0, 0.0, n, sid))
            else:
                bad = passed is False
                out.append((key, w, version, n if bad else 0, n, ws if bad else 0.0, ws, wsq, 0, sid))
        return out


Sessions = dict[str, list[float]]
"""Session → [Σw, Σw·failed] of its verdicts (for the cluster-robust effective n)."""


def _fold(rows: Sequence[Row], spec: GateSpec) -> tuple[dict[tuple[str, int], Arm], dict[tuple[str, int], Sessions]]:
    """Arms per (segment group, window), and their per-session sums when clustering."""
    acc: dict[tuple[str, int], list[Any]] = defaultdict(lambda: [0, 0, 0.0, 0.0, 0.0, 0, set()])
    sessions: dict[tuple[str, int], Sessions] = defaultdict(dict)
    for key, w, version, failures, n, wf, ws, wsq, jf, sid in rows:
        if key is None or (spec.where.segment and not key_matches(key, spec.where.segment)):
            continue
        group = (project_key(key, spec.group_by), w)
        a = acc[group]
        a[0] += failures
        a[1] += n
        a[2] += wf
        a[3] += ws
        a[4] += wsq
        a[5] += jf
        if version:
            a[6].add(version)
        if sid is not None and n:
            s = sessions[group].setdefault(sid, [0.0, 0.0])
            s[0] += ws
            s[1] += wf
    arms = {k: _arm(v, sessions.get(k)) for k, v in acc.items()}
    return arms, sessions


def _arm(v: list[Any], sessions: Sessions | None) -> Arm:
    cluster_n = cluster_effective_n_from_sums([(a, b) for a, b in sessions.values()], v[1]) if sessions else None
    return Arm(v[0], v[1], v[2], v[3], v[4], v[5], tuple(sorted(v[6])), cluster_n)


def _add(a: Arm | None, b: Arm) -> Arm:
    """Sum two arms (cluster n is recomputed by the caller from merged sessions)."""
    if a is None:
        return b
    versions = tuple(sorted({*a.versions, *b.versions}))
    return Arm(
        a.failures + b.failures, a.n + b.n, a.weight_failed + b.weight_failed, a.weight_sum + b.weight_sum,
        a.weight_sq + b.weight_sq, a.judge_failed + b.judge_failed, versions,
    )  # fmt: skip


def _baseline_traffic(
    engine: Engine, spec: GateSpec, release: str, baseline_release: str | None
) -> tuple[_ArmTraffic, dict[str, Any]]:
    kind = spec.baseline.kind
    if kind == "rolling":
        with engine.connect() as conn:
            t0 = conn.execute(select(func.min(_T.c.ts)).where(_T.c.release_id == release)).scalar_one()
        if t0 is None:
            raise ConfigError(f"release {release!r} has no stored traces")
        since = t0 - timedelta(days=spec.baseline.days or 0)
        meta = {"kind": "rolling", "days": spec.baseline.days, "from": since.isoformat(), "to": t0.isoformat()}
        return _ArmTraffic(release, (since, t0)), meta
    name = spec.baseline.release if kind == "release" else baseline_release
    if name is None:
        raise ConfigError(f"gate {spec.id}: no baseline release (pass --baseline, or ingest an earlier release)")
    return _ArmTraffic(name), {"kind": kind, "release": name}


def gate_inputs(engine: Engine, spec: GateSpec, release: str, baseline_release: str | None) -> GateData:
    """Aggregate one gate's arms per segment group and window.

    Current window k meets baseline window k mod B (B complete baseline windows): fresh
    evidence in both arms. A baseline shorter than one window is used whole by every window.
    """
    filters = _trace_filter(spec)
    current_traffic = _ArmTraffic(release)
    windows = _windows(engine, spec, and_(current_traffic.on(_T.c.release_id, _T.c.ts), *filters))
    current_batches: list[str] = []
    current, _ = _fold(_aggregate(engine, spec, current_traffic, windows, current_batches), spec)
    whole: dict[str, Arm] = {}
    per_window: dict[tuple[str, int], Arm] = {}
    if spec.baseline.kind == "threshold":
        base_meta: dict[str, Any] = {"kind": "threshold", "value": spec.baseline.value}
        b_count = 0
    else:
        traffic, base_meta = _baseline_traffic(engine, spec, release, baseline_release)
        base_windows = _windows(engine, spec, and_(traffic.on(_T.c.release_id, _T.c.ts), *filters))
        b_count = len(base_windows)
        base_meta["windows"] = b_count
        base_batches: list[str] = []
        per_window, per_window_sessions = _fold(_aggregate(engine, spec, traffic, base_windows, base_batches), spec)
        if spec.metric.signal is None:
            base_meta["batches"] = base_batches
        merged: dict[str, Sessions] = defaultdict(dict)
        for (g, w), a in per_window.items():  # the whole baseline: its windows and the rest
            whole[g] = _add(whole.get(g), a)
            for sid, (sw, swy) in per_window_sessions.get((g, w), {}).items():
                m = merged[g].setdefault(sid, [0.0, 0.0])
                m[0] += sw
                m[1] += swy
        for g, sess in merged.items():  # sessions may span windows: cluster over the whole
            a = whole[g]
            whole[g] = Arm(a.failures, a.n, a.weight_failed, a.weight_sum, a.weight_sq, a.judge_failed, a.versions,
                           cluster_effective_n_from_sums([(x, y) for x, y in sess.values()], a.n))  # fmt: skip
    groups = sorted({g for g, _ in current if _ >= 0} | set(whole))
    empty = Arm(0, 0, 0.0, 0.0, 0.0)
    segments = []
    for g in groups:
        wins = tuple(
            WindowArm(k, start.isoformat(), end.isoformat() if end else "", current.get((g, k), empty),
                      per_window.get((g, k % b_count), empty) if b_count else None)
            for k, (start, end) in enumerate(windows)
        )  # fmt: skip
        segments.append(SegmentInputs(g, whole.get(g, empty), wins))
    meta = [
        {"index": k, "start": s.isoformat(), "end": e.isoformat() if e else None} for k, (s, e) in enumerate(windows)
    ]
    return GateData(segments, base_meta, meta, current_batches)


def save_run(engine: Engine, release: str, decision: str, config_hash: str,
             outcomes: Sequence[tuple[Outcome, dict[str, Any]]]) -> str:  # fmt: skip
    """Store a run and its outcomes (each with its audit JSON); returns the run id."""
    run_id = f"g_{datetime.now(UTC):%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(GateRun.__table__.insert().values(
            id=run_id, release_id=release, decision=decision, config_hash=config_hash,
            created_at=datetime.now(UTC)))  # fmt: skip
        if outcomes:
            conn.execute(GateOutcome.__table__.insert(), [
                {"run_id": run_id, "gate_id": o.gate, "segment": o.segment, "decision": o.decision,
                 "reason": o.reason, "audit": orjson.dumps(audit, option=orjson.OPT_SORT_KEYS)}
                for o, audit in outcomes
            ])  # fmt: skip
    return run_id


def load_run(engine: Engine, run_id: str) -> tuple[Any, list[dict[str, Any]]] | None:
    """A stored run and its outcomes' audit trails."""
    with engine.connect() as conn:
        run = conn.execute(select(GateRun.__table__).where(GateRun.__table__.c.id == run_id)).one_or_none()
        if run is None:
            return None
        rows = conn.execute(select(GateOutcome.__table__).where(GateOutcome.__table__.c.run_id == run_id)).all()
    return run, [orjson.loads(r.audit) for r in rows]


def gate_history(engine: Engine, gate_id: str, segment: str | None = None, limit: int = 50) -> list[Any]:
    """A gate's outcomes across runs, newest first."""
    o, r = GateOutcome.__table__, GateRun.__table__
    stmt = (
        select(r.c.id, r.c.release_id, r.c.created_at, o.c.segment, o.c.decision, o.c.reason)
        .select_from(o.join(r, r.c.id == o.c.run_id))
        .where(o.c.gate_id == gate_id)
        .order_by(r.c.created_at.desc())
        .limit(limit)
    )
    if segment is not None:
        stmt = stmt.where(o.c.segment == segment)
    with engine.connect() as conn:
        return list(conn.execute(stmt))
