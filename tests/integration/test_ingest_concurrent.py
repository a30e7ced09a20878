"""Two ingests of overlapping files at the same time, in two processes, on every backend:
each trace is stored once, each ingest's counts say what it did (ingested, duplicate or
conflict — a trace the other process stored in between is never counted as ingested),
every conflict is recorded, and a conflicting trace's stages never mix into the stored one."""

from __future__ import annotations

import copy
from typing import Any

import orjson
from sqlalchemy import func, select

from tests.integration.procs import run_spawned
from tracejury.store.tables import StoredTrace, TraceConflict, TraceStage

OVERLAP = range(2000, 4000)  # 2000..2999 identical in both files, 3000..3999 different
BATCH = 50


def _line(example: dict[str, Any], i: int, variant: str) -> bytes:
    doc = copy.deepcopy(example)
    doc["traceId"] = f"t{i:05d}"
    doc["timestamp"] = f"2026-11-20T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000Z"
    if variant == "b" and 3000 <= i < 4000:  # different content under the same id
        doc["runtime"]["latencyMs"] += 1
        doc["runtime"]["stageLatencyMs"]["rerank"] = 7  # a stage the stored trace does not have
    return orjson.dumps(doc)


def _ingest(url: str, lines: list[bytes], source: str, barrier: Any, results: Any) -> None:
    """One ingest process: start with the other one, then report the counts."""
    from tracejury.core.segments import default_segmentation
    from tracejury.store.engine import make_engine
    from tracejury.store.ingest import ingest_lines

    engine = make_engine(url)
    barrier.wait(timeout=60)
    counts = ingest_lines(engine, source, list(enumerate(lines, 1)), segmentation=default_segmentation(),
                          batch_size=BATCH)  # fmt: skip
    results.put((source, counts.as_dict()))
    engine.dispose()


def test_concurrent_overlapping_ingests_count_and_record_everything(
    engine: Any, db_url: str, example_trace: dict[str, Any]
) -> None:
    # both files start with the overlap, so the two processes meet on the same ids
    a = [_line(example_trace, i, "a") for i in [*OVERLAP, *range(0, 2000)]]
    b = [_line(example_trace, i, "b") for i in [*OVERLAP, *range(4000, 6000)]]
    counts = run_spawned(_ingest, [(db_url, a, "a"), (db_url, b, "b")], timeout=240)

    for name in ("a", "b"):
        c = counts[name]
        assert c["ingested"] + c["duplicates"] + c["conflicts"] == 4000 and c["quarantined"] == 0, counts
    total = {k: counts["a"][k] + counts["b"][k] for k in ("ingested", "duplicates", "conflicts")}
    assert total == {"ingested": 6000, "duplicates": 1000, "conflicts": 1000}, counts

    t, s, c = StoredTrace.__table__, TraceStage.__table__, TraceConflict.__table__
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t)).scalar_one() == 6000
        stored = {r.trace_id: (r.content_hash, orjson.loads(r.body)) for r in conn.execute(select(t))}
        conflicts = conn.execute(select(c)).all()
        stages: dict[str, set[str]] = {}
        for r in conn.execute(select(s.c.trace_id, s.c.stage)):
            stages.setdefault(r.trace_id, set()).add(r.stage)
    # every conflict recorded once, against the trace that was kept
    assert sorted(r.trace_id for r in conflicts) == [f"t{i:05d}" for i in range(3000, 4000)]
    for r in conflicts:
        assert r.stored_hash == stored[r.trace_id][0] != r.incoming_hash
        assert r.source == ("b" if stored[r.trace_id][1]["runtime"]["latencyMs"] == 2140 else "a")
    # each stored trace has exactly its own stages (no stage of the other version mixed in)
    for trace_id, (_, body) in stored.items():
        assert stages[trace_id] == set(body["runtime"]["stageLatencyMs"]), trace_id
    won_by_b = sum(1 for i in range(3000, 4000) if "rerank" in stored[f"t{i:05d}"][1]["runtime"]["stageLatencyMs"])
    assert counts["b"]["conflicts"] == 1000 - won_by_b and counts["a"]["conflicts"] == won_by_b
