"""Ingest's I/O half: stream lines, batch them, and write traces, stages, quarantine and
conflict rows with Core ``INSERT`` executemany (the ORM's ``add_all`` is ~10x slower).

Memory stays flat in input size: at most ``batch_size`` prepared traces are held at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, bindparam, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from tracejury.core.errors import InvalidTrace
from tracejury.core.ingest import IngestCounts, PreparedTrace, prepare_line, triage
from tracejury.core.segments import SegmentationConfig
from tracejury.core.validation import TraceValidator
from tracejury.store.tables import QuarantinedLine, StoredTrace, TraceConflict, TraceStage

__all__ = ["ingest_lines"]

_TRACE: Table = StoredTrace.__table__  # type: ignore[assignment]
_STAGE: Table = TraceStage.__table__  # type: ignore[assignment]
_QUARANTINE: Table = QuarantinedLine.__table__  # type: ignore[assignment]
_CONFLICT: Table = TraceConflict.__table__  # type: ignore[assignment]
_SELECT_STORED = select(_TRACE.c.trace_id, _TRACE.c.content_hash).where(
    _TRACE.c.trace_id.in_(bindparam("ids", expanding=True))
)


def _insert_ignoring_conflicts(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT rows, skipping any that collide with a unique key (a concurrent ingest, a rerun)."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    elif dialect == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing()
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        stmt = insert(table)
    conn.execute(stmt, rows)


def _trace_row(p: PreparedTrace, now: datetime) -> dict[str, Any]:
    row = asdict(p.facts)
    del row["stage_latency_ms"], row["tool_calls"]  # stages have their own table
    row.update(
        tool_called=p.facts.tool_called,
        trace_id=p.trace_id,
        release_id=p.release_id,
        ts=p.ts,
        segment_key=p.segment_key,
        segmentation_version=p.segmentation_version,
        content_hash=p.content_hash,
        session_id_hash=p.session_id_hash,
        body=p.body,
        ingested_at=now,
    )
    return row


class _Batch:
    """Prepared traces and quarantined lines waiting for one transaction."""

    def __init__(self) -> None:
        self.traces: list[PreparedTrace] = []
        self.quarantine: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self.traces) + len(self.quarantine)

    def flush(self, engine: Engine, source: str) -> IngestCounts:
        counts = IngestCounts(quarantined=len(self.quarantine))
        now = datetime.now(UTC)
        with engine.begin() as conn:
            ids = list({p.trace_id for p in self.traces})
            stored = dict(conn.execute(_SELECT_STORED, {"ids": ids}).all()) if ids else {}
            split = triage(self.traces, stored)
            _insert_ignoring_conflicts(conn, _TRACE, [_trace_row(p, now) for p in split.new])
            stages = [
                {"trace_id": p.trace_id, "stage": stage, "latency_ms": ms}
                for p in split.new
                for stage, ms in p.facts.stage_latency_ms.items()
            ]
            _insert_ignoring_conflicts(conn, _STAGE, stages)
            _insert_ignoring_conflicts(conn, _CONFLICT, [
                {"trace_id": p.trace_id, "source": source, "line_no": p.line_no,
                 "stored_hash": kept, "incoming_hash": p.content_hash, "body": p.body, "at": now}
                for p, kept in split.conflicts
            ])  # fmt: skip
            for row in self.quarantine:
                row["at"] = now
            _insert_ignoring_conflicts(conn, _QUARANTINE, self.quarantine)
        counts.ingested = len(split.new)
        counts.duplicates = len(split.duplicates)
        counts.conflicts = len(split.conflicts)
        self.traces, self.quarantine = [], []
        return counts


def ingest_lines(
    engine: Engine,
    source: str,
    lines: Iterable[tuple[int, bytes]],
    *,
    segmentation: SegmentationConfig,
    validator: TraceValidator | None = None,
    batch_size: int = 5000,
) -> IngestCounts:
    """Ingest ``(line number, raw line)`` pairs from one source; blank lines are skipped.

    Good lines are stored, bad ones quarantined with their line number and reason; one bad
    line never stops the rest. Each batch commits on its own, so a crash loses at most the
    batch in flight, and rerunning the same input only adds duplicates to the counts.
    """
    validator = validator or TraceValidator()
    total = IngestCounts()
    batch = _Batch()
    for line_no, raw in lines:
        if not raw.strip():
            continue
        try:
            batch.traces.append(
                prepare_line(raw, line_no=line_no, validator=validator, segmentation=segmentation)
            )
        except InvalidTrace as exc:
            batch.quarantine.append({
                "source": source, "line_no": line_no, "trace_id": exc.trace_id,
                "json_path": exc.path, "message": exc.message, "raw": bytes(raw),
                "raw_hash": hashlib.sha256(raw).hexdigest(),
            })  # fmt: skip
        if len(batch) >= batch_size:
            total.add(batch.flush(engine, source))
    if len(batch):
        total.add(batch.flush(engine, source))
    return total
