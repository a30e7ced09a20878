"""Alembic migrations, on SQLite and on PostgreSQL: an empty database goes to head with exactly
the models' schema; the schema before head upgrades with a row in every table and keeps it;
and 0004 data gets the 0005 backfill (evaluations get their trace's release, segment, weight).

Rows are made from the reflected schema of the older revision, so these tests follow whatever
the head is when revisions are added."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Boolean, DateTime, Engine, Float, Integer, LargeBinary, MetaData, String, inspect, select
from sqlmodel import SQLModel

from tracejury.store.engine import alembic_config, make_engine, migrate
from tracejury.store.tables import EvaluationRow

WHEN = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)


def _revisions(engine: Engine) -> tuple[str, str | None]:
    """(head, the revision before it)."""
    head = ScriptDirectory.from_config(alembic_config(engine)).get_revision("head")
    assert head is not None
    down = head.down_revision
    assert down is None or isinstance(down, str), "the migration history should be linear"
    return head.revision, down


def _current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _value(column: Any, table: str) -> Any:
    """A value of the column's type (strings say where they belong, within the column's length)."""
    t = column.type
    if isinstance(t, Boolean):
        return True
    if isinstance(t, Integer):
        return 3
    if isinstance(t, Float):
        return 0.25
    if isinstance(t, DateTime):
        return WHEN
    if isinstance(t, LargeBinary):
        return b'{"k": 1}'
    if isinstance(t, String):
        return f"{table}.{column.name}"[: t.length or None]
    raise AssertionError(f"{table}.{column.name}: no test value for type {t!r}")


def _fill(engine: Engine, overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """One row in every table of the schema as it is now (foreign keys point at the rows
    inserted before); returns the rows by table, with generated ids filled in."""
    overrides = overrides or {}
    meta = MetaData()
    meta.reflect(engine)
    rows: dict[str, dict[str, Any]] = {}
    with engine.begin() as conn:
        for table in meta.sorted_tables:
            if table.name == "alembic_version":
                continue
            row: dict[str, Any] = {}
            for c in table.columns:
                generated = c.primary_key and isinstance(c.type, Integer) and len(table.primary_key.columns) == 1
                if c.foreign_keys:
                    fk = next(iter(c.foreign_keys))
                    row[c.name] = rows[fk.column.table.name][fk.column.name]
                elif c.name in overrides.get(table.name, {}):
                    row[c.name] = overrides[table.name][c.name]
                elif not generated:
                    row[c.name] = _value(c, table.name)
            key = conn.execute(table.insert().values(row)).inserted_primary_key
            row.update({c.name: v for c, v in zip(table.primary_key.columns, key, strict=True)})
            rows[table.name] = row
    return rows


def _same(stored: Any, inserted: Any) -> bool:
    if isinstance(stored, datetime) and stored.tzinfo is None:  # SQLite keeps UTC without an offset
        stored = stored.replace(tzinfo=UTC)
    return stored == inserted


def test_empty_database_to_head_matches_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert _current(engine) is None
        migrate(engine)
        head, _ = _revisions(engine)
        assert _current(engine) == head
        tables = set(inspect(engine).get_table_names())
        assert {"trace", "quarantine", "evaluation", "batch", "gate_run", "gate_outcome"} <= tables
        columns = {c["name"] for c in inspect(engine).get_columns("evaluation")}
        assert columns == set(EvaluationRow.__table__.columns.keys())
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, SQLModel.metadata) == []  # migrations build exactly the models
    finally:
        engine.dispose()


def test_schema_before_head_upgrades_and_keeps_a_row_in_every_table(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        head, previous = _revisions(engine)
        assert previous is not None, "only one revision: nothing to upgrade from"
        migrate(engine, previous)
        rows = _fill(engine)
        assert {"trace", "evaluation", "batch_trace", "batch_chunk", "gate_outcome"} <= set(rows)
        migrate(engine)
        assert _current(engine) == head
        meta = MetaData()
        meta.reflect(engine)
        for name, row in rows.items():
            assert name in meta.tables, f"table {name} and its data are gone after the upgrade"
            table = meta.tables[name]
            where = [table.c[c.name] == row[c.name] for c in table.primary_key.columns]
            with engine.connect() as conn:
                stored = conn.execute(select(table).where(*where)).mappings().one()
            kept = {k: v for k, v in row.items() if k in stored}
            changed = {k: (stored[k], v) for k, v in kept.items() if not _same(stored[k], v)}
            assert not changed, f"{name}: values changed by the upgrade (stored, inserted): {changed}"
    finally:
        engine.dispose()


def test_0004_data_gets_the_0005_backfill(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate(engine, "0004")
        _fill(engine, {"trace": {"release_id": "r1", "segment_key": "rag=on"}, "batch_trace": {"inclusion_prob": 0.25}})
        migrate(engine)
        evaluation = EvaluationRow.__table__
        with engine.connect() as conn:
            row = conn.execute(select(evaluation)).one()
        assert (row.release_id, row.segment_key, row.weight) == ("r1", "rag=on", 4.0)
        assert row.trace_ts == WHEN  # read back in UTC, whatever the server's time zone
    finally:
        engine.dispose()


def test_0015_escalation_records_get_the_0016_left_out_rows(db_url: str) -> None:
    """A batch escalated before 0016 keeps its left-out counts on ``/metrics``: the upgrade
    copies them from its config's escalation record."""
    import orjson

    from tracejury.store.escalation import left_out_totals

    engine = make_engine(db_url)
    try:
        migrate(engine, "0015")
        record = {"escalation": {"leftOut": {"helpfulness": {"low_confidence": 7, "audit": 2}, "x": {"audit": 0}}}}
        _fill(engine, {"batch": {"config": orjson.dumps(record)}})
        migrate(engine)
        with engine.connect() as conn:
            assert left_out_totals(conn) == {("helpfulness", "low_confidence"): 7, ("helpfulness", "audit"): 2}
    finally:
        engine.dispose()


def test_growing_tables_have_64_bit_ids(db_url: str) -> None:
    """evaluation and quarantine ids do not run out at 2^31 rows on PostgreSQL (0008)."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite's INTEGER PRIMARY KEY is the 64-bit rowid already")
    engine = make_engine(db_url)
    migrate(engine)
    with engine.connect() as conn:
        for table in ("evaluation", "quarantine"):
            (column,) = [c for c in inspect(conn).get_columns(table) if c["name"] == "id"]
            assert column["type"].__class__.__name__ == "BIGINT"
            maximum = conn.exec_driver_sql(
                f"SELECT max_value FROM pg_sequences WHERE sequencename = '{table}_id_seq'"
            ).scalar_one()
            assert maximum == 2**63 - 1
    engine.dispose()


def test_processes_started_together_migrate_a_new_store_once(db_url: str) -> None:
    """A worker, ``serve`` and a CLI command started at once on a new store: one migrates, the
    others wait for it and find the schema done (no 'table already exists')."""
    import subprocess
    import sys

    code = "import sys; from tracejury.store.engine import open_engine; open_engine(sys.argv[1]).dispose()"
    procs = [subprocess.Popen([sys.executable, "-c", code, db_url], stderr=subprocess.PIPE, text=True)
             for _ in range(4)]  # fmt: skip
    errors = [p.communicate(timeout=180)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    engine = make_engine(db_url)
    head, _ = _revisions(engine)
    assert _current(engine) == head
    engine.dispose()
