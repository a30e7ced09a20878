"""Queued batch mechanics on a real SQLite store, without Celery: sampling into chunks,
compare-and-set claims, leases, the sweeper, ending a batch once, finalisers."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from judges.catalog import load_catalog
from tracejury.core.sampling import default_sampling
from tracejury.core.segments import default_segmentation
from tracejury.settings import Settings
from tracejury.store import batches as store
from tracejury.store.ingest import ingest_lines
from workers import batches, hooks
from workers.batches import create_queued_batch, finish, sweep_expired

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def populated(engine: Any, example_trace: dict[str, Any]) -> Any:
    lines = []
    for i in range(60):
        t = copy.deepcopy(example_trace)
        t["traceId"] = f"tr_{i:03d}"
        t["runtime"]["truncated"] = i % 10 == 0
        lines.append((i + 1, orjson.dumps(t)))
    ingest_lines(engine, "t", lines, segmentation=default_segmentation())
    return engine


def _create(engine: Any, **kw: Any) -> tuple[Any, list[tuple[str, int]]]:
    sent: list[tuple[str, int]] = []
    settings = Settings(chunk_size=10)
    created = create_queued_batch(
        engine, settings, load_catalog(ROOT / "rubrics"), default_sampling(), release="r42",
        rubric_ids=["json_valid"], seed=1, enqueue=lambda b, c: sent.append((b, c)),
        **{"sample_size": None, "budget": None, **kw},
    )  # fmt: skip
    return created, sent


def test_every_trace_by_default_and_chunks_enqueued(populated: Any) -> None:
    created, sent = _create(populated)
    assert (created.population, created.sampled, created.chunks) == (60, 60, 6)
    assert sent == [(created.batch_id, c) for c in range(6)]
    assert len(store.chunk_trace_ids(populated, created.batch_id, 0)) == 10


def test_sample_size_and_budget(populated: Any) -> None:
    created, _ = _create(populated, sample_size=20)
    assert 10 <= created.sampled <= 30
    created_again, _ = _create(populated, sample_size=20)
    assert created_again.sampled == created.sampled  # same seed, same sample


def test_claims_are_exclusive_and_expired_leases_are_swept(populated: Any) -> None:
    created, _ = _create(populated)
    b = created.batch_id
    assert store.claim_chunk(populated, b, 0, "w1", lease_s=30)
    assert not store.claim_chunk(populated, b, 0, "w2", lease_s=10)  # held by a live lease
    assert store.renew_lease(populated, b, 0, "w1", 30)
    assert not store.renew_lease(populated, b, 0, "w2", 10)
    assert sweep_expired(populated, lambda *a: pytest.fail("a live lease was swept")) == 0
    assert store.renew_lease(populated, b, 0, "w1", -1)  # w1 died: its lease ran out
    requeued: list[tuple[str, int]] = []
    assert sweep_expired(populated, lambda *a: requeued.append(a)) == 1
    assert requeued == [(b, 0)]
    assert store.claim_chunk(populated, b, 0, "w2", lease_s=10)
    store.complete_chunk(populated, b, 0)
    assert not store.claim_chunk(populated, b, 0, "w3", lease_s=10)  # done: a redelivery is a no-op


def test_batch_ends_once_and_finalisers_run_once(
    populated: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(hooks, "FINALISERS", [lambda e, b, s: calls.append((b, s))])
    created, _ = _create(populated)
    b = created.batch_id
    for c in range(6):
        store.claim_chunk(populated, b, c, "w", 10)
        if c < 5:
            store.complete_chunk(populated, b, c)
        finish(populated, b)
        assert calls == []  # chunk 5 is still running
    store.fail_chunk(populated, b, 5, "database unavailable after retries")
    finish(populated, b)
    finish(populated, b)
    assert calls == [(b, "failed")]
    (row,) = [r for r in store.list_batches(populated) if r.id == b]
    assert row.reason == "1 chunk(s) failed; chunk 5: database unavailable after retries"


def test_run_chunk_scores_and_is_idempotent(populated: Any) -> None:
    from workers.batches import run_chunk

    created, _ = _create(populated)
    b = created.batch_id
    settings = Settings(chunk_size=10)
    assert run_chunk(populated, settings, b, 0) == "done"
    assert run_chunk(populated, settings, b, 0) == "skipped"
    assert run_chunk(populated, settings, "b_nope", 0) == "missing"
    progress = store.batch_progress(populated, b)
    assert progress is not None and progress["status"] == {"scored": 10}
    rows = store.batch_results(populated, b)  # every trace sampled: p = 1, weight 1 each
    assert sum(r[4] for r in rows) == 10 and sum(r[5] for r in rows) == 10.0
    assert all(r[1].startswith("model=") for r in rows)  # segment key copied onto evaluations


def test_a_batch_whose_ending_was_interrupted_is_ended_by_the_next_delivery_or_sweep(populated: Any) -> None:
    from workers.batches import run_chunk

    created, _ = _create(populated)
    b = created.batch_id
    for c in range(6):  # every chunk done, but the process died before ending the batch
        assert store.claim_chunk(populated, b, c, "w", 10)
        assert store.complete_chunk(populated, b, c, "w")
    assert store.idle_running_batches(populated) == [b]
    assert run_chunk(populated, Settings(chunk_size=10), b, 0) == "skipped"  # a redelivery ends it
    (row,) = [r for r in store.list_batches(populated) if r.id == b]
    assert row.state == "done"
    assert store.idle_running_batches(populated) == []


def test_a_chunk_out_of_attempts_is_failed_by_the_sweeper(populated: Any) -> None:
    created, _ = _create(populated)
    b = created.batch_id
    for attempt in range(store.MAX_ATTEMPTS):  # a chunk that kills every worker that takes it
        assert store.claim_chunk(populated, b, 0, f"w{attempt}", lease_s=0.0)
    assert not store.claim_chunk(populated, b, 0, "w-next", lease_s=10)
    for c in range(1, 6):
        store.claim_chunk(populated, b, c, "w", 10)
        store.complete_chunk(populated, b, c, "w")
    time.sleep(0.01)
    sweep_expired(populated, lambda *a: None)
    (row,) = [r for r in store.list_batches(populated) if r.id == b]
    assert (row.state, row.reason) == ("failed", "1 chunk(s) failed; chunk 0: gave up after 5 attempts")


def test_only_the_holder_completes_a_chunk(populated: Any) -> None:
    created, _ = _create(populated)
    b = created.batch_id
    assert store.claim_chunk(populated, b, 0, "w1", lease_s=0.0)
    time.sleep(0.01)
    assert store.claim_chunk(populated, b, 0, "w2", lease_s=10)  # w1's lease ran out
    assert not store.complete_chunk(populated, b, 0, "w1")
    assert not store.fail_chunk(populated, b, 0, "boom", "w1")
    assert store.complete_chunk(populated, b, 0, "w2")


def _chunk_rows(engine: Any, b: str) -> dict[int, tuple[str, str | None]]:
    from sqlalchemy import select

    from tracejury.store.tables import BatchChunk

    with engine.connect() as conn:
        rows = conn.execute(select(BatchChunk.chunk_no, BatchChunk.state, BatchChunk.error)
                            .where(BatchChunk.batch_id == b)).all()  # fmt: skip
    return {n: (state, error) for n, state, error in rows}


def test_a_store_error_while_chaining_ends_the_running_chunks_normally(
    populated: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taking the next chunk fails (the store is locked): the task's own chunk still ends done,
    nothing is left running, and the untaken chunks stay pending for their messages."""
    from sqlalchemy.exc import OperationalError

    from workers.batches import run_chunk

    created, _ = _create(populated)
    b = created.batch_id

    def locked(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("UPDATE batch_chunk", {}, Exception("database is locked"))

    monkeypatch.setattr(store, "claim_next_chunk", locked)
    monkeypatch.setattr(batches, "CHAIN_AFTER_S", 0.0)  # chain at once (the chunks are tiny)
    assert run_chunk(populated, Settings(chunk_size=10), b, 0, requeue=lambda b, c: None) == "done"
    rows = _chunk_rows(populated, b)
    assert rows[0][0] == "done" and all(state == "pending" for n, (state, _) in rows.items() if n != 0)


def test_a_task_leaves_the_next_chunks_to_idle_processes_for_a_while(
    populated: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task chains only after CHAIN_AFTER_S: a chunk that ends sooner takes no other, so
    the batch's next messages reach the other scoring processes (a small batch spreads)."""
    from workers.batches import run_chunk

    created, _ = _create(populated)
    b = created.batch_id
    monkeypatch.setattr(batches, "CHAIN_AFTER_S", 30.0)
    assert run_chunk(populated, Settings(chunk_size=10), b, 0, requeue=lambda b, c: None) == "done"
    rows = _chunk_rows(populated, b)
    assert rows[0][0] == "done" and all(state == "pending" for n, (state, _) in rows.items() if n != 0)
    monkeypatch.setattr(batches, "CHAIN_AFTER_S", 0.0)  # chaining at once, the same task takes the rest
    assert run_chunk(populated, Settings(chunk_size=10), b, 1, requeue=lambda b, c: None) == "done"
    assert all(state == "done" for state, _ in _chunk_rows(populated, b).values())


def test_a_chained_chunk_that_fails_for_good_fails_with_its_error(
    populated: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chained chunk raising a non-database error is failed with that error (as its own
    task would), not sent round again until the sweeper gives up with a generic message."""
    from workers.batches import _ChunkJob, run_chunk

    created, _ = _create(populated)
    b = created.batch_id
    real = _ChunkJob._score
    requeued: list[int] = []

    async def broken(self: Any, scope: Any, chunk_no: int, trace_ids: list[str]) -> bool:
        if chunk_no == 1:
            raise ValueError("a poison chunk")
        return await real(self, scope, chunk_no, trace_ids)

    monkeypatch.setattr(_ChunkJob, "_score", broken)
    monkeypatch.setattr(batches, "CHAIN_AFTER_S", 0.0)  # chain at once (the chunks are tiny)
    run_chunk(populated, Settings(chunk_size=10), b, 0, requeue=lambda b, c: requeued.append(c))
    rows = _chunk_rows(populated, b)
    assert rows[1] == ("failed", "ValueError: a poison chunk") and 1 not in requeued
    assert rows[0][0] == "done"


def test_chunks_that_end_in_the_same_wake_up_do_not_stop_the_chaining(
    populated: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks that end without yielding (all in one wake-up of the chaining loop) still leave
    the task taking the rest: every chunk of the batch ends done in the one task."""
    from workers.batches import _ChunkJob, run_chunk

    async def instant(self: Any, scope: Any, chunk_no: int) -> str:
        assert store.complete_chunk(self.engine, self.batch_id, chunk_no, self.worker)
        return "done"

    created, _ = _create(populated)
    b = created.batch_id
    monkeypatch.setattr(_ChunkJob, "score", instant)
    monkeypatch.setattr(batches, "CHAIN_AFTER_S", 0.0)
    assert run_chunk(populated, Settings(chunk_size=10), b, 0, requeue=lambda b, c: None) == "done"
    assert all(state == "done" for state, _ in _chunk_rows(populated, b).values()), _chunk_rows(populated, b)
