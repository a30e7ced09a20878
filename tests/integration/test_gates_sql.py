"""The reducer's SQL against references, on every store backend: window boundaries found by
stepping the timestamp index equal the ``ROW_NUMBER()`` definition (ties included), and the
``seek`` plan (SQLite's index walk) gives exactly the rows of the ``grouped`` plan."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import and_, event, select

from tests.integration.gate_data import ingest_release, score
from tracejury.core.gates import GateSpec, plain
from tracejury.store.gate_aggregate import trace_filter, windows
from tracejury.store.gates import gate_inputs
from tracejury.store.tables import StoredTrace

_T = StoredTrace.__table__


def _spec(**fields: Any) -> GateSpec:
    base = {"id": "g", "metric": {"evaluator": "answer_correctness"}, "min_samples": 10,
            "hysteresis": {"windows": 2, "window": {"traces": 100}}}  # fmt: skip
    return GateSpec.model_validate({**base, **fields})


def test_windows_equal_the_row_number_definition(engine: Any, example_trace: dict[str, Any]) -> None:
    ingest_release(engine, example_trace, "r1", 18, 1000, tie=3)
    ingest_release(engine, example_trace, "r2", 20, 1000, tie=70, seed=1)  # long runs of equal timestamps
    for release in ("r1", "r2"):
        for where in ({}, {"req.toolRequired": True}):
            for size in (1, 7, 100, 210, 333, 500, 999, 1000, 1001):
                spec = _spec(where={"trace": where}, hysteresis={"windows": 1, "window": {"traces": size}})
                cond = and_(_T.c.release_id == release, *trace_filter(spec))
                with engine.connect() as conn:
                    got = windows(conn, spec, cond)
                    stamps = sorted(conn.execute(select(_T.c.ts).where(cond)).scalars())
                starts = stamps[::size]  # the ts at positions 0, N, 2N, … (ties: any order, same ts)
                bounds = [*starts, None]
                assert got == [(bounds[k], bounds[k + 1]) for k in range(len(stamps) // size)], (release, where, size)


@pytest.fixture
def scored(engine: Any, example_trace: dict[str, Any]) -> Any:
    """r1 (600 traces) scored twice — the older batch must be ignored — and r2 (900): every
    status, two evaluator versions in r1's batch, sampled weights 1, 2 and 4 (sums stay exact)."""
    r1 = ingest_release(engine, example_trace, "r1", 18, 600)
    r2 = ingest_release(engine, example_trace, "r2", 20, 900, seed=1)
    statuses = ["scored", "scored", "scored", "judge_failed", "not_applicable", "missing_evidence", "scored"]

    def verdict(salt: int) -> Any:
        def at(i: int) -> tuple[str, bool | None]:
            status = statuses[(i * 7 + salt) % len(statuses)]
            return status, ((i * 13 + salt) % 5 != 0) if status == "scored" else None

        return at

    score(engine, "r1", r1, lambda i: ("scored", False))  # an older batch: every verdict a fail
    score(engine, "r1", r1[::2] + r1[1::6], verdict(1), version=lambda i: "2" if i % 9 == 0 else "1",
          probability=lambda i: (1.0, 0.5, 0.25)[i % 3])  # fmt: skip
    score(engine, "r2", r2, verdict(2), probability=lambda i: (1.0, 0.5)[i % 2])
    score(engine, "r2", r2, lambda i: ("scored", True), evaluator="helpfulness")  # another evaluator
    return engine


SPECS = {
    "evaluator by model": _spec(group_by=["model"]),
    "evaluator, windows with a tail": _spec(group_by=["model"], hysteresis={"windows": 1, "window": {"traces": 250}}),
    "evaluator, hourly windows": _spec(hysteresis={"windows": 1, "window": {"hours": 0.02}}),
    "evaluator, one segment": _spec(where={"segment": {"model": "acme-chat@v1"}}),
    "judge failure rate": _spec(metric={"judge_failure_rate": "answer_correctness"}, group_by=["model"]),
    "no complete window": _spec(hysteresis={"windows": 1, "window": {"traces": 5000}}),
}


@pytest.mark.parametrize("name", SPECS)
def test_seek_and_grouped_plans_give_the_same_inputs(scored: Any, name: str) -> None:
    spec = SPECS[name]
    seek = gate_inputs(scored, spec, "r2", "r1", plan="seek")
    grouped = gate_inputs(scored, spec, "r2", "r1", plan="grouped")
    assert [plain(s) for s in seek.segments] == [plain(s) for s in grouped.segments]
    assert (seek.baseline, seek.windows, seek.current_batches) == (
        grouped.baseline, grouped.windows, grouped.current_batches)  # fmt: skip
    assert seek.segments and any(w.arm.n for s in seek.segments for w in s.windows) == (name != "no complete window")
    versions = {v for s in seek.segments for v in s.baseline.versions}
    assert versions == {"1", "2"}  # r1's batch mixes versions; the older batch (all fails) is not read
    assert all(s.baseline.failures < s.baseline.n for s in seek.segments if name.startswith("evaluator"))


def test_sqlite_walks_the_covering_index_without_sorting(scored: Any) -> None:
    if scored.dialect.name != "sqlite":
        pytest.skip("the seek plan is SQLite's; PostgreSQL aggregates by hashing")
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        statements.append((statement, parameters))

    event.listen(scored, "before_cursor_execute", capture)
    try:
        gate_inputs(scored, _spec(group_by=["model"]), "r2", "r1")
    finally:
        event.remove(scored, "before_cursor_execute", capture)
    aggregations = [(s, p) for s, p in statements if "GROUP BY evaluation.segment_key, evaluation.status" in s]
    assert len(aggregations) == 3  # one statement per arm and version: r2 has one, r1 two
    with scored.connect() as conn:
        for statement, parameters in aggregations:
            plan = [r[3] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
            assert not [p for p in plan if "TEMP B-TREE" in p], plan
            assert any("COVERING INDEX ix_evaluation_gate_cover" in p and "trace_ts>" in p for p in plan), plan
