"""Pruning in the store: the text of the traces a :class:`~tracejury.core.retention.Selection`
takes goes, their facts stay (``docs/retention.md``).

Work is done in batches of ``batch_size`` traces, one transaction each, walked by a keyset
(``(ts, trace_id)`` within a release through ``ix_trace_release_ts``; ``trace_id`` through the
primary key for a cutoff), so each batch is a short write and ingest waits for the lock (SQLite)
at most one batch at a time; rows of PostgreSQL are locked only while their batch runs. A
prune that stops half-way leaves whole batches pruned, and running it again finishes it.

On SQLite each prune transaction runs with ``PRAGMA secure_delete`` so freed text is
overwritten with zeros, not left in free pages; on PostgreSQL the old row versions stay on
disk until (auto)vacuum reclaims them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, delete, func, or_, select, update

from tracejury.core.retention import DEFAULT_BATCH_SIZE, PRUNED_BODY, PRUNED_STATE, PruneCounts, Selection
from tracejury.store.tables import EvaluationRow, QuarantinedLine, ReviewItem, ReviewLabel, StoredTrace, TraceConflict

__all__ = ["count_prunable", "prune"]

_T = StoredTrace.__table__
_E = EvaluationRow.__table__
_R = ReviewItem.__table__
_L = ReviewLabel.__table__
_C = TraceConflict.__table__
_Q = QuarantinedLine.__table__

_OPEN = ("pending", "claimed")


def _not_pruned() -> Any:
    return func.length(_T.c.body) > 0


def _where(selection: Selection) -> Any:
    if selection.release is not None:
        return _T.c.release_id == selection.release
    return _T.c.ts < selection.before


def _counts(conn: Connection, ids: Any) -> PruneCounts:
    """How many rows a prune of the traces ``ids`` (a subquery or an expanding bindparam) takes."""

    def n(table: Any, *conds: Any) -> int:
        return conn.execute(select(func.count()).select_from(table).where(*conds)).scalar_one()

    return PruneCounts(
        traces=0,
        evaluations=n(_E, _E.c.trace_id.in_(ids), _E.c.rationale.is_not(None)),
        review_items_closed=n(_R, _R.c.trace_id.in_(ids), _R.c.state.in_(_OPEN)),
        review_labels=n(_L, _L.c.trace_id.in_(ids), _L.c.rationale.is_not(None)),
        conflicts=n(_C, _C.c.trace_id.in_(ids)),
    )


def count_prunable(engine: Engine, selection: Selection) -> PruneCounts:
    """What :func:`prune` would take now, changing nothing (``--dry-run``)."""
    ids = select(_T.c.trace_id).where(_where(selection), _not_pruned())
    with engine.connect() as conn:
        traces = conn.execute(select(func.count()).where(_where(selection), _not_pruned())).scalar_one()
        counts = _counts(conn, ids)
        quarantined = 0
        if selection.before is not None:
            quarantined = conn.execute(select(func.count()).where(_Q.c.at < selection.before)).scalar_one()
    return PruneCounts(traces, counts.evaluations, counts.review_items_closed, counts.review_labels,
                       counts.conflicts, quarantined)  # fmt: skip


def _next_batch(conn: Connection, selection: Selection, after: tuple[Any, ...] | None, size: int) -> list[Any]:
    """The next ``size`` traces of the selection after the keyset ``after`` (pruned ones too:
    skipping them in SQL would make a rerun rescan them; they are filtered in Python)."""
    if selection.release is not None:
        stmt = select(_T.c.ts, _T.c.trace_id, _not_pruned().label("live")).where(_T.c.release_id == selection.release)
        if after is not None:
            ts, tid = after
            stmt = stmt.where(or_(_T.c.ts > ts, and_(_T.c.ts == ts, _T.c.trace_id > tid)))
        stmt = stmt.order_by(_T.c.ts, _T.c.trace_id)
    else:
        stmt = select(_T.c.trace_id, _not_pruned().label("live")).where(_T.c.ts < selection.before)
        if after is not None:
            stmt = stmt.where(_T.c.trace_id > after[0])
        stmt = stmt.order_by(_T.c.trace_id)
    return conn.execute(stmt.limit(size)).all()


def _prune_ids(conn: Connection, ids: list[str], now: datetime) -> PruneCounts:
    """Prune these traces (all still live) in the caller's transaction."""
    p = {"ids": ids}
    in_ids = bindparam("ids", expanding=True)
    traces = conn.execute(update(_T).where(_T.c.trace_id.in_(in_ids)).values(body=PRUNED_BODY), p).rowcount
    evaluations = conn.execute(
        update(_E).where(_E.c.trace_id.in_(in_ids), _E.c.rationale.is_not(None)).values(rationale=None), p
    ).rowcount
    items = conn.execute(
        update(_R).where(_R.c.trace_id.in_(in_ids), _R.c.state.in_(_OPEN))
        .values(state=PRUNED_STATE, lease_expires_at=None, updated_at=now), p
    ).rowcount  # fmt: skip
    labels = conn.execute(
        update(_L).where(_L.c.trace_id.in_(in_ids), _L.c.rationale.is_not(None)).values(rationale=None), p
    ).rowcount
    conflicts = conn.execute(delete(_C).where(_C.c.trace_id.in_(in_ids)), p).rowcount
    return PruneCounts(traces, evaluations, items, labels, conflicts)


def _begin(engine: Engine) -> Any:
    conn = engine.connect()
    if engine.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA secure_delete=ON")
        conn.commit()
    return conn


def prune(
    engine: Engine,
    selection: Selection,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    now: datetime | None = None,
    progress: Callable[[PruneCounts], None] | None = None,
) -> PruneCounts:
    """Prune the selection's traces, ``batch_size`` traces per transaction; with a cutoff, also
    delete the quarantined lines set aside before it. Returns what was taken; ``progress`` is
    called with the running total after each batch."""
    now = now or datetime.now(UTC)
    total = PruneCounts()
    after: tuple[Any, ...] | None = None
    with _begin(engine) as conn:
        while True:
            with conn.begin():
                rows = _next_batch(conn, selection, after, batch_size)
                if not rows:
                    break
                last = rows[-1]
                after = (last.ts, last.trace_id) if selection.release is not None else (last.trace_id,)
                live = [r.trace_id for r in rows if r.live]
                if live:
                    total = total + _prune_ids(conn, live, now)
            if progress is not None and live:
                progress(total)
        if selection.before is not None:
            total = total + PruneCounts(quarantined=_prune_quarantine(conn, selection.before, batch_size))
    return total


def _prune_quarantine(conn: Connection, before: datetime, batch_size: int) -> int:
    """Delete quarantined lines set aside before ``before``, a batch per transaction."""
    deleted = 0
    while True:
        with conn.begin():
            ids = select(_Q.c.id).where(_Q.c.at < before).order_by(_Q.c.id).limit(batch_size)
            n = conn.execute(delete(_Q).where(_Q.c.id.in_(ids))).rowcount
        deleted += n
        if n < batch_size:
            return deleted
