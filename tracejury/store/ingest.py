"""Ingest's I/O half: stream lines, prepare them (in worker processes for big inputs), and
write traces, stages, quarantine and conflict rows with the driver's ``executemany``.

Memory stays flat in input size: at most ``batch_size`` lines per batch and a bounded
number of batches in flight. Each batch commits on its own, so a crash loses at most the
batches in flight, and rerunning the same input only adds duplicates to the counts.

    reader ──lines──► [prepare: parse, validate, segment, hash] ──batches, in order──► writer
                       (core.ingest.prepare_chunk; N processes)                      (one txn each)
"""

from __future__ import annotations

import itertools
import multiprocessing
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from queue import Queue
from typing import Any, NamedTuple

from sqlalchemy import Boolean, Connection, Dialect, Engine, Table, bindparam, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from tracejury.core.ingest import (
    IngestCounts,
    PreparedTrace,
    RejectedLine,
    prepare_chunk,
    triage,
)
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


def _bind_processors(
    dialect: Dialect, table: Table, keys: tuple[str, ...]
) -> list[tuple[int, Any]]:
    """(position, processor) for the columns whose values the driver cannot take as they are.

    Both drivers bind Python bools, ints, strs and bytes natively; datetimes need the
    column type's processor (UTC, and SQLite's text form).
    """
    return [
        (i, proc)
        for i, k in enumerate(keys)
        if not isinstance(table.c[k].type, Boolean)
        and (proc := table.c[k].type._cached_bind_processor(dialect))
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
    if dialect.name == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    elif dialect.name == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing()
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        stmt = insert(table)
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


_TRACE_KEYS = (
    "trace_id", "release_id", "ts", "segment_key", "segmentation_version", "content_hash",
    "session_id_hash", "latency_ms", "input_tokens", "completion_tokens", "truncated",
    "format_invalid", "fallback_used", "rag_on", "retrieval_empty", "tool_required",
    "tool_called", "tool_error", "tool_timeout", "guard_block", "negative_feedback",
    "has_sample", "body", "ingested_at",
)  # fmt: skip
_STAGE_KEYS = ("trace_id", "stage", "latency_ms")
_CONFLICT_KEYS = ("trace_id", "source", "line_no", "stored_hash", "incoming_hash", "body", "at")
_QUARANTINE_KEYS = (
    "source", "line_no", "trace_id", "json_path", "message", "raw", "raw_hash", "at",
)  # fmt: skip


def _trace_row(p: PreparedTrace, now: datetime) -> tuple[Any, ...]:
    f = p.facts  # spelled out: dataclasses.asdict deep-copies and was 40% of ingest time
    return (
        p.trace_id, p.release_id, p.ts, p.segment_key, p.segmentation_version, p.content_hash,
        p.session_id_hash, f.latency_ms, f.input_tokens, f.completion_tokens, f.truncated,
        f.format_invalid, f.fallback_used, f.rag_on, f.retrieval_empty, f.tool_required,
        f.tool_called, f.tool_error, f.tool_timeout, f.guard_block, f.negative_feedback,
        f.has_sample, p.body, now,
    )  # fmt: skip


class _Key(NamedTuple):
    """What the writer needs to triage one prepared trace without the trace itself."""

    trace_id: str
    content_hash: str
    line_no: int
    index: int
    """Position in ``_RowBatch.trace_rows``."""


_BODY = _TRACE_KEYS.index("body")


@dataclass
class _RowBatch:
    """A prepared chunk as driver-ready rows, built (and pickled back) where it was prepared."""

    keys: list[_Key]
    trace_rows: list[tuple[Any, ...]]
    stage_rows: list[list[tuple[Any, ...]]]
    """Aligned with ``trace_rows``: the stage rows of each trace."""
    rejected: list[RejectedLine]

    @classmethod
    def build(
        cls, batch: tuple[list[PreparedTrace], list[RejectedLine]], dialect: Dialect
    ) -> _RowBatch:
        traces, rejected = batch
        now = datetime.now(UTC)
        procs = _bind_processors(dialect, _TRACE, _TRACE_KEYS)
        return cls(
            keys=[_Key(p.trace_id, p.content_hash, p.line_no, i) for i, p in enumerate(traces)],
            trace_rows=_process([_trace_row(p, now) for p in traces], procs),
            stage_rows=[
                [(p.trace_id, k, ms) for k, ms in p.facts.stage_latency_ms.items()] for p in traces
            ],
            rejected=rejected,
        )


def _write_batch(engine: Engine, source: str, batch: _RowBatch) -> IngestCounts:
    """Store one prepared batch in one transaction."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        ids = list({k.trace_id for k in batch.keys})
        stored = dict(conn.execute(_SELECT_STORED, {"ids": ids}).all()) if ids else {}
        split = triage(batch.keys, stored)
        new = [k.index for k in split.new]
        _insert_ignoring_conflicts(conn, _TRACE, _TRACE_KEYS, [batch.trace_rows[i] for i in new])
        stages = [row for i in new for row in batch.stage_rows[i]]
        _insert_ignoring_conflicts(conn, _STAGE, _STAGE_KEYS, stages)
        conflicts = [
            (
                k.trace_id,
                source,
                k.line_no,
                kept,
                k.content_hash,
                batch.trace_rows[k.index][_BODY],
                now,
            )
            for k, kept in split.conflicts
        ]
        procs = _bind_processors(conn.dialect, _CONFLICT, _CONFLICT_KEYS)
        _insert_ignoring_conflicts(conn, _CONFLICT, _CONFLICT_KEYS, _process(conflicts, procs))
        quarantine = [
            (source, r.line_no, r.trace_id, r.path, r.message, r.raw, r.raw_hash, now)
            for r in batch.rejected
        ]
        procs = _bind_processors(conn.dialect, _QUARANTINE, _QUARANTINE_KEYS)
        _insert_ignoring_conflicts(conn, _QUARANTINE, _QUARANTINE_KEYS, _process(quarantine, procs))
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


# Per worker process: built once by the pool initializer, reused for every chunk.
_worker_state: dict[str, Any] = {}


def _init_worker(segmentation: SegmentationConfig, drivername: str) -> None:
    _worker_state["validator"] = TraceValidator()
    _worker_state["segmentation"] = segmentation
    _worker_state["dialect"] = make_url(f"{drivername}://").get_dialect()()


def _prepare_in_worker(chunk: list[tuple[int, bytes]]) -> _RowBatch:
    prepared = prepare_chunk(
        chunk,
        validator=_worker_state["validator"],
        segmentation=_worker_state["segmentation"],
    )
    return _RowBatch.build(prepared, _worker_state["dialect"])


def _prepared_in_pool(
    chunks: Iterator[list[tuple[int, bytes]]],
    segmentation: SegmentationConfig,
    drivername: str,
    workers: int,
) -> Iterator[_RowBatch]:
    """Prepare chunks in ``workers`` processes, yielding in input order, 2 per worker in flight."""
    ctx = multiprocessing.get_context("spawn")
    init = {"initializer": _init_worker, "initargs": (segmentation, drivername)}
    with ProcessPoolExecutor(workers, ctx, **init) as pool:  # type: ignore[arg-type]
        pending: deque[Future[_RowBatch]] = deque()
        for chunk in chunks:
            pending.append(pool.submit(_prepare_in_worker, chunk))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def ingest_lines(
    engine: Engine,
    source: str,
    lines: Iterable[tuple[int, bytes]],
    *,
    segmentation: SegmentationConfig,
    batch_size: int = 5000,
    workers: int = 0,
) -> IngestCounts:
    """Ingest ``(line number, raw line)`` pairs from one source; blank lines are skipped.

    Good lines are stored, bad ones quarantined with their line number and reason; one bad
    line never stops the rest. ``workers`` > 0 prepares lines in that many processes while
    this one writes (worth it for files, not for a small HTTP body).
    """
    chunks = _chunks(lines, batch_size)
    if workers > 0:
        batches = _prepared_in_pool(chunks, segmentation, engine.url.drivername, workers)
    else:
        validator = TraceValidator()
        batches = (
            _RowBatch.build(
                prepare_chunk(c, validator=validator, segmentation=segmentation), engine.dialect
            )
            for c in chunks
        )
    return _write_behind(engine, source, batches)


def _write_behind(engine: Engine, source: str, batches: Iterator[_RowBatch]) -> IngestCounts:
    """Write batches in a thread while the caller's thread prepares the next ones.

    sqlite3 and psycopg release the GIL while the database works, so preparing (Python) and
    writing (mostly C and disk) overlap. At most two batches wait in the queue. An error in
    the writer stops the producer and is raised here, after what was written is committed.
    """
    total = IngestCounts()
    queue: Queue[_RowBatch | None] = Queue(maxsize=2)
    failure: list[BaseException] = []

    def writer() -> None:
        while (batch := queue.get()) is not None:
            if failure:
                continue  # drain without writing: an earlier batch failed
            try:
                total.add(_write_batch(engine, source, batch))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                failure.append(exc)

    thread = threading.Thread(target=writer, name="tracejury-ingest-writer", daemon=True)
    thread.start()
    try:
        for batch in batches:
            if failure:
                break
            queue.put(batch)
    finally:
        queue.put(None)
        thread.join()
    if failure:
        raise failure[0]
    return total
