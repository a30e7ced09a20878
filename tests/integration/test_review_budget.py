"""The review budget on a real store (SQLite and PostgreSQL, as ``db_url``): simulated traces
scored by `tracejury score` against the real mock judge, escalated by the batch finaliser
under per-batch and per-day caps; what the caps left out shown by `batch status` and
``/metrics``; a rerun (`tracejury review escalate`) that adds and counts nothing twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from judges.catalog import load_catalog
from tests.integration.reviewing import invoke, populate, rubrics_with, score
from tracejury.api import create_app
from tracejury.core.escalation import Caps, audit_draw
from tracejury.settings import Settings
from tracejury.store import review
from tracejury.store.batches import batch_config
from tracejury.store.escalation import day_counts, escalate_batch
from tracejury.store.tables import EvaluationRow, ReviewItem
from tracejury.store.tokens import create_token

# many candidates of every kind: low confidence on most verdicts, a checker that often
# disagrees, and a 20% audit (~30 of 150 traces)
POLICY = {
    "answer_correctness": {"confidence_below": 0.95, "on_checker_disagreement": ["tool_grounding"],
                           "audit_rate": 0.2},
    "helpfulness": {"confidence_below": 0.95},
}  # fmt: skip
_R = ReviewItem.__table__
_E = EvaluationRow.__table__


@pytest.fixture
def populated(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mock_judge: str, fast_rubrics: Path
) -> Path:
    """150 traces; the checker scored first, with no budget in the way."""
    rubrics = rubrics_with(fast_rubrics, tmp_path, POLICY)
    populate(tmp_path, monkeypatch, judge_url=mock_judge, rubrics_dir=rubrics)
    monkeypatch.setenv("TRACEJURY_REVIEW_MAX_ITEMS_PER_BATCH", "none")
    monkeypatch.setenv("TRACEJURY_REVIEW_MAX_ITEMS_PER_DAY", "none")
    score("tool_grounding")
    return rubrics


def _items(engine: Engine, batch_id: str) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(select(_R).where(_R.c.batch_id == batch_id)).all()


def _metrics(db_url: str) -> str:
    with TestClient(create_app(Settings(database_url=db_url, metrics_cache_s=0.0))) as c:
        engine = c.app.state.engine()
        admin = create_token(engine, "admin")[0]
        text = c.get("/metrics", headers={"Authorization": f"Bearer {admin}"}).text
        engine.dispose()
    return text


def test_the_cap_keeps_audit_items_first_and_counts_what_it_left_out(
    engine: Engine, db_url: str, populated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACEJURY_REVIEW_MAX_ITEMS_PER_BATCH", "40")
    out = score("answer_correctness")
    batch = out["batchId"]
    items = _items(engine, batch)
    assert out["escalated"] == len(items) == 40
    status = orjson.loads(invoke("batch", "status", batch, "--json").stdout)
    esc = status["escalation"]
    assert esc["caps"]["overall"] == {"maxItemsPerBatch": 40, "maxItemsPerDay": None}
    assert esc["enqueued"] == 40 and esc["candidates"] > 40
    # every candidate is either an item or counted as left out, by its strongest reason
    assert esc["leftOutTotal"] == esc["candidates"] - 40 == sum(esc["leftOut"]["answer_correctness"].values())
    assert "audit" not in esc["leftOut"]["answer_correctness"]
    # the audit came first: every scored verdict whose draw is below the rate is an item
    with engine.connect() as conn:
        scored = conn.execute(select(_E).where(_E.c.batch_id == batch, _E.c.status == "scored")).all()
    drawn = {e.trace_id for e in scored if audit_draw(e.evaluator_id, e.evaluator_version, e.trace_id) < 0.2}
    audited = {i.trace_id for i in items if "audit" in orjson.loads(i.reasons)}
    assert drawn and audited == drawn and len(drawn) < 40
    assert all(i.audit_rate == 0.2 for i in items if i.trace_id in audited)  # not cut: the rate as configured
    # then the most valuable of the rest: no left-out class ranks above a kept one
    order = ("audit", "judge_failed", "checker_disagrees", "samples_disagree", "low_confidence")
    kept = {orjson.loads(i.reasons)[0] for i in items}
    worst_kept = max(order.index(r) for r in kept)
    assert all(order.index(r) >= worst_kept for r in esc["leftOut"]["answer_correctness"])
    # shown: batch status text, and /metrics
    text = " ".join(invoke("batch", "status", batch).stdout.split())
    assert f"review items: 40 enqueued, {esc['leftOutTotal']} left out by the review budget" in text
    for reason, n in esc["leftOut"]["answer_correctness"].items():
        assert f'tracejury_review_left_out_total{{reason="{reason}",rubric="answer_correctness"}} {n}.0' in _metrics(
            db_url
        )


def test_a_cap_below_the_audit_keeps_a_random_share_with_its_rate(
    engine: Engine, populated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACEJURY_REVIEW_MAX_ITEMS_PER_BATCH", "10")
    batch = score("answer_correctness")["batchId"]
    items = _items(engine, batch)
    assert len(items) == 10 and all("audit" in orjson.loads(i.reasons) for i in items)
    esc = batch_config(engine, batch)["escalation"]
    applied = esc["auditRate"]["answer_correctness"]["applied"]
    assert 0 < applied < 0.2 and esc["leftOut"]["answer_correctness"]["audit"] > 0
    with engine.connect() as conn:
        weight = dict(conn.execute(select(_E.c.trace_id, _E.c.weight).where(_E.c.batch_id == batch,
                                   _E.c.evaluator_id == "answer_correctness")).all())  # fmt: skip
        scored = conn.execute(select(_E).where(_E.c.batch_id == batch, _E.c.status == "scored")).all()
    # the items are exactly the verdicts drawn below the applied rate: a smaller probability sample
    below = {e.trace_id for e in scored if audit_draw(e.evaluator_id, e.evaluator_version, e.trace_id) < applied}
    assert {i.trace_id for i in items} == below
    for i in items:
        assert i.audit_rate == pytest.approx(applied, abs=1e-6)
        assert i.inclusion_p == pytest.approx(i.audit_rate / weight[i.trace_id])


def test_the_day_cap_counts_items_across_batches_and_resets_the_next_day(
    engine: Engine, populated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACEJURY_REVIEW_MAX_ITEMS_PER_DAY", "30")
    first = score("answer_correctness")
    second = score("helpfulness")  # the same traces, another rubric: new pairs, no room left today
    assert first["escalated"] == 30 and second["escalated"] == 0
    esc = batch_config(engine, second["batchId"])["escalation"]
    assert esc["leftOutTotal"] == esc["candidates"] > 0 and esc["enqueued"] == 0
    with engine.connect() as conn:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        assert day_counts(conn, today) == {"answer_correctness": 30}
        assert day_counts(conn, today + timedelta(days=1)) == {}
    # the next UTC day has room again, under the caps the batch recorded
    rubrics = load_catalog(populated).select(["helpfulness"])
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    assert escalate_batch(engine, second["batchId"], rubrics, overall=Caps(None, 30), now=tomorrow) == 30
    with engine.connect() as conn:
        assert day_counts(conn, tomorrow.replace(hour=0, minute=0, second=0, microsecond=0)) == {"helpfulness": 30}
    # a per-rubric day cap holds beside the overall one
    capped = load_catalog(rubrics_with(populated, populated.parent / "capped", {
        "helpfulness": {"confidence_below": 0.95, "max_items_per_day": 35}}))  # fmt: skip
    later = escalate_batch(engine, second["batchId"], capped.select(["helpfulness"]), now=tomorrow)
    assert later == 5 and review.count_items(engine, batch_id=second["batchId"]) == 35


def test_rerunning_the_escalation_adds_and_counts_nothing_twice(
    engine: Engine, db_url: str, populated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACEJURY_REVIEW_MAX_ITEMS_PER_BATCH", "25")
    batch = score("answer_correctness")["batchId"]
    before = batch_config(engine, batch)["escalation"]
    items = review.list_items(engine, limit=1000)
    metrics = _metrics(db_url)
    # a rerun, even with a larger budget in the environment, keeps the caps the batch recorded
    monkeypatch.setenv("TRACEJURY_REVIEW_MAX_ITEMS_PER_BATCH", "1000")
    out = " ".join(invoke("review", "escalate", batch).stdout.split())
    assert f"batch {batch}: 0 review item(s) enqueued; {before['leftOutTotal']} left out by the review budget" in out
    after = batch_config(engine, batch)["escalation"]
    assert review.list_items(engine, limit=1000) == items and len(items) == 25
    # the same record, replaced, not added to; only that the batch's own items are now queued
    assert after == before | {"alreadyQueued": 25} and before["alreadyQueued"] == 0
    assert after["leftOutTotal"] > 0
    assert _metrics(db_url).count("tracejury_review_left_out_total{") == metrics.count(
        "tracejury_review_left_out_total{"
    )
    left = [line for line in _metrics(db_url).splitlines() if line.startswith("tracejury_review_left_out_total{")]
    assert left == [line for line in metrics.splitlines() if line.startswith("tracejury_review_left_out_total{")]


def test_within_a_class_the_segment_nearest_its_gate_margin_goes_first(
    engine: Engine, populated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gate run of r1 (rows shaped as the reducer stores them) where answer_correctness on
    rag=off sits on its margin and rag=on far from it: the budget takes rag=off first."""
    from tracejury.store.tables import GateOutcome, GateRun

    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(GateRun.__table__.insert().values(id="g_test", release_id="r1", decision="block",
                                                       config_hash="x", created_at=now))  # fmt: skip
        for segment, interval in (("rag=off", [0.002, 0.03]), ("rag=on", [0.06, 0.09])):
            audit = {"spec": {"id": "answer_correctness", "metric": {"evaluator": "answer_correctness"}},
                     "outcome": {"interval": interval, "margin": 0.01, "segment": segment, "slice": None}}  # fmt: skip
            conn.execute(GateOutcome.__table__.insert().values(
                run_id="g_test", gate_id="answer_correctness", segment=segment, decision="pass", reason="r",
                audit=orjson.dumps(audit)))  # fmt: skip
    monkeypatch.setenv("TRACEJURY_REVIEW_MAX_ITEMS_PER_BATCH", "45")
    batch = score("answer_correctness")["batchId"]
    assert batch_config(engine, batch)["escalation"]["order"].startswith("gate run g_test")
    kept = {(i.trace_id, i.evaluator_id) for i in _items(engine, batch)}
    # every candidate, for comparison: the same batch escalated again with no cap
    with engine.begin() as conn:
        conn.execute(_R.delete().where(_R.c.batch_id == batch))
    escalate_batch(engine, batch, load_catalog(populated).select(["answer_correctness"]))
    order = ("audit", "judge_failed", "checker_disagrees", "samples_disagree", "low_confidence")
    every = [(order.index(orjson.loads(i.reasons)[0]), "rag=off" in i.segment_key.split("|"), (i.trace_id,
              i.evaluator_id)) for i in _items(engine, batch)]  # fmt: skip
    assert len(every) > 45 == len(kept)
    cut = max(cls for cls, _, pair in every if pair in kept)  # the class the cap cut into
    assert all(pair in kept for cls, _, pair in every if cls < cut)
    in_cut = [(near, pair in kept) for cls, near, pair in every if cls == cut]
    assert any(near and chosen for near, chosen in in_cut)
    # never a rag=on item kept while a rag=off one of the same class is left out
    assert not (
        any(not near and chosen for near, chosen in in_cut) and any(near and not chosen for near, chosen in in_cut)
    )
    assert any(not near and not chosen for near, chosen in in_cut)  # and the cap did cut rag=on
