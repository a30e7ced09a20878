"""Ingest's I/O half: stream lines, prepare them (in worker processes for big inputs), and
write traces, stages, quarantine and conflict rows with the driver's ``executemany``.

Memory stays flat in input size: at most ``batch_size`` lines per batch and a bounded
number of batches in flight. Each batch commits on its own, so a crash loses at most the
batches in flight, and rerunning the same input only adds duplicates to the counts.

Concurrent ingests of overlapping ids (two files, two API requests) count right: a batch
first inserts the first occurrence of each id (``ON CONFLICT DO NOTHING``, in id order so two
PostgreSQL transactions never wait on each other in a cycle) and learns from ``RETURNING``
which rows it really inserted; only the others are read back and triaged as duplicates or
conflicts against what the store holds — whoever stored them, before or meanwhile.

    reader ──chunks of lines──► process k: prepare (parse, validate, segment, hash, rows)
                                         then, on its turn, write (one transaction per chunk)

Measured on 2 cores (bench/ingest.py): the work per trace is about half preparing (JSON
parsing dominates) and half SQLite. Preparing in parallel and passing only raw lines and
counts between processes is what reaches the target; shipping prepared rows back to one
writer process cost as much in pickling as it saved.
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, Connection, Dialect, Engine, Table, bindparam, select

from tracejury.core.ingest import IngestCounts, RejectedLine, prepare_chunk, triage
from tracejury.core.redaction import Redactor
from tracejury.core.segments import SegmentationConfig
from tracejury.core.validation import TraceValidator
from tracejury.store.engine import insert_ignoring_conflicts, make_engine
from tracejury.store.rows import (
    BODY,
    TRACE_KEYS,
    TS,
    RowBatch,
    build_rows,
)
from tracejury.store.rows import STAGE_KEYS as _STAGE_KEYS
from tracejury.store.tables import QuarantinedLine, StoredTrace, TraceConflict, TraceStage

__all__ = ["ingest_lines", "quarantine_lines", "quarantine_rows", "write_rows"]

_TRACE: Table = StoredTrace.__table__  # type: ignore[assignment]
_STAGE: Table = TraceStage.__table__  # type: ignore[assignment]
_QUARANTINE: Table = QuarantinedLine.__table__  # type: ignore[assignment]
_CONFLICT: Table = TraceConflict.__table__  # type: ignore[assignment]
_SELECT_STORED = select(_TRACE.c.trace_id, _TRACE.c.content_hash).where(
    _TRACE.c.trace_id.in_(bindparam("ids", expanding=True))
)
_ROWS_PER_INSERT = 100
"""Rows per multi-row INSERT: as fast as ``executemany`` on SQLite (measured: 57k vs 59k rows/s
of 25 columns and 2 KiB), where 500–1,200 rows per statement were slower and held MiBs per
cached prepared statement."""


def _bind_processors(dialect: Dialect, table: Table, keys: tuple[str, ...]) -> list[tuple[int, Any]]:
    """(position, processor) for the columns whose values the driver cannot take as they are.

    Both drivers bind Python bools, ints, strs and bytes natively; datetimes need the
    column type's processor (UTC, and SQLite's text form).
    """
    return [
        (i, proc)
        for i, k in enumerate(keys)
        if not isinstance(table.c[k].type, Boolean) and (proc := table.c[k].type._cached_bind_processor(dialect))
    ]


def _process(rows: list[tuple[Any, ...]], procs: list[tuple[int, Any]]) -> list[tuple[Any, ...]]:
    if not procs:
        return rows
    out = []
    for row in rows:
        values = list(row)
        for i, proc in procs:
            values[i] = proc(values[i])
        out.append(tuple(values))
    return out


def _insert_ignoring_conflicts(
    conn: Connection, table: Table, keys: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    """INSERT rows (driver-ready tuples in ``keys`` order), skipping any that collide with a
    unique key (a concurrent ingest, a rerun).

    The statement is compiled once and run with the driver's ``executemany``: SQLAlchemy's
    per-row parameter bookkeeping cost more than SQLite's own work.
    """
    if not rows:
        return
    dialect = conn.dialect
    stmt = insert_ignoring_conflicts(table, dialect)
    compiled = stmt.compile(dialect=dialect, column_keys=list(keys))
    params: list[Any]
    if not compiled.positional:
        params = [dict(zip(keys, row, strict=True)) for row in rows]
    elif tuple(compiled.positiontup or ()) == keys:
        params = rows
    else:
        index = [keys.index(k) for k in compiled.positiontup or ()]
        params = [tuple(row[i] for i in index) for row in rows]
    conn.exec_driver_sql(compiled.string, params)


@functools.lru_cache(maxsize=32)
def _multi_insert_sql(dialect: Dialect, table: Table, keys: tuple[str, ...], rows: int, returning: str) -> str:
    """``INSERT … VALUES (…), (…) ON CONFLICT DO NOTHING RETURNING <returning>`` for ``rows``
    rows of positional parameters (the drivers' executemany drops RETURNING rows)."""
    quote = dialect.identifier_preparer.quote
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    group = "(" + ", ".join([mark] * len(keys)) + ")"
    return (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(k) for k in keys)}) VALUES "
        + ", ".join([group] * rows)
        + f" ON CONFLICT DO NOTHING RETURNING {quote(returning)}"
    )


def _insert_returning(
    conn: Connection, table: Table, keys: tuple[str, ...], rows: list[tuple[Any, ...]], returning: str
) -> set[Any]:
    """INSERT rows (driver-ready tuples in ``keys`` order), skipping any that collide with a
    unique key; returns the ``returning`` column of the rows really inserted."""
    dialect = conn.dialect
    per_statement = max(1, min(_ROWS_PER_INSERT, 32766 // len(keys)))  # SQLite ≥ 3.32 takes 32,766 parameters
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    inserted: set[Any] = set()
    try:
        for start in range(0, len(rows), per_statement):
            part = rows[start : start + per_statement]
            cursor.execute(_multi_insert_sql(dialect, table, keys, len(part), returning),
                           [v for row in part for v in row])  # fmt: skip
            inserted.update(r[0] for r in cursor.fetchall())
    finally:
        cursor.close()
    return inserted


_CONFLICT_KEYS = ("trace_id", "source", "line_no", "stored_hash", "incoming_hash", "body", "at")
_QUARANTINE_KEYS = (
    "source", "line_no", "trace_id", "json_path", "message", "raw", "raw_hash", "at",
)  # fmt: skip
_TRACE_KEYS = (*TRACE_KEYS, "ingested_at")


def _quarantine(conn: Connection, source: str, rejected: list[RejectedLine], now: datetime) -> None:
    rows = [(source, r.line_no, r.trace_id, r.path, r.message, r.raw, r.raw_hash, now) for r in rejected]
    procs = _bind_processors(conn.dialect, _QUARANTINE, _QUARANTINE_KEYS)
    _insert_ignoring_conflicts(conn, _QUARANTINE, _QUARANTINE_KEYS, _process(rows, procs))


def _write_batch(engine: Engine, source: str, batch: RowBatch) -> IngestCounts:
    """Store one prepared batch in one transaction."""
    with engine.begin() as conn:
        return write_rows(conn, source, batch)


def write_rows(conn: Connection, source: str, batch: RowBatch) -> IngestCounts:
    """Store one prepared batch in the caller's transaction (the OTLP sweeper stores the traces
    it assembles in the transaction that takes their staged spans)."""
    now = datetime.now(UTC)
    first: dict[str, int] = {}  # id -> index of its first occurrence in the batch: the one to store
    for k in batch.keys:
        first.setdefault(k.trace_id, k.index)
    ts = _TRACE.c.ts.type._cached_bind_processor(conn.dialect) or (lambda v: v)
    at = ts(now)
    rows = [batch.trace_rows[first[trace_id]] for trace_id in sorted(first)]
    rows = [(*r[:TS], ts(r[TS]), *r[TS + 1 :], at) for r in rows]
    inserted = _insert_returning(conn, _TRACE, _TRACE_KEYS, rows, "trace_id")
    # the ids this batch did not insert were stored before, or by another ingest meanwhile
    others = [trace_id for trace_id in first if trace_id not in inserted]
    stored = dict(conn.execute(_SELECT_STORED, {"ids": others}).all()) if others else {}
    split = triage(batch.keys, stored)
    new = [k.index for k in split.new]
    stages = [row for i in new for row in batch.stage_rows[i]]
    _insert_ignoring_conflicts(conn, _STAGE, _STAGE_KEYS, stages)
    conflicts = [
        (
            k.trace_id,
            source,
            k.line_no,
            kept,
            k.content_hash,
            batch.trace_rows[k.index][BODY],
            now,
        )
        for k, kept in sorted(split.conflicts, key=lambda c: (c[0].trace_id, c[0].content_hash))
    ]
    procs = _bind_processors(conn.dialect, _CONFLICT, _CONFLICT_KEYS)
    _insert_ignoring_conflicts(conn, _CONFLICT, _CONFLICT_KEYS, _process(conflicts, procs))
    _quarantine(conn, source, batch.rejected, now)
    return IngestCounts(
        ingested=len(split.new),
        duplicates=len(split.duplicates),
        conflicts=len(split.conflicts),
        quarantined=len(batch.rejected),
    )


def _chunks(lines: Iterable[tuple[int, bytes]], size: int) -> Iterator[list[tuple[int, bytes]]]:
    it = iter(lines)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


# State of one ingest process, set by the pool initializer and reused for every chunk.
_worker: dict[str, Any] = {}


def _init_worker(url: str, segmentation: SegmentationConfig, redaction: Redactor | None, turn: Any,
                 next_turn: Any) -> None:  # fmt: skip
    _worker.update(
        engine=make_engine(url),
        validator=TraceValidator(),
        segmentation=segmentation,
        redaction=redaction,
        turn=turn,
        next_turn=next_turn,
    )


def _prepare_and_write(seq: int, source: str, chunk: list[tuple[int, bytes]]) -> IngestCounts:
    """Prepare a chunk (in parallel with the other processes), then write it in input order."""
    w = _worker
    batch = build_rows(*prepare_chunk(chunk, validator=w["validator"], segmentation=w["segmentation"],
                                      redaction=w["redaction"]))  # fmt: skip
    with w["turn"]:
        w["turn"].wait_for(lambda: w["next_turn"].value == seq)
    try:
        return _write_batch(w["engine"], source, batch)
    finally:  # pass the turn on even when this write failed, so no one waits forever
        with w["turn"]:
            w["next_turn"].value = seq + 1
            w["turn"].notify_all()


def _ingest_in_pool(
    url: str,
    source: str,
    chunks: Iterator[list[tuple[int, bytes]]],
    segmentation: SegmentationConfig,
    workers: int,
    redaction: Redactor | None = None,
) -> IngestCounts:
    """Prepare and write chunks in ``workers`` processes: preparing overlaps, writes happen
    one at a time in input order (so "first occurrence wins" follows the file), and only
    raw lines and counts cross process boundaries. At most 2 chunks per process in flight."""
    ctx = multiprocessing.get_context("spawn")
    turn, next_turn = ctx.Condition(), ctx.Value("q", 0)
    init = {"initializer": _init_worker, "initargs": (url, segmentation, redaction, turn, next_turn)}
    total = IngestCounts()
    with ProcessPoolExecutor(workers, ctx, **init) as pool:  # type: ignore[arg-type]
        pending: deque[Future[IngestCounts]] = deque()
        for seq, chunk in enumerate(chunks):
            pending.append(pool.submit(_prepare_and_write, seq, source, chunk))
            if len(pending) >= 2 * workers:
                total.add(pending.popleft().result())
        while pending:
            total.add(pending.popleft().result())
    return total


@functools.cache
def _validator() -> TraceValidator:
    """One compiled schema per process (0.25 ms to build; an HTTP request may carry one trace)."""
    return TraceValidator()


def ingest_lines(
    engine: Engine,
    source: str,
    lines: Iterable[tuple[int, bytes]],
    *,
    segmentation: SegmentationConfig,
    batch_size: int = 5000,
    workers: int = 0,
    rejected: list[RejectedLine] | None = None,
    redaction: Redactor | None = None,
) -> IngestCounts:
    """Ingest ``(line number, raw line)`` pairs from one source; blank lines are skipped.

    Good lines are stored, bad ones quarantined with their line number and reason; one bad
    line never stops the rest. With ``workers`` > 0, an input of more than one batch is
    prepared and written by that many processes; a small input (an HTTP body, a test file)
    never pays for starting them. ``rejected``, if given, receives the quarantined lines
    (in-process ingest only: ``workers`` must be 0), so a caller can name them without
    preparing the input twice. Every trace and quarantined line is redacted by ``redaction``
    first (None: the shipped default policy; ``Redactor.off()`` turns it off).
    """
    if rejected is not None and workers > 0:
        raise ValueError("rejected lines are collected by in-process ingest only (workers=0)")
    chunks = _chunks(lines, batch_size)
    first = next(chunks, [])
    second = next(chunks, None)
    if workers > 0 and second is not None:  # more than one batch: worth starting processes
        url = engine.url.render_as_string(hide_password=False)
        rest = itertools.chain([first, second], chunks)
        return _ingest_in_pool(url, source, rest, segmentation, workers, redaction)
    validator = _validator()
    total = IngestCounts()
    for chunk in itertools.chain([first], [second] if second else [], chunks):
        batch = build_rows(*prepare_chunk(chunk, validator=validator, segmentation=segmentation,
                                          redaction=redaction))  # fmt: skip
        total.add(_write_batch(engine, source, batch))
        if rejected is not None:
            rejected.extend(batch.rejected)
    return total


def quarantine_lines(engine: Engine, source: str, lines: list[RejectedLine]) -> None:
    """Quarantine lines that never reached validation (an OTLP trace that could not be mapped
    to a trace), kept like ingest's own: source, line, trace id, path, message, raw input."""
    with engine.begin() as conn:
        _quarantine(conn, source, lines, datetime.now(UTC))


def quarantine_rows(conn: Connection, source: str, lines: list[RejectedLine]) -> None:
    """``quarantine_lines`` in the caller's transaction."""
    _quarantine(conn, source, lines, datetime.now(UTC))
