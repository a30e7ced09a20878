"""Values one backend would take and the other refuse are handled the same way on both:
NUL characters, over-long stage names and ids, and time zones (the PostgreSQL test server runs
in a non-UTC zone on purpose)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from judges.rubric import Rubric
from tracejury.core.errors import InvalidInput
from tracejury.core.evaluation import Evaluation
from tracejury.core.gates import GateSpec
from tracejury.core.ingest import MAX_STAGE_NAME
from tracejury.core.segments import default_segmentation
from tracejury.store.evaluations import CachedVerdict, cache_get, cache_put, create_batch, save_evaluations
from tracejury.store.ingest import ingest_lines
from tracejury.store.queries import list_quarantine
from tracejury.store.signals import release_signals
from tracejury.store.tables import EvaluationRow, GateOutcome, StoredTrace, TraceStage


def _ingest(engine: Any, docs: list[Any]) -> Any:
    lines = [(i + 1, d if isinstance(d, bytes) else orjson.dumps(d)) for i, d in enumerate(docs)]
    return ingest_lines(engine, "t", lines, segmentation=default_segmentation())


def _trace(example: dict[str, Any], trace_id: str, **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(example)
    doc["traceId"] = trace_id
    doc.update(changes)
    return doc


def test_nul_characters_are_quarantined_with_their_place_and_neighbours_kept(
    engine: Any, example_trace: dict[str, Any]
) -> None:
    stage = _trace(example_trace, "tr_stage")
    stage["runtime"]["stageLatencyMs"] = {"gen\x00": 5}
    docs = [
        _trace(example_trace, "tr_ok_1"),
        _trace(example_trace, "tr_release", releaseId="r\x0042"),
        _trace(example_trace, "tr\x00id"),
        stage,
        _trace(example_trace, "tr\x00bad", releaseId=7),  # invalid, and its id has a NUL
        _trace(example_trace, "tr_ok_2"),
    ]
    counts = _ingest(engine, docs)
    assert (counts.ingested, counts.quarantined) == (2, 4)
    with engine.connect() as conn:
        assert set(conn.execute(select(StoredTrace.trace_id)).scalars()) == {"tr_ok_1", "tr_ok_2"}
    by_line = {q["line"]: q for q in list_quarantine(engine)}
    assert (by_line[2]["path"], by_line[2]["traceId"]) == ("$.releaseId", "tr_release")
    assert (by_line[3]["path"], by_line[3]["traceId"]) == ("$.traceId", None)
    assert by_line[4]["path"] == "$.runtime.stageLatencyMs"
    assert all("NUL character" in by_line[n]["message"] for n in (2, 3, 4))
    assert (by_line[5]["path"], by_line[5]["traceId"]) == ("$.releaseId", "tr\\u0000bad")  # escaped, kept


def test_a_stage_name_longer_than_the_column_is_quarantined(engine: Any, example_trace: dict[str, Any]) -> None:
    assert TraceStage.__table__.c.stage.type.length == MAX_STAGE_NAME
    long = _trace(example_trace, "tr_long")
    long["runtime"]["stageLatencyMs"] = {"s" * (MAX_STAGE_NAME + 1): 5}
    exact = _trace(example_trace, "tr_exact")
    exact["runtime"]["stageLatencyMs"] = {"s" * MAX_STAGE_NAME: 5}
    counts = _ingest(engine, [long, exact])
    assert (counts.ingested, counts.quarantined) == (1, 1)
    (q,) = list_quarantine(engine)
    assert (q["line"], q["path"]) == (1, "$.runtime.stageLatencyMs")
    assert "longer than 64 characters" in q["message"]


def test_judge_text_with_nul_is_stored_escaped(engine: Any, example_trace: dict[str, Any]) -> None:
    _ingest(engine, [_trace(example_trace, "tr_1")])
    batch = create_batch(engine, release="r42", kind="inline", config={}, sampled=1)
    evaluation = Evaluation(
        trace_id="tr_1", evaluator_id="r", evaluator_version="1", evaluator_fingerprint="f",
        evaluator_kind="rubric", status="judge_failed", failure_kind="invalid_output",
        rationale="because\x00", error="reply: \x00\x00", evidence_hash="e",
    )  # fmt: skip
    save_evaluations(engine, batch, [evaluation])
    with engine.connect() as conn:
        row = conn.execute(select(EvaluationRow.rationale, EvaluationRow.error)).one()
    assert tuple(row) == ("because\\u0000", "reply: \\u0000\\u0000")
    key = ("m", "f", "e", 0)
    cache_put(engine, [(key, CachedVerdict("pass", "ok\x00", None, None, None))])
    assert cache_get(engine, [key])[key].rationale == "ok\\u0000"


def test_timestamps_are_utc_whatever_the_offset_or_the_server_zone(engine: Any, example_trace: dict[str, Any]) -> None:
    _ingest(engine, [_trace(example_trace, "tr_tz", timestamp="2026-11-20T23:30:00-05:00")])
    with engine.connect() as conn:
        ts = conn.execute(select(StoredTrace.ts)).scalar_one()
    assert ts == datetime(2026, 11, 21, 4, 30, tzinfo=UTC)
    assert ts.utcoffset() is not None and ts.utcoffset().total_seconds() == 0


def test_a_saved_evaluation_reads_back_as_written(engine: Any, example_trace: dict[str, Any]) -> None:
    """save_evaluations hands its rows to the driver itself: timestamps in the column type's
    storage form (SQL compares them as stored), booleans, numbers and the trace's copies."""
    _ingest(engine, [_trace(example_trace, "tr_1", timestamp="2026-11-20T23:30:00-05:00")])
    batch = create_batch(engine, release="r42", kind="inline", config={}, sampled=1)
    evaluation = Evaluation(
        trace_id="tr_1", evaluator_id="r", evaluator_version="1", evaluator_fingerprint="f",
        evaluator_kind="rubric", status="scored", label="pass", passed=True, score=1.0, confidence=0.75,
        rationale="fine", attempts=2, latency_ms=12, prompt_tokens=3, completion_tokens=4, cost_usd=0.5,
        cached=False, sample_labels=("pass", "fail", "pass"), evidence_hash="e",
    )  # fmt: skip
    before = datetime.now(UTC)
    save_evaluations(engine, batch, [evaluation, evaluation])  # the second is the same row: kept once
    E = EvaluationRow
    with engine.connect() as conn:
        rows = conn.execute(select(E.passed, E.cached, E.score, E.confidence, E.attempts, E.cost_usd,
                                   E.sample_labels, E.release_id, E.trace_ts, E.created_at, E.weight)).all()  # fmt: skip
        at = datetime(2026, 11, 21, 4, 30, tzinfo=UTC)  # SQL compares the stored form: exactly equal
        newer = conn.execute(select(E.id).where(E.trace_ts >= at, E.trace_ts <= at, E.created_at >= before)).all()
    assert len(rows) == 1 and len(newer) == 1
    passed, cached, score, confidence, attempts, cost, labels, release, trace_ts, created_at, weight = rows[0]
    assert (passed, cached, score, confidence, attempts, cost) == (True, False, 1.0, 0.75, 2, 0.5)
    assert (labels, release, weight) == ("pass,fail,pass", "r42", 1.0)
    assert trace_ts == datetime(2026, 11, 21, 4, 30, tzinfo=UTC)
    assert before <= created_at <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("model", "data", "column"),
    [
        (Rubric, {"id": "r" * 129, "version": "1"}, EvaluationRow.__table__.c.evaluator_id),
        (Rubric, {"id": "r", "version": "1" * 65}, EvaluationRow.__table__.c.evaluator_version),
        (GateSpec, {"id": "g" * 129}, GateOutcome.__table__.c.gate_id),
    ],
    ids=["rubric-id", "rubric-version", "gate-id"],
)
def test_ids_longer_than_their_columns_are_refused_at_lint(model: Any, data: dict[str, Any], column: Any) -> None:
    with pytest.raises(ValidationError, match=f"at most {column.type.length} characters"):
        model.model_validate(data)


def test_a_query_for_a_value_with_nul_is_bad_input_not_a_server_error(
    engine: Any, example_trace: dict[str, Any]
) -> None:
    _ingest(engine, [_trace(example_trace, "tr_1")])
    if engine.dialect.name == "sqlite":  # SQLite takes the value and matches nothing
        assert release_signals(engine, "r\x0042") == []
    else:  # psycopg refuses to send it: a one-line InvalidInput naming the column, not a DataError
        with pytest.raises(InvalidInput, match=r"^release_id: contains a NUL character \(U\+0000\)$"):
            release_signals(engine, "r\x0042")
    assert [s.count for s in release_signals(engine, "r42")] == [1]  # the engine still works


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_sqlite_store_is_one_store_for_every_thread(url: str, example_trace: dict[str, Any]) -> None:
    """Scoring reads and writes the store from threads, each on its own connection: an
    in-memory URL gets one temporary file that every connection sees, removed with the engine."""
    import gc
    import weakref
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from tracejury.store.engine import make_engine, migrate

    engine = make_engine(url)
    migrate(engine)
    path = Path(engine.url.database or "")
    assert path.is_file()
    with ThreadPoolExecutor(2) as pool:
        pool.submit(_ingest, engine, [example_trace]).result()
        ids = pool.submit(_trace_ids, engine).result()
    assert ids == [example_trace["traceId"]]
    gone = weakref.ref(engine)
    del engine
    gc.collect()
    assert gone() is None and not path.parent.exists()  # the file went with the engine


def test_an_in_memory_sqlite_store_leaves_no_file_behind() -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = ("from tracejury.store.engine import make_engine, migrate; e = make_engine('sqlite://'); "
            "migrate(e); print(e.url.database)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    path = Path(out.stdout.strip())
    assert path.name == "store.db" and not path.parent.exists()


def _trace_ids(engine: Any) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(StoredTrace.trace_id)).scalars())
