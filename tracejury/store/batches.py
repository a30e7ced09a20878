"""Queries of queued scoring batches: sampling inputs, chunks with leases, progress, end.

A chunk moves ``pending → running → done`` (or ``failed``). ``claim_chunk`` is an atomic
compare-and-set: only one worker holds a chunk, and a chunk whose lease expired (its worker
died) can be claimed again. Evaluation writes are idempotent, so a chunk run twice stores
each evaluation once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection, Engine, and_, func, or_, select, update

from tracejury.core.cost import capped_scale
from tracejury.core.sampling import SampleDraw
from tracejury.store.evaluations import reported_models
from tracejury.store.tables import Batch, BatchChunk, BatchTrace, EvaluationRow, StoredTrace

__all__ = [
    "SamplingRow",
    "add_batch_traces",
    "batch_config",
    "batch_progress",
    "batch_release",
    "batch_results",
    "chunk_trace_ids",
    "claim_chunk",
    "claim_next_chunk",
    "complete_chunk",
    "exhausted_chunks",
    "expired_chunks",
    "idle_running_batches",
    "fail_chunk",
    "stale_pending_chunks",
    "list_batches",
    "record_finalisers",
    "release_claim",
    "release_expired",
    "renew_lease",
    "sampling_rows",
    "try_finish_batch",
]

_B = Batch.__table__
_BC = BatchChunk.__table__
_BT = BatchTrace.__table__
_E = EvaluationRow.__table__
_T = StoredTrace.__table__


def _now() -> datetime:
    return datetime.now(UTC)


class SamplingRow(NamedTuple):
    """One trace of a release as sampling and gate sizing read it (``sampling_rows``)."""

    trace_id: str
    latency_ms: int
    truncated: bool
    tool_error: bool
    tool_timeout: bool
    retrieval_empty: bool
    negative_feedback: bool
    fallback_used: bool
    segment_key: str
    tool_required: bool | None
    format_invalid: bool


def sampling_rows(engine: Engine, release: str) -> list[SamplingRow]:
    """Per trace of a release: id, latency, the failure-signal columns sampling weighs, and
    the segment key and trace fields gates filter by (sizing a sample for the gates).

    Plain named tuples, not SQLAlchemy rows: sampling and gate sizing read every field of
    every trace, and a row's attribute access costs ~20 times a named tuple's."""
    stmt = select(*(_T.c[name] for name in SamplingRow._fields)).where(_T.c.release_id == release)
    with engine.connect() as conn:
        return list(map(SamplingRow._make, conn.execute(stmt.order_by(_T.c.trace_id))))


def add_batch_traces(engine: Engine, batch_id: str, draws: Sequence[SampleDraw], chunk_size: int) -> int:
    """Store a batch's sampled traces in chunks (all pending); returns the number of chunks."""
    now = _now()
    chunks = (len(draws) + chunk_size - 1) // chunk_size
    with engine.begin() as conn:
        if draws:
            conn.execute(_BT.insert(), [
                {"batch_id": batch_id, "trace_id": d.trace_id, "inclusion_prob": d.probability,
                 "chunk_no": i // chunk_size}
                for i, d in enumerate(draws)
            ])  # fmt: skip
        if chunks:
            conn.execute(_BC.insert(), [
                {"batch_id": batch_id, "chunk_no": c, "state": "pending", "updated_at": now,
                 "size": min(chunk_size, len(draws) - c * chunk_size)}
                for c in range(chunks)
            ])  # fmt: skip
    return chunks


def batch_config(engine: Engine, batch_id: str) -> dict[str, Any] | None:
    """The frozen config snapshot of a batch, or None if there is no such batch."""
    with engine.connect() as conn:
        raw = conn.execute(select(_B.c.config).where(_B.c.id == batch_id)).scalar_one_or_none()
    return orjson.loads(raw) if raw is not None else None


MAX_ATTEMPTS = 5
"""Claims of one chunk before it is failed for good (a chunk that kills its worker, say)."""


def claim_chunk(engine: Engine, batch_id: str, chunk_no: int, worker: str, lease_s: float) -> bool:
    """Take a chunk if it is pending or its lease expired, and it has attempts left; False if
    done, failed, held by another worker or out of attempts (the sweeper fails it then)."""
    now = _now()
    stmt = (
        update(_BC)
        .where(
            _BC.c.batch_id == batch_id,
            _BC.c.chunk_no == chunk_no,
            _BC.c.attempts < MAX_ATTEMPTS,
            or_(_BC.c.state == "pending", and_(_BC.c.state == "running", _BC.c.lease_until < now)),
        )
        .values(
            state="running",
            worker=worker,
            attempts=_BC.c.attempts + 1,
            lease_until=now + timedelta(seconds=lease_s),
            updated_at=now,
        )  # fmt: skip
    )
    with engine.begin() as conn:
        return conn.execute(stmt).rowcount == 1


def claim_next_chunk(engine: Engine, batch_id: str, worker: str, lease_s: float) -> int | None:
    """Take the lowest-numbered pending chunk of a batch (a worker keeping its judge busy
    across chunk boundaries takes the next one itself, while its current chunk's calls are in
    flight); None when no pending chunk is left. Its queued message then finds it taken (a
    no-op). Claims are compare-and-set, so two workers never take the same chunk."""
    stmt = select(_BC.c.chunk_no).where(_BC.c.batch_id == batch_id, _BC.c.state == "pending",
                                        _BC.c.attempts < MAX_ATTEMPTS).order_by(_BC.c.chunk_no).limit(8)  # fmt: skip
    for _ in range(3):  # another worker may take the ones we see first
        with engine.connect() as conn:
            pending = list(conn.execute(stmt).scalars())
        if not pending:
            return None
        for chunk_no in pending:
            if claim_chunk(engine, batch_id, chunk_no, worker, lease_s):
                return chunk_no
    return None


def renew_lease(engine: Engine, batch_id: str, chunk_no: int, worker: str, lease_s: float) -> bool:
    """Extend this worker's lease (heartbeat); False if it lost the chunk."""
    now = _now()
    stmt = (
        update(_BC)
        .where(
            _BC.c.batch_id == batch_id,
            _BC.c.chunk_no == chunk_no,
            _BC.c.state == "running",
            _BC.c.worker == worker,
        )  # fmt: skip
        .values(lease_until=now + timedelta(seconds=lease_s), updated_at=now)
    )
    with engine.begin() as conn:
        return conn.execute(stmt).rowcount == 1


def _held(batch_id: str, chunk_no: int, worker: str | None) -> list[Any]:
    conds = [_BC.c.batch_id == batch_id, _BC.c.chunk_no == chunk_no]
    if worker is not None:  # only the holder may end a running chunk
        conds += [_BC.c.state == "running", _BC.c.worker == worker]
    return conds


def _end_chunk(engine: Engine, batch_id: str, chunk_no: int, worker: str | None, **values: Any) -> bool:
    """Move a chunk to a final state (by its holder, when ``worker`` is given); True if it did."""
    with engine.begin() as conn:
        stmt = update(_BC).where(*_held(batch_id, chunk_no, worker))
        return conn.execute(stmt.values(lease_until=None, updated_at=_now(), **values)).rowcount == 1


def complete_chunk(engine: Engine, batch_id: str, chunk_no: int, worker: str | None = None) -> bool:
    """Mark a chunk done (by its holder, when ``worker`` is given); True if it was."""
    return _end_chunk(engine, batch_id, chunk_no, worker, state="done")


def fail_chunk(engine: Engine, batch_id: str, chunk_no: int, error: str, worker: str | None = None) -> bool:
    """Mark a chunk failed for good (its batch will end ``failed`` with this reason)."""
    return _end_chunk(engine, batch_id, chunk_no, worker, state="failed", error=error)


def cap_chunk(engine: Engine, batch_id: str, chunk_no: int, worker: str | None = None) -> bool:
    """Mark a chunk ``capped``: not run, as its batch's cost cap had no room for it (final)."""
    return _end_chunk(engine, batch_id, chunk_no, worker, state="capped")


def _scale_capped(conn: Connection, batch_id: str) -> dict[str, Any]:
    """A batch its cost cap stopped: scale the inclusion probabilities of the traces that ran
    (and their evaluations' weights) by the share of the sample that ran; returns the batch's
    ``costCap`` config with what happened."""
    sizes = dict(
        conn.execute(
            select(_BC.c.state, func.sum(_BC.c.size)).where(_BC.c.batch_id == batch_id).group_by(_BC.c.state)
        ).all()
    )
    chunks = dict(
        conn.execute(select(_BC.c.state, func.count()).where(_BC.c.batch_id == batch_id).group_by(_BC.c.state)).all()
    )
    sampled, ran = int(sum(sizes.values())), int(sizes.get("done", 0))
    config = orjson.loads(conn.execute(select(_B.c.config).where(_B.c.id == batch_id)).scalar_one())
    scale = capped_scale(ran, sampled)
    if ran:
        done = select(_BC.c.chunk_no).where(_BC.c.batch_id == batch_id, _BC.c.state == "done")
        conn.execute(update(_BT).where(_BT.c.batch_id == batch_id, _BT.c.chunk_no.in_(done))
                     .values(inclusion_prob=_BT.c.inclusion_prob * scale))  # fmt: skip
        conn.execute(update(_E).where(_E.c.batch_id == batch_id).values(weight=_E.c.weight / scale))
    cap = config.get("costCap", {}) | {
        "stopped": True, "chunks": int(sum(chunks.values())), "chunksRun": int(chunks.get("done", 0)),
        "tracesRun": ran, "inclusionScale": scale,
    }  # fmt: skip
    config["costCap"] = cap
    conn.execute(update(_B).where(_B.c.id == batch_id).values(config=orjson.dumps(config, option=orjson.OPT_SORT_KEYS)))
    return cap


def release_claim(engine: Engine, batch_id: str, chunk_no: int, worker: str) -> None:
    """Give a held chunk back (before a retry), so the retry can claim it at once."""
    with engine.begin() as conn:
        conn.execute(
            update(_BC)
            .where(*_held(batch_id, chunk_no, worker))
            .values(state="pending", lease_until=None, updated_at=_now())
        )


def exhausted_chunks(engine: Engine) -> list[tuple[str, int]]:
    """Chunks out of attempts that no live worker holds: to be failed for good."""
    stmt = select(_BC.c.batch_id, _BC.c.chunk_no).where(
        _BC.c.attempts >= MAX_ATTEMPTS,
        or_(_BC.c.state == "pending", and_(_BC.c.state == "running", _BC.c.lease_until < _now())),
    )
    with engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(stmt)]


def idle_running_batches(engine: Engine) -> list[str]:
    """Running batches with no pending or running chunk left (a crash between the last
    chunk and ending the batch): to be ended."""
    busy = select(_BC.c.batch_id).where(_BC.c.state.in_(["pending", "running"]))
    has_chunks = select(_BC.c.batch_id)
    stmt = select(_B.c.id).where(_B.c.state == "running", _B.c.kind == "queued",
                                 _B.c.id.not_in(busy), _B.c.id.in_(has_chunks))  # fmt: skip
    with engine.connect() as conn:
        return list(conn.execute(stmt).scalars())


def chunk_trace_ids(engine: Engine, batch_id: str, chunk_no: int) -> list[str]:
    """The trace ids of one chunk."""
    stmt = select(_BT.c.trace_id).where(_BT.c.batch_id == batch_id, _BT.c.chunk_no == chunk_no)
    with engine.connect() as conn:
        return list(conn.execute(stmt.order_by(_BT.c.trace_id)).scalars())


def expired_chunks(engine: Engine) -> list[tuple[str, int]]:
    """Running chunks whose lease expired (their worker died): to be enqueued again."""
    stmt = select(_BC.c.batch_id, _BC.c.chunk_no).where(_BC.c.state == "running", _BC.c.lease_until < _now())
    with engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(stmt)]


def stale_pending_chunks(engine: Engine, older_than_s: float) -> list[tuple[str, int]]:
    """Pending chunks untouched for ``older_than_s`` (their message may be lost: a broker
    restarted without persistence, an enqueue that failed). Marks them touched, so each is
    returned at most once per period; a duplicate message is harmless (claims are CAS)."""
    cutoff = _now() - timedelta(seconds=older_than_s)
    with engine.begin() as conn:
        rows = conn.execute(
            select(_BC.c.batch_id, _BC.c.chunk_no).where(_BC.c.state == "pending", _BC.c.updated_at < cutoff)
        ).all()
        for batch_id, chunk_no in rows:
            conn.execute(
                update(_BC)
                .where(_BC.c.batch_id == batch_id, _BC.c.chunk_no == chunk_no, _BC.c.state == "pending")
                .values(updated_at=_now())
            )
    return [(r[0], r[1]) for r in rows]


def release_expired(engine: Engine, batch_id: str, chunk_no: int) -> bool:
    """Put an expired running chunk back to pending; True for the one caller that did."""
    stmt = (
        update(_BC)
        .where(
            _BC.c.batch_id == batch_id,
            _BC.c.chunk_no == chunk_no,
            _BC.c.state == "running",
            _BC.c.lease_until < _now(),
        )  # fmt: skip
        .values(state="pending", worker=None, lease_until=None, updated_at=_now())
    )
    with engine.begin() as conn:
        return conn.execute(stmt).rowcount == 1


def try_finish_batch(engine: Engine, batch_id: str) -> str | None:
    """End the batch if no chunk is left pending or running: ``done``, or ``failed`` when a
    chunk failed. Returns the new state if this call ended it (exactly one caller does)."""
    with engine.begin() as conn:
        states = dict(
            conn.execute(
                select(_BC.c.state, func.count()).where(_BC.c.batch_id == batch_id).group_by(_BC.c.state)
            ).all()
        )
        if states.get("pending") or states.get("running"):
            return None
        errors = conn.execute(
            select(_BC.c.chunk_no, _BC.c.error).where(_BC.c.batch_id == batch_id, _BC.c.state == "failed")
        ).all()
        state = "failed" if errors else "done"
        reason = f"{len(errors)} chunk(s) failed; chunk {errors[0][0]}: {errors[0][1]}" if errors else None
        ended = conn.execute(
            update(_B)
            .where(_B.c.id == batch_id, _B.c.state == "running")
            .values(state=state, reason=reason, finished_at=_now(), judge_models=reported_models(conn, batch_id))
        ).rowcount
        if ended == 1 and states.get("capped") and not errors:  # after the CAS: one caller scales
            cap = _scale_capped(conn, batch_id)
            reason = (f"stopped by its cost cap (${cap['maxCostUsd']:g}) after {cap['chunksRun']} of {cap['chunks']}"
                      f" chunks ({cap['tracesRun']} traces); inclusion probabilities scaled by"
                      f" {cap['inclusionScale']:.4f}")  # fmt: skip
            conn.execute(update(_B).where(_B.c.id == batch_id).values(reason=reason))
    return state if ended == 1 else None


def record_finalisers(engine: Engine, batch_id: str, outcomes: dict[str, str]) -> None:
    """Merge finaliser outcomes (name → ``ok`` or ``failed: <one line>``) into the batch's
    config snapshot under ``finalisers``: a failed end-of-batch step is shown, never silent."""
    with engine.begin() as conn:
        raw = conn.execute(select(_B.c.config).where(_B.c.id == batch_id).with_for_update()).scalar_one_or_none()
        if raw is None:
            return
        config = orjson.loads(raw)
        config["finalisers"] = {**config.get("finalisers", {}), **outcomes}
        stored = orjson.dumps(config, option=orjson.OPT_SORT_KEYS)
        conn.execute(update(_B).where(_B.c.id == batch_id).values(config=stored))


def batch_progress(engine: Engine, batch_id: str) -> dict[str, Any] | None:
    """State, chunk counts, sampled traces, evaluation counts by status and failure kind."""
    with engine.connect() as conn:
        batch = conn.execute(select(_B).where(_B.c.id == batch_id)).one_or_none()
        if batch is None:
            return None
        chunks = dict(
            conn.execute(
                select(_BC.c.state, func.count()).where(_BC.c.batch_id == batch_id).group_by(_BC.c.state)
            ).all()
        )
        done_traces = conn.execute(
            select(func.coalesce(func.sum(_BC.c.size), 0)).where(_BC.c.batch_id == batch_id, _BC.c.state == "done")
        ).scalar_one()
        status = dict(
            conn.execute(select(_E.c.status, func.count()).where(_E.c.batch_id == batch_id).group_by(_E.c.status)).all()
        )
        failures = dict(
            conn.execute(
                select(_E.c.failure_kind, func.count())
                .where(_E.c.batch_id == batch_id, _E.c.status == "judge_failed")
                .group_by(_E.c.failure_kind)
            ).all()
        )
    return {
        "batch": batch,
        "chunks": chunks,
        "doneTraces": int(done_traces),
        "status": status,
        "failures": failures,
    }


def list_batches(engine: Engine, *, limit: int = 50) -> list[Any]:
    """Newest batches first."""
    with engine.connect() as conn:
        return list(conn.execute(select(_B).order_by(_B.c.created_at.desc()).limit(limit)))


def batch_results(engine: Engine, batch_id: str) -> list[Any]:
    """Per (evaluator, segment key, status, passed): evaluations and the sum of their weights
    1/p_i (written with each evaluation; 1 for inline batches that judged every trace)."""
    stmt = (
        select(_E.c.evaluator_id, _E.c.segment_key, _E.c.status, _E.c.passed, func.count(), func.sum(_E.c.weight))
        .where(_E.c.batch_id == batch_id)
        .group_by(_E.c.evaluator_id, _E.c.segment_key, _E.c.status, _E.c.passed)
    )
    with engine.connect() as conn:
        return list(conn.execute(stmt))


def batch_release(engine: Engine, batch_id: str) -> str | None:
    """The release a batch sampled, or None if there is no such batch."""
    with engine.connect() as conn:
        return conn.execute(select(_B.c.release_id).where(_B.c.id == batch_id)).scalar_one_or_none()
