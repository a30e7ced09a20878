"""`tracejury prune` and retention on both stores: the text goes, the facts stay, gate runs stay
readable, open review items close as ``pruned``, the sweeper applies ``retention_days``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, func, insert, select
from typer.testing import CliRunner

from tracejury.cli import app
from tracejury.store.tables import EvaluationRow, QuarantinedLine, ReviewItem, ReviewLabel, StoredTrace

ROOT = Path(__file__).resolve().parents[2]
GATE = ROOT / "rubrics" / "gates" / "format_validity.yaml"
runner = CliRunner()
_T, _E, _R, _L = StoredTrace.__table__, EvaluationRow.__table__, ReviewItem.__table__, ReviewLabel.__table__


def invoke(*args: str, code: int = 0) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (args, result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def _files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("prune")
    paths = []
    for release, seed, start in (("r41", 1, "2026-11-18T00:00:00Z"), ("r42", 2, "2026-11-20T00:00:00Z")):
        path = tmp / f"{release}.jsonl"
        invoke(
            "simulate", "--release", release, "--traces", "600", "--seed", str(seed), "--start", start, "-o", str(path)
        )
        paths.append(path)
    return paths


@pytest.fixture
def store(engine: Engine, _files: list[Path]) -> Engine:
    """Both releases ingested; r41 and r42 scored by a checker (no judge needed)."""
    invoke("ingest", *map(str, _files))
    for release in ("r41", "r42"):
        invoke("score", "--release", release, "--rubric", "json_valid", "--json")
    return engine


def _live(engine: Engine, release: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).where(_T.c.release_id == release, func.length(_T.c.body) > 0)
        ).scalar_one()


def _prune(*args: str) -> dict[str, Any]:
    return orjson.loads(invoke("prune", *args, "--json").stdout)


def test_dry_run_counts_and_changes_nothing(store: Engine) -> None:
    with store.connect() as conn:
        before = conn.execute(select(_T.c.trace_id, _T.c.body).order_by(_T.c.trace_id)).all()
    dry = _prune("--release", "r41", "--dry-run")
    assert dry["dryRun"] is True and dry["traces"] == 600 and dry["selection"] == {"release": "r41"}
    with store.connect() as conn:
        assert conn.execute(select(_T.c.trace_id, _T.c.body).order_by(_T.c.trace_id)).all() == before


def test_prune_by_release_keeps_facts_and_is_idempotent(store: Engine) -> None:
    with store.connect() as conn:
        facts = conn.execute(select(_T.c.trace_id, _T.c.segment_key, _T.c.ts, _T.c.latency_ms, _T.c.format_invalid)
                             .where(_T.c.release_id == "r41").order_by(_T.c.trace_id)).all()  # fmt: skip
        verdicts = conn.execute(select(_E.c.id, _E.c.status, _E.c.passed, _E.c.weight).order_by(_E.c.id)).all()
    done = _prune("--release", "r41", "--batch-size", "128")  # several batches
    assert done["traces"] == 600
    assert (_live(store, "r41"), _live(store, "r42")) == (0, 600)
    with store.connect() as conn:
        assert conn.execute(select(_T.c.trace_id, _T.c.segment_key, _T.c.ts, _T.c.latency_ms, _T.c.format_invalid)
                            .where(_T.c.release_id == "r41").order_by(_T.c.trace_id)).all() == facts  # fmt: skip
        assert conn.execute(select(_E.c.id, _E.c.status, _E.c.passed, _E.c.weight).order_by(_E.c.id)).all() == verdicts
    assert _prune("--release", "r41")["traces"] == 0  # already pruned: nothing counted twice
    # signals read the trace columns; scoring skips a pruned trace (no evaluation, no error)
    signals = orjson.loads(invoke("signals", "--release", "r41", "--json").stdout)
    assert signals
    rescored = orjson.loads(invoke("score", "--release", "r41", "--rubric", "json_valid", "--json").stdout)
    assert sum(rescored["status"].values()) == 0
    trace_id = facts[0].trace_id
    from tracejury.store.evaluations import load_traces
    from tracejury.store.traces import get_trace

    assert load_traces(store, [trace_id]) == {}
    assert get_trace(store, trace_id)["pruned"] is True


def test_prune_before_a_date(store: Engine) -> None:
    with store.begin() as conn:
        conn.execute(insert(QuarantinedLine.__table__), [
            {"source": "old.jsonl", "line_no": 1, "json_path": "$", "message": "bad", "raw": b"secret",
             "raw_hash": "a" * 64, "at": datetime(2026, 11, 1, tzinfo=UTC)},
            {"source": "new.jsonl", "line_no": 1, "json_path": "$", "message": "bad", "raw": b"secret",
             "raw_hash": "b" * 64, "at": datetime(2026, 11, 25, tzinfo=UTC)},
        ])  # fmt: skip
    dry = _prune("--before", "2026-11-19", "--dry-run")
    assert (dry["traces"], dry["quarantined"], dry["selection"]) == (600, 1, {"before": "2026-11-19T00:00:00Z"})
    done = _prune("--before", "2026-11-19T00:00:00+00:00", "--batch-size", "100")
    assert (done["traces"], done["quarantined"]) == (600, 1)
    assert (_live(store, "r41"), _live(store, "r42")) == (0, 600)
    with store.connect() as conn:
        assert conn.execute(select(QuarantinedLine.__table__.c.source)).scalars().all() == ["new.jsonl"]


def test_gate_runs_stay_readable_after_prune(store: Engine, tmp_path: Path) -> None:
    ran = runner.invoke(app, ["gate", "run", "--release", "r42", "--gates", str(GATE), "--json"])
    run = orjson.loads(ran.stdout)
    assert run["runId"]
    shown = orjson.loads(invoke("gate", "show", run["runId"], "--json").stdout)
    _prune("--before", "2026-12-01")
    assert (_live(store, "r41"), _live(store, "r42")) == (0, 0)
    assert orjson.loads(invoke("gate", "show", run["runId"], "--json").stdout) == shown
    page = tmp_path / "report.html"
    invoke("report", "--run", run["runId"], "-o", str(page))
    assert "format_validity" in page.read_text()
    # the facts a gate reads stay: the same gate over pruned releases decides the same way
    again = orjson.loads(runner.invoke(app, ["gate", "run", "--release", "r42", "--gates", str(GATE),
                                             "--json", "--dry-run"]).stdout)  # fmt: skip
    assert [(o["segment"], o["decision"]) for o in again["outcomes"]] == [
        (o["segment"], o["decision"]) for o in run["outcomes"]
    ]


def test_open_review_items_close_as_pruned(store: Engine) -> None:
    from tracejury.store.review import get_item, list_items

    now = datetime.now(UTC)
    with store.connect() as conn:
        ids = (
            conn.execute(select(_T.c.trace_id).where(_T.c.release_id == "r41").order_by(_T.c.trace_id).limit(4))
            .scalars()
            .all()
        )
        kept = conn.execute(select(_T.c.trace_id).where(_T.c.release_id == "r42").limit(1)).scalar_one()
        batch = dict(conn.execute(select(_E.c.release_id, _E.c.batch_id)).all())
        version = conn.execute(select(_E.c.evaluator_version).limit(1)).scalar_one()
        evaluation = dict(conn.execute(select(_E.c.trace_id, _E.c.id)).all())
    rows = [(ids[0], "pending"), (ids[1], "claimed"), (ids[2], "labelled"), (ids[3], "skipped"), (kept, "pending")]
    with store.begin() as conn:
        for trace_id, state in rows:
            conn.execute(insert(_R).values(
                trace_id=trace_id, evaluator_id="json_valid", evaluator_version=version, release_id=trace_id[3:6],
                batch_id=batch[trace_id[3:6]],
                segment_key="rag=on", reasons='["audit"]', evaluation_ids=f"[{evaluation[trace_id]}]", state=state,
                claimed_by="ana" if state == "claimed" else None,
                lease_expires_at=now if state == "claimed" else None, created_at=now, updated_at=now))  # fmt: skip
        conn.execute(insert(_L).values(trace_id=ids[2], evaluator_id="json_valid", evaluator_version=version,
                                       reviewer="ana", label="pass", passed=True, rationale="quotes the user",
                                       created_at=now))  # fmt: skip
    dry = _prune("--release", "r41", "--dry-run")
    assert (dry["reviewItemsClosed"], dry["reviewLabels"]) == (2, 1)
    done = _prune("--release", "r41")
    assert (done["reviewItemsClosed"], done["reviewLabels"]) == (2, 1)
    with store.connect() as conn:
        states = dict(conn.execute(select(_R.c.trace_id, _R.c.state)).all())
        label = conn.execute(select(_L.c.label, _L.c.passed, _L.c.rationale)).one()
    assert [states[t] for t, _ in rows] == ["pruned", "pruned", "labelled", "skipped", "pending"]
    assert tuple(label) == ("pass", True, None)  # the label counts in gates; its text went
    pruned = list_items(store, state="pruned")
    assert sorted(i["traceId"] for i in pruned) == ids[:2]
    detail = get_item(store, pruned[0]["itemId"])  # the review page still opens it
    assert detail["trace"]["pruned"] is True and detail["view"]["traceId"] == detail["traceId"]


def test_the_sweeper_applies_retention_days(store: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from tracejury.settings import Settings
    from workers.retention import RetentionSweeper

    clock = [1000.0]
    # a worker whose clock reads 2026-12-19: r41 (2026-11-18) is 31 days old, r42 (2026-11-20) 29
    sweeper = RetentionSweeper(
        every_s=3600, clock=lambda: clock[0], wall_clock=lambda: datetime(2026, 12, 19, tzinfo=UTC)
    )
    assert sweeper.maybe_apply(store, Settings()) is None  # unset: never prunes
    assert sweeper.last_run is None
    monkeypatch.setenv("TRACEJURY_RETENTION_DAYS", "30")
    settings = Settings()
    assert settings.retention_days == 30
    counts = sweeper.maybe_apply(store, settings)
    assert counts is not None and counts.traces == 600
    assert (_live(store, "r41"), _live(store, "r42")) == (0, 600)
    clock[0] += 60
    assert sweeper.maybe_apply(store, settings) is None  # once an hour per process
    clock[0] += 3600
    again = sweeper.maybe_apply(store, settings)
    assert again is not None and again.traces == 0
