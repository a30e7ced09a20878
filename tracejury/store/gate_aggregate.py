"""Gate aggregation by SQL: one arm's metric per segment key and window (nothing loads
evaluations or traces into Python).

**Windows** cut a release's (filtered) traffic into complete windows of N traces or of a
number of hours. Trace-count boundaries are found by stepping the ``(release_id, ts)``
index: each boundary is an ``OFFSET`` from the previous one, so the release's traffic is
never sorted and each trace is stepped about twice.

**Evaluator metrics** read one batch per release (``choose_batches``) in one of two plans
that return the same rows:

- ``grouped``: one ``GROUP BY`` (segment key, window ``CASE``, version, status, passed).
  Engines with hash aggregation (PostgreSQL) do it in one pass.
- ``seek``: SQLite aggregates only by sorting, and sorting the arm's rows was most of the
  reducer's time. This plan walks the covering index ``ix_evaluation_gate_cover`` in its
  order: per window, one range seek on ``trace_ts`` per (segment key, status, passed), so
  each ``GROUP BY`` follows the index and nothing is sorted; segment keys and versions come
  from skip scans of the same index. Used on SQLite for a single-release arm without trace
  filters or session clustering; the ``grouped`` plan serves every other shape.

**Human labels** supersede the judge's verdict in evaluator metrics: the newest review
label of a (trace, evaluator) with a ``passed`` replaces the verdict of that trace's
evaluation in the arm (a ``judge_failed`` one becomes a counted verdict) — unless the trace
went to review for the audit alone. A small query over the labelled traces returns
corrections — the judge's row taken out, the human's put in — so the large aggregation stays
index-only.

**Audit labels** measure the judge rather than fix one trace (``tracejury.core.calibration``):
``audit_rows`` returns, per segment key and window, the labelled audit items of the arm's
batch as cells (judge failed, person failed) with count, Σv and Σv², v = 1/inclusion_p. The
"judge" of an item escalated for another reason too is its label (it would have been
labelled without the audit, so the predictor is the same whether or not it was audited).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson
from sqlalchemy import Connection, Integer, and_, case, exists, func, literal, select, union_all
from sqlalchemy.sql import ColumnElement

from tracejury.core.errors import ConfigError
from tracejury.core.gates import GateSpec
from tracejury.store.tables import Batch, EvaluationRow, ReviewItem, ReviewLabel, StoredTrace

__all__ = [
    "ArmTraffic",
    "Plan",
    "Row",
    "Window",
    "AuditRow",
    "aggregate",
    "audit_rows",
    "batch_rows",
    "choose_batches",
    "distinct_values",
    "trace_conditions",
    "trace_filter",
    "windows",
]

_T = StoredTrace.__table__
_E = EvaluationRow.__table__
_L = ReviewLabel.__table__
_R = ReviewItem.__table__
AUDIT_ONLY = '["audit"]'
"""A review item's reasons when the audit alone sent it (reasons are stored as a JSON list)."""
_B = Batch.__table__
_SIGNAL_COLUMN = {
    "format_invalid": "format_invalid", "tool_timeout": "tool_timeout", "tool_error": "tool_error",
    "empty_retrieval": "retrieval_empty", "truncation": "truncated", "fallback": "fallback_used",
    "guardrail_block": "guard_block",
}  # fmt: skip
_TRACE_FIELDS = {
    "req.toolRequired": "tool_required", "runtime.truncated": "truncated",
    "runtime.fallbackUsed": "fallback_used", "outputs.formatValid": "format_invalid",
}  # fmt: skip
_COUNTED = ("judge_failed", "scored", "missing_evidence")
"""Evaluation statuses a gate reads: verdicts, and judge failures and missing evidence (outside
the rate, each with a tolerance); not_applicable is outside the evaluator's population."""
_LABELLED = ("judge_failed", "scored")
"""Evaluations a reviewer's label turns into a verdict (missing evidence stays outside the rate)."""
_BRANCHES_PER_STATEMENT = 120
"""SQLite allows 500 terms in a compound SELECT; stay well below."""

Window = tuple[datetime, datetime | None]
"""[start, end) in trace time; end None: open (the last window when traffic is a multiple of N)."""
Plan = Literal["auto", "seek", "grouped"]
Row = tuple[str, int, str, int, int, float, float, float, float, int, float, int, float, str | None, int]
"""(segment key, window, version, failures, n, Σw failed, Σw, Σw², Σw² failed, judge failed,
Σw judge failed, missing evidence, Σw missing evidence, session, human labels). Rows are
additive: corrections for human labels come as negative rows."""


def trace_conditions(spec: GateSpec) -> list[tuple[str, bool]]:
    """The gate's ``where.trace`` as (trace column, stored value) pairs."""
    conds = []
    for field, wanted in spec.where.trace.items():
        column = _TRACE_FIELDS.get(field)
        if column is None:
            raise ConfigError(
                f"gate {spec.id}: where.trace field {field!r} is not filterable (use one of {', '.join(_TRACE_FIELDS)})"
            )
        # formatValid is stored inverted, as format_invalid
        conds.append((column, (not wanted) if field == "outputs.formatValid" else wanted))
    return conds


def trace_filter(spec: GateSpec) -> list[ColumnElement[bool]]:
    """The gate's ``where.trace`` conditions on trace columns."""
    return [_T.c[column].is_(value) for column, value in trace_conditions(spec)]


@dataclass(frozen=True)
class ArmTraffic:
    """Which traffic an arm is: one release, or other releases in a time range (rolling)."""

    release: str
    rolling: tuple[datetime, datetime] | None = None

    def on(self, release_col: Any, ts_col: Any) -> ColumnElement[bool]:
        """The condition on a table's release and timestamp columns."""
        if self.rolling is None:
            return release_col == self.release
        return and_(release_col != self.release, ts_col >= self.rolling[0], ts_col < self.rolling[1])


def windows(conn: Connection, spec: GateSpec, cond: ColumnElement[bool]) -> list[Window]:
    """Complete windows of the traffic matching ``cond`` (trace columns), oldest first.

    Window k of N traces starts at the timestamp of the (k·N)-th trace in time order and
    ends where window k+1 starts (ties in time fall in the later window); only windows with
    N traces count."""
    window = spec.hysteresis.window
    if window.traces is not None:
        starts, complete = _count_starts(conn, cond, window.traces)
        bounds = [*starts, None]
        return [(bounds[k], bounds[k + 1]) for k in range(complete)]
    first, last = conn.execute(select(func.min(_T.c.ts), func.max(_T.c.ts)).where(cond)).one()
    if first is None:
        return []
    step = timedelta(hours=window.hours or 1)
    out = []
    k = 0
    while first + (k + 1) * step <= last:
        out.append((first + k * step, first + (k + 1) * step))
        k += 1
    return out


def _count_starts(conn: Connection, cond: ColumnElement[bool], size: int) -> tuple[list[datetime], int]:
    """Timestamps of the traces at positions 0, N, 2N, … in time order, and how many
    windows of N are complete — by stepping the ``(release_id, ts)`` index, no sort.

    The timestamp at a position does not depend on how ties are ordered, so each start is
    read as an ``OFFSET`` into the traces after the previous start. ``upto`` counts the
    traces at or before the previous start: its position + 1 when its timestamp is unique
    (one seek tells), else a count of the range between the two starts."""
    ts = _T.c.ts

    def at(offset: int, after: datetime | None) -> datetime | None:
        later = [ts > after] if after is not None else []
        return conn.execute(select(ts).where(cond, *later).order_by(ts).limit(1).offset(offset)).scalar()

    def count(*conds: ColumnElement[bool]) -> int:
        return conn.execute(select(func.count()).where(cond, *conds)).scalar_one()

    starts: list[datetime] = []
    upto = 0
    while True:
        pos = len(starts) * size
        if starts and pos < upto:  # still inside the previous start's run of equal timestamps
            starts.append(starts[-1])
            continue
        after = starts[-1] if starts else None
        found = at(pos - upto, after)
        if found is None:
            break
        ties = count(ts == found)
        if ties == 1:
            upto = pos + 1
        else:
            upto += count(ts > after, ts < found) if after is not None else count(ts < found)
            upto += ties
        starts.append(found)
    if not starts:
        return [], 0
    last = len(starts) * size - 1  # the last start's window is complete when this position exists
    complete = last < upto or at(last - upto, starts[-1]) is not None
    return starts, len(starts) if complete else len(starts) - 1


def window_case(wins: Sequence[Window], ts: Any) -> Any:
    """The window index of a timestamp column (-1 outside every complete window)."""
    whens = []
    for k, (start, end) in enumerate(wins):
        cond = ts >= start if end is None else and_(ts >= start, ts < end)
        whens.append((cond, k))
    return case(*whens, else_=-1) if whens else literal(-1)


def _ranges(wins: Sequence[Window], outside: bool) -> list[tuple[int, list[Any]]]:
    """(window index, conditions on ``trace_ts``) covering what ``window_case`` maps, one
    disjoint range each; with ``outside``, also the ranges it maps to -1."""
    ts = _E.c.trace_ts
    out: list[tuple[int, list[Any]]] = [
        (k, [ts >= start] if end is None else [ts >= start, ts < end]) for k, (start, end) in enumerate(wins)
    ]
    if outside:
        if not wins:
            return [(-1, [])]
        out.append((-1, [ts < wins[0][0]]))
        if wins[-1][1] is not None:
            out.append((-1, [ts >= wins[-1][1]]))
        out.append((-1, [ts.is_(None)]))
    return out


def choose_batches(conn: Connection, evaluator: str, traffic: ArmTraffic) -> tuple[list[str], list[str]]:
    """The batch an arm reads per release — the newest ``done`` batch that scored the
    evaluator there — and the newer batches that scored it but are not done
    (``"b_… (running)"``: never read, a half-scored sample is not the sample drawn).
    One sample design per release: mixing batches would mix inclusion probabilities, and
    1/p of one batch is not a trace's weight in the union of two samples."""
    if traffic.rolling is None:
        releases = [traffic.release]
    else:
        in_arm = traffic.on(_E.c.release_id, _E.c.trace_ts)
        releases = sorted(conn.execute(select(_E.c.release_id).where(_E.c.evaluator_id == evaluator, in_arm)
                                       .distinct()).scalars())  # fmt: skip
    chosen: list[str] = []
    pending: list[str] = []
    for release in releases:
        batches = conn.execute(
            select(_B.c.id, _B.c.state, _B.c.config).where(_B.c.release_id == release)
            .order_by(_B.c.created_at.desc(), _B.c.id.desc())
        ).all()  # fmt: skip
        for batch_id, state, config in batches:
            listed = evaluator in {e.get("id") for e in orjson.loads(config or b"{}").get("evaluators", [])}
            if not listed and not _scored(conn, evaluator, release, batch_id):
                continue
            if state == "done":
                chosen.append(batch_id)
                break
            pending.append(f"{batch_id} ({state})")
    return sorted(chosen), pending


def _scored(conn: Connection, evaluator: str, release: str, batch_id: str) -> bool:
    """Whether a batch holds an evaluation of the evaluator in the release (one index seek)."""
    stmt = select(_E.c.id).where(_E.c.evaluator_id == evaluator, _E.c.release_id == release,
                                 _E.c.batch_id == batch_id).limit(1)  # fmt: skip
    return conn.execute(stmt).first() is not None


def _verdict_row(jfr: bool, key: str, w: int, version: str, status: str, passed: bool | None,
                 n: int, ws: float, wsq: float, sid: str | None, labels: int = 0) -> Row:  # fmt: skip
    """One aggregated (status, passed) group as a metric row."""
    if status == "missing_evidence":  # outside the rate, with a tolerance of its own
        return (key, w, version, 0, 0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, n, ws, sid, labels)
    if jfr:  # judge failure rate: a judge failure is the "failure"
        bad = status == "judge_failed"
        return (key, w, version, n if bad else 0, n, ws if bad else 0.0, ws, wsq, wsq if bad else 0.0,
                0, 0.0, 0, 0.0, sid, labels)  # fmt: skip
    if status == "judge_failed":  # no verdict: counted apart, never a pass or a fail
        return (key, w, version, 0, 0, 0.0, 0.0, 0.0, 0.0, n, ws, 0, 0.0, sid, labels)
    bad = passed is False
    return (key, w, version, n if bad else 0, n, ws if bad else 0.0, ws, wsq, wsq if bad else 0.0,
            0, 0.0, 0, 0.0, sid, labels)  # fmt: skip


def aggregate(conn: Connection, spec: GateSpec, traffic: ArmTraffic, wins: Sequence[Window], batches: list[str],
              *, outside: bool = True, plan: Plan = "auto", pending: list[str] | None = None) -> list[Row]:  # fmt: skip
    """``Row``s of one arm (one per session too when the gate clusters by session).

    The batches an evaluator metric read are appended to ``batches`` and the newer ones it
    did not read (not done) to ``pending`` (for the audit). Without ``outside``, rows
    outside every window (index -1) may be left out."""
    m = spec.metric
    if m.signal is not None:
        return _signal_rows(conn, spec, traffic, wins)
    evaluator = m.evaluator or m.judge_failure_rate
    assert evaluator is not None  # the spec validates exactly one metric
    chosen, skipped = choose_batches(conn, evaluator, traffic)
    batches.extend(chosen)
    if pending is not None:
        pending.extend(skipped)
    if not chosen:
        return []
    jfr = m.judge_failure_rate is not None
    simple = traffic.rolling is None and not spec.where.trace and spec.cluster is None and len(chosen) == 1
    if plan == "auto":
        plan = "seek" if simple and conn.dialect.name == "sqlite" else "grouped"
    if plan == "seek":
        if not simple:
            raise ValueError("the seek plan needs a single-release arm without trace filters or clustering")
        rows = _seek_rows(conn, evaluator, traffic.release, chosen[0], wins, jfr, outside)
    else:
        rows = _grouped_rows(conn, spec, evaluator, traffic, wins, chosen, jfr)
    if not jfr:
        rows += _label_rows(conn, spec, evaluator, traffic, wins, chosen)
    return rows


def batch_rows(conn: Connection, spec: GateSpec, release: str, batch: str) -> list[Row]:
    """``Row``s of an evaluator metric in one named batch of ``release``, outside any window
    (index -1), counted as ``aggregate`` counts an arm that read that batch (human labels
    included): what ``batch results`` calibrates, whichever batch the gates would read."""
    evaluator = spec.metric.evaluator
    if evaluator is None:
        raise ValueError("batch_rows reads an evaluator metric")
    traffic = ArmTraffic(release)
    rows = _grouped_rows(conn, spec, evaluator, traffic, [], [batch], False)
    return rows + _label_rows(conn, spec, evaluator, traffic, [], [batch])


def _signal_rows(conn: Connection, spec: GateSpec, traffic: ArmTraffic, wins: Sequence[Window]) -> list[Row]:
    m = spec.metric
    session = [_T.c.session_id_hash] if spec.cluster == "session" else []
    fact = _T.c.latency_ms > m.bound_ms if m.signal == "latency_over" else _T.c[_SIGNAL_COLUMN[m.signal]]
    failed = func.sum(case((fact, 1), else_=0))
    window = window_case(wins, _T.c.ts).label("w")
    stmt = (
        select(_T.c.segment_key, window, failed, func.count(), *session)
        .where(traffic.on(_T.c.release_id, _T.c.ts), *trace_filter(spec))
        .group_by(_T.c.segment_key, "w", *session)
    )
    return [
        (r[0], r[1], "", int(r[2] or 0), r[3], float(r[2] or 0), float(r[3]), float(r[3]), float(r[2] or 0),
         0, 0.0, 0, 0.0, r[4] if session else None, 0)
        for r in conn.execute(stmt)
    ]  # fmt: skip


def _source(spec: GateSpec) -> tuple[Any, list[Any], list[ColumnElement[bool]]]:
    """FROM clause, session column and trace filters of an evaluator aggregation (the
    trace table is joined only for filters and sessions)."""
    filters = trace_filter(spec)
    session = [_T.c.session_id_hash] if spec.cluster == "session" else []
    source = _E.join(_T, _T.c.trace_id == _E.c.trace_id) if filters or session else _E
    return source, session, filters


def _grouped_rows(conn: Connection, spec: GateSpec, evaluator: str, traffic: ArmTraffic, wins: Sequence[Window],
                  chosen: list[str], jfr: bool) -> list[Row]:  # fmt: skip
    source, session, filters = _source(spec)
    window = window_case(wins, _E.c.trace_ts).label("w")
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
            traffic.on(_E.c.release_id, _E.c.trace_ts),
            _E.c.batch_id.in_(chosen),
            _E.c.status.in_(_COUNTED),
            *filters,
        )  # fmt: skip
        .group_by(_E.c.segment_key, "w", _E.c.evaluator_version, _E.c.status, _E.c.passed, *session)
    )
    return [_verdict_row(jfr, *r[:8], r[8] if session else None) for r in conn.execute(stmt)]


def _distinct(column: Any, conds: list[ColumnElement[bool]], name: str) -> Any:
    """A recursive CTE of the distinct values of ``column`` under ``conds`` — a skip scan:
    one index seek per value when an index leads with the equality columns of ``conds``
    and then ``column`` (the last row is NULL)."""
    first = select(func.min(column).label("v")).where(*conds).cte(name, recursive=True)
    prev = first.alias(f"{name}_prev")
    nxt = select(func.min(column)).where(*conds, column > prev.c.v).scalar_subquery()
    return first.union_all(select(nxt).where(prev.c.v.is_not(None)))


def distinct_values(conn: Connection, column: Any, conds: list[ColumnElement[bool]]) -> list[Any]:
    """The distinct non-null values of ``column`` under ``conds``, by a skip scan."""
    values = _distinct(column, conds, "distinct_values")
    return list(conn.execute(select(values.c.v).where(values.c.v.is_not(None))).scalars())


def _seek_rows(conn: Connection, evaluator: str, release: str, batch: str, wins: Sequence[Window],
               jfr: bool, outside: bool) -> list[Row]:  # fmt: skip
    arm = [_E.c.evaluator_id == evaluator, _E.c.release_id == release, _E.c.batch_id == batch]
    rows: list[Row] = []
    for version in distinct_values(conn, _E.c.evaluator_version, arm):
        prefix = [*arm, _E.c.evaluator_version == version]
        keys = _distinct(_E.c.segment_key, prefix, "seg_keys")
        branches = [
            select(literal(w, Integer).label("w"), _E.c.segment_key, _E.c.status, _E.c.passed, func.count(),
                   func.sum(_E.c.weight), func.sum(_E.c.weight * _E.c.weight))  # fmt: skip
            .where(*prefix, _E.c.segment_key.in_(select(keys.c.v)), _E.c.status.in_(_COUNTED), verdict, *in_range)
            .group_by(_E.c.segment_key, _E.c.status, _E.c.passed)
            .with_hint(_E, "INDEXED BY ix_evaluation_gate_cover", "sqlite")
            for w, in_range in _ranges(wins, outside)
            # a seek needs one value list per column: NULL (no verdict) is its own range
            for verdict in (_E.c.passed.in_([False, True]), _E.c.passed.is_(None))
        ]  # fmt: skip
        for i in range(0, len(branches), _BRANCHES_PER_STATEMENT):
            part = branches[i : i + _BRANCHES_PER_STATEMENT]
            stmt = union_all(*part) if len(part) > 1 else part[0]
            for w, key, status, passed, n, ws, wsq in conn.execute(stmt):
                rows.append(_verdict_row(jfr, key, w, version, status, passed, n, ws, wsq, None))
    return rows


def _newest_labels(evaluator: str) -> Any:
    """SELECT trace_id, passed, item_id of the newest label of each (trace, evaluator)."""
    newer = _L.alias("newer_label")
    return select(_L.c.trace_id, _L.c.passed, _L.c.item_id).where(
        _L.c.evaluator_id == evaluator,
        ~exists().where(
            newer.c.evaluator_id == _L.c.evaluator_id, newer.c.trace_id == _L.c.trace_id, newer.c.id > _L.c.id
        ),
    )  # fmt: skip


def _label_rows(conn: Connection, spec: GateSpec, evaluator: str, traffic: ArmTraffic, wins: Sequence[Window],
                chosen: list[str]) -> list[Row]:  # fmt: skip
    """Corrections for human labels: per group of labelled evaluations, the judge's rows
    with negative counts and the human verdicts with positive ones (and their count).

    The newest label (by id) of each (trace, evaluator) with a ``passed``, LEFT JOINed to
    the arm's evaluation of that trace: the left side of a LEFT JOIN drives the loop, so
    the work follows the labels (an index seek each), not the arm's rows."""
    lab = _newest_labels(evaluator).where(~exists().where(_R.c.id == _L.c.item_id, _R.c.reasons == AUDIT_ONLY))
    lab = lab.subquery("lab")
    filters = trace_filter(spec)
    on = [
        # coalesce keeps the evaluator out of index choice: without statistics SQLite would
        # take the arm's index (evaluator, release, batch) and scan it once per label; what
        # finds a label's evaluation is (batch, trace)
        _E.c.trace_id == lab.c.trace_id, func.coalesce(_E.c.evaluator_id, "") == evaluator,
        _E.c.batch_id.in_(chosen), traffic.on(_E.c.release_id, _E.c.trace_ts), _E.c.status.in_(_LABELLED),
    ]  # fmt: skip
    if filters:
        on.append(exists().where(_T.c.trace_id == _E.c.trace_id, *filters))
    group = [_E.c.segment_key, window_case(wins, _E.c.trace_ts).label("w"), _E.c.evaluator_version, _E.c.status,
             _E.c.passed, lab.c.passed.label("human")]  # fmt: skip
    if spec.cluster == "session":
        group.append(select(_T.c.session_id_hash).where(_T.c.trace_id == _E.c.trace_id).scalar_subquery().label("sid"))
    stmt = (
        select(*group, func.count(_E.c.id), func.sum(_E.c.weight), func.sum(_E.c.weight * _E.c.weight))
        .select_from(lab.outerjoin(_E, and_(*on)))
        .where(lab.c.passed.is_not(None))
        .group_by(*(c.name if c.name in ("w", "human", "sid") else c for c in group))
    )
    rows: list[Row] = []
    for r in conn.execute(stmt):
        key, w, version, status, passed, human, *rest = r
        if status is None:  # a label on a trace this arm does not count
            continue
        sid = rest[0] if spec.cluster == "session" else None
        n, ws, wsq = rest[-3:]
        rows.append(_verdict_row(False, key, w, version, status, passed, -n, -ws, -wsq, sid))
        rows.append(_verdict_row(False, key, w, version, "scored", human, n, ws, wsq, sid, labels=n))
    return rows


AuditRow = tuple[str, int, bool, bool, int, float, float]
"""(segment key, window, judge failed, person failed, labels, Σv, Σv²)."""


def audit_rows(conn: Connection, spec: GateSpec, traffic: ArmTraffic, wins: Sequence[Window],
               chosen: list[str]) -> list[AuditRow]:  # fmt: skip
    """The arm's labelled audit items (module docstring): the newest label of each (trace,
    evaluator) whose review item the audit drew for the version the arm's batch scored."""
    evaluator = spec.metric.evaluator
    if not chosen or evaluator is None:
        return []
    lab = _newest_labels(evaluator).add_columns(_R.c.reasons, _R.c.inclusion_p, _R.c.evaluator_version.label("ver"))
    lab = lab.join(_R, _R.c.id == _L.c.item_id).where(_R.c.reasons.like('%"audit"%'), _L.c.passed.is_not(None))
    if traffic.rolling is None:  # the item records its release: the other releases' labels drop out early
        lab = lab.where(_R.c.release_id == traffic.release)
    lab = lab.subquery("audit_lab")
    filters = trace_filter(spec)
    on = [
        _E.c.trace_id == lab.c.trace_id, func.coalesce(_E.c.evaluator_id, "") == evaluator,
        _E.c.evaluator_version == lab.c.ver, _E.c.batch_id.in_(chosen),
        traffic.on(_E.c.release_id, _E.c.trace_ts), _E.c.status == "scored", _E.c.passed.is_not(None),
    ]  # fmt: skip
    if filters:
        on.append(exists().where(_T.c.trace_id == _E.c.trace_id, *filters))
    human_failed = lab.c.passed.is_(False)
    judge_failed = case((lab.c.reasons == AUDIT_ONLY, _E.c.passed.is_(False)), else_=human_failed)
    v = case((lab.c.inclusion_p > 0, 1.0 / lab.c.inclusion_p), else_=_E.c.weight)
    stmt = (
        select(_E.c.segment_key, window_case(wins, _E.c.trace_ts).label("w"), judge_failed.label("g"),
               human_failed.label("h"), func.count(), func.sum(v), func.sum(v * v))
        .select_from(lab.join(_E, and_(*on)))
        .group_by(_E.c.segment_key, "w", "g", "h")
    )  # fmt: skip
    return [(r[0], r[1], bool(r[2]), bool(r[3]), r[4], float(r[5]), float(r[6])) for r in conn.execute(stmt)]
