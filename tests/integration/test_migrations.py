"""Alembic migrations: an empty database goes to head, and a store at the previous schema
upgrades with its data (evaluations get their trace's release, segment and weight)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from tracejury.store.engine import make_engine, migrate
from tracejury.store.tables import EvaluationRow


def test_empty_database_to_head(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"trace", "quarantine", "evaluation", "batch", "gate_run", "gate_outcome"} <= tables
    columns = {c["name"] for c in inspect(engine).get_columns("evaluation")}
    assert columns == set(EvaluationRow.__table__.columns.keys())


def test_previous_schema_upgrades_with_its_data(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate(engine, "0004")
    with engine.begin() as conn:
        conn.execute(text(
            "insert into trace (trace_id, release_id, ts, segment_key, segmentation_version, content_hash,"
            " session_id_hash, latency_ms, input_tokens, completion_tokens, truncated, format_invalid, fallback_used,"
            " rag_on, retrieval_empty, tool_required, tool_called, tool_error, tool_timeout, guard_block,"
            " negative_feedback, has_sample, body, ingested_at) values ('t1', 'r1', '2026-11-20 00:00:00.000000',"
            " 'rag=on', 'seg-v1', 'h', 's', 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, x'7b7d',"
            " '2026-11-20 00:00:00.000000')"))  # fmt: skip
        conn.execute(text(
            "insert into batch (id, release_id, kind, state, config, sampled, created_at)"
            " values ('b1', 'r1', 'queued', 'done', x'7b7d', 1, '2026-11-20 00:00:00.000000')"))  # fmt: skip
        conn.execute(text("insert into batch_trace values ('b1', 't1', 0.25, 0)"))
        conn.execute(text(
            "insert into evaluation (batch_id, trace_id, evaluator_id, evaluator_version, evaluator_fingerprint,"
            " evaluator_kind, status, passed, attempts, evidence_hash, cached, created_at) values ('b1', 't1',"
            " 'json_valid', '1', 'f', 'checker', 'scored', 1, 0, 'e', 0, '2026-11-20 00:00:00.000000')"))  # fmt: skip
    migrate(engine)
    with engine.connect() as conn:
        row = conn.execute(text("select release_id, segment_key, trace_ts, weight from evaluation")).one()
    assert (row.release_id, row.segment_key, row.weight) == ("r1", "rag=on", 4.0)
    assert row.trace_ts is not None
