"""Ingest through the CLI on a real SQLite file: quarantine, duplicates, conflicts, gzip, stdin."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from tracejury.cli import app
from tracejury.store.tables import QuarantinedLine, StoredTrace, TraceConflict, TraceStage

runner = CliRunner()


def _ingest(*args: str, input: bytes | None = None) -> dict[str, int]:
    result = runner.invoke(app, ["ingest", *args, "--json"], input=input)
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


def _variant(trace: dict[str, Any], i: int) -> dict[str, Any]:
    return {**trace, "traceId": f"tr_{i:04d}"}


def _jsonl(docs: list[Any]) -> bytes:
    return b"".join(orjson.dumps(d) + b"\n" for d in docs)


def _count(engine: Any, table: Any) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_mixed_file_keeps_every_good_line(
    tmp_path: Path, engine: Any, example_trace: dict[str, Any]
) -> None:
    bad_type = {**_variant(example_trace, 99), "releaseId": 42}
    lines = [
        orjson.dumps(_variant(example_trace, 1)),
        b"{not json",
        b"",
        orjson.dumps(_variant(example_trace, 2)),
        b"   ",
        orjson.dumps(bad_type),
        b"[1,2,3]",
        orjson.dumps(_variant(example_trace, 3)),
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    assert _ingest(str(path)) == {"ingested": 3, "duplicates": 0, "conflicts": 0, "quarantined": 3}
    assert _count(engine, StoredTrace.__table__) == 3
    assert _count(engine, TraceStage.__table__) == 12

    result = runner.invoke(app, ["quarantine", "list", "--json"])
    rows = sorted(orjson.loads(result.stdout), key=lambda r: r["line"])
    assert [(r["line"], r["traceId"], r["path"]) for r in rows] == [
        (2, None, "$"),
        (6, "tr_0099", "$.releaseId"),
        (7, None, "$"),
    ]
    assert rows[0]["message"].startswith("not JSON")
    assert rows[1]["message"] == "expected string, got integer"
    assert all(r["source"] == str(path) for r in rows)
    with engine.connect() as conn:
        raws = conn.execute(select(QuarantinedLine.raw).order_by(QuarantinedLine.line_no)).scalars()
        assert list(raws)[0] == b"{not json\n"


def test_rerun_counts_duplicates_and_changes_nothing(
    tmp_path: Path, engine: Any, example_trace: dict[str, Any]
) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(_jsonl([_variant(example_trace, i) for i in range(5)] + ["bad"]))
    assert _ingest(str(path))["ingested"] == 5
    with engine.connect() as conn:
        before = conn.execute(select(StoredTrace.trace_id, StoredTrace.ingested_at)).all()
    again = _ingest(str(path))
    assert again == {"ingested": 0, "duplicates": 5, "conflicts": 0, "quarantined": 1}
    with engine.connect() as conn:
        after = conn.execute(select(StoredTrace.trace_id, StoredTrace.ingested_at)).all()
    assert sorted(before) == sorted(after)
    assert _count(engine, QuarantinedLine.__table__) == 1  # the same bad line is kept once


def test_conflict_is_recorded_and_stored_trace_kept(
    tmp_path: Path, engine: Any, example_trace: dict[str, Any]
) -> None:
    original = _variant(example_trace, 1)
    changed = {**original, "releaseId": "r99"}
    (tmp_path / "a.jsonl").write_bytes(_jsonl([original]))
    (tmp_path / "b.jsonl").write_bytes(_jsonl([changed, original]))
    _ingest(str(tmp_path / "a.jsonl"))
    counts = _ingest(str(tmp_path / "b.jsonl"))
    assert counts == {"ingested": 0, "duplicates": 1, "conflicts": 1, "quarantined": 0}
    with engine.connect() as conn:
        assert conn.execute(select(StoredTrace.release_id)).scalar_one() == "r42"
        conflict = conn.execute(select(TraceConflict)).one()
    assert (conflict.trace_id, conflict.line_no) == ("tr_0001", 1)
    assert orjson.loads(conflict.body)["releaseId"] == "r99"


def test_conflict_within_one_file(
    tmp_path: Path, engine: Any, example_trace: dict[str, Any]
) -> None:
    first = _variant(example_trace, 1)
    path = tmp_path / "t.jsonl"
    path.write_bytes(_jsonl([first, first, {**first, "releaseId": "r0"}]))
    assert _ingest(str(path)) == {"ingested": 1, "duplicates": 1, "conflicts": 1, "quarantined": 0}


def test_gzip_and_stdin_and_small_batches(
    tmp_path: Path, engine: Any, example_trace: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACEJURY_INGEST_BATCH_SIZE", "3")
    gz = tmp_path / "t.jsonl.gz"
    gz.write_bytes(gzip.compress(_jsonl([_variant(example_trace, i) for i in range(10)])))
    assert _ingest(str(gz))["ingested"] == 10
    counts = _ingest("-", input=_jsonl([_variant(example_trace, i) for i in range(8, 14)]))
    assert counts == {"ingested": 4, "duplicates": 2, "conflicts": 0, "quarantined": 0}
    assert _count(engine, StoredTrace.__table__) == 14


def test_unreadable_input_exits_1_and_ingests_the_rest(
    tmp_path: Path, engine: Any, example_trace: dict[str, Any]
) -> None:
    good = tmp_path / "good.jsonl"
    good.write_bytes(_jsonl([_variant(example_trace, 1)]))
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(
        gzip.compress(_jsonl([_variant(example_trace, i) for i in range(2, 400)]))[:-40]
    )
    result = runner.invoke(
        app, ["ingest", str(tmp_path / "missing.jsonl"), str(broken), str(good), "--json"]
    )
    assert result.exit_code == 1
    assert "missing.jsonl: cannot read" in result.stderr
    assert "broken.jsonl.gz: input broke after line" in result.stderr
    assert "Traceback" not in result.output
    counts = orjson.loads(result.stdout)
    assert counts["ingested"] >= 2  # good.jsonl plus the broken file's readable lines
    assert _count(engine, StoredTrace.__table__) == counts["ingested"]


def test_console_script_runs_as_a_real_process(
    tmp_path: Path, db_url: str, example_trace: dict[str, Any]
) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(_jsonl([example_trace, "oops"]))
    exe = Path(sys.executable).parent / "tracejury"
    proc = subprocess.run([exe, "ingest", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "ingested 1, duplicates 0, conflicts 0, quarantined 1" in proc.stdout
    proc = subprocess.run([exe, "signals", "--release", "r42", "--by", "colour"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: --by: unknown dimension 'colour' (known: model, rag, tool, trunc, ret, turns, guard)"
    )
