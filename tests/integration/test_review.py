"""Escalation and the review queue on a real store (SQLite and PostgreSQL, as ``db_url``):
simulated traces scored by `tracejury score` against the real mock judge, then escalated by
the batch finaliser, claimed, labelled and skipped — from threads and from processes."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, select

from tests.integration.procs import run_spawned
from tests.integration.reviewing import populate, rubrics_with, score
from tracejury.core.errors import Conflict, InvalidInput, NotFound
from tracejury.core.escalation import REASONS, audit_draw, priority
from tracejury.store import review
from tracejury.store.tables import EvaluationRow, ReviewItem, ReviewLabel

ESCALATION = {
    "answer_correctness": {"confidence_below": 0.7, "on_checker_disagreement": ["retrieval_grounding"],
                           "high_risk": True, "audit_rate": 0.05},
    "helpfulness": {"confidence_below": 0.6, "high_risk": False},
    "refusal_appropriateness": {"audit_rate": 1.0},
}  # fmt: skip
_E = EvaluationRow.__table__


def _evaluations(engine: Engine, **where: Any) -> list[Any]:
    stmt = select(_E).where(*(getattr(_E.c, k) == v for k, v in where.items()))
    with engine.connect() as conn:
        return conn.execute(stmt).all()


@pytest.fixture
def scored(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mock_judge: str, fast_rubrics: Path
) -> dict[str, Any]:
    """150 traces; the checker scored in a first batch, the three judges in a second one."""
    populate(tmp_path, monkeypatch, judge_url=mock_judge, rubrics_dir=rubrics_with(fast_rubrics, tmp_path, ESCALATION))
    checker = score("retrieval_grounding")
    judges = score("answer_correctness", "helpfulness", "refusal_appropriateness")
    return {"checker": checker, "judges": judges}


def test_each_reason_escalates_exactly_the_judgments_its_policy_names(engine: Engine, scored: dict) -> None:
    batch = scored["judges"]["batchId"]
    assert scored["checker"]["escalated"] == 0  # a checker batch with no policy that fires
    items = review.list_items(engine, limit=10_000)
    assert scored["judges"]["escalated"] == len(items) == review.count_items(engine, batch_id=batch)
    assert {i["batchId"] for i in items} == {batch}
    by_pair = {(i["traceId"], i["rubric"]): i for i in items}
    assert len(by_pair) == len(items)
    seen: set[str] = set()
    for e in _evaluations(engine, batch_id=batch):
        item = by_pair.get((e.trace_id, e.evaluator_id))
        reasons = set(item["reasons"]) if item else set()
        seen |= reasons
        policy = ESCALATION[e.evaluator_id]
        if item:
            assert item["evaluationIds"][0] == e.id and item["state"] == "pending"
            assert item["priority"] == priority(item["reasons"]) and item["reasons"] == [
                r for r in REASONS if r in reasons
            ]
            assert (item["release"], item["segment"]) == (e.release_id, e.segment_key)
        threshold = policy.get("confidence_below")
        low = e.status == "scored" and threshold is not None and e.confidence < threshold
        assert ("low_confidence" in reasons) == low, e
        audited = e.status == "scored" and audit_draw(e.evaluator_id, e.evaluator_version, e.trace_id) < policy.get("audit_rate", 0)
        assert ("audit" in reasons) == audited, e
        if e.status != "scored":
            assert item is None  # no judge failed here; n/a and missing evidence never escalate
    assert {"low_confidence", "audit", "checker_disagrees"} <= seen
    # checker disagreement: the checker's verdict came from the earlier batch
    checks = {e.trace_id: e for e in _evaluations(engine, evaluator_id="retrieval_grounding")}
    for e in _evaluations(engine, batch_id=batch, evaluator_id="answer_correctness", status="scored"):
        c = checks[e.trace_id]
        disagree = c.status == "scored" and c.passed != e.passed
        item = by_pair.get((e.trace_id, e.evaluator_id))
        assert (item is not None and "checker_disagrees" in item["reasons"]) == disagree
        if disagree:
            assert item["evaluationIds"] == [e.id, c.id] and c.batch_id == scored["checker"]["batchId"]


def test_no_pair_is_ever_enqueued_twice(engine: Engine, scored: dict) -> None:
    from judges.catalog import load_catalog
    from tracejury.settings import Settings

    before = review.list_items(engine, limit=10_000)
    again = score("answer_correctness", "helpfulness", "refusal_appropriateness")  # a second batch, same traces
    assert again["escalated"] == 0
    rubrics = load_catalog(Path(Settings().rubrics_dir)).select(list(ESCALATION))
    assert review.escalate_batch(engine, scored["judges"]["batchId"], rubrics) == 0  # rerun of the first
    assert review.escalate_batch(engine, again["batchId"], rubrics) == 0
    assert review.list_items(engine, limit=10_000) == before
    with engine.connect() as conn:
        pairs = conn.execute(select(ReviewItem.trace_id, ReviewItem.evaluator_id)).all()
    assert len(pairs) == len(set(pairs)) == len(before)


@pytest.mark.parametrize("mock_judge", ["malformed=1.0"], indirect=True)
def test_judge_failures_escalate_on_high_risk_rubrics_only(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mock_judge: str, fast_rubrics: Path
) -> None:
    policies = {"answer_correctness": {"high_risk": True}, "helpfulness": {"high_risk": False, "confidence_below": 0.9}}
    populate(tmp_path, monkeypatch, judge_url=mock_judge, rubrics_dir=rubrics_with(fast_rubrics, tmp_path, policies),
             traces=60)  # fmt: skip
    out = score("answer_correctness", "helpfulness")
    failed = _evaluations(engine, evaluator_id="answer_correctness", status="judge_failed")
    assert failed and out["status"]["scored"] == 0
    items = review.list_items(engine, limit=1000)
    assert out["escalated"] == len(items) == len(failed)
    assert {(i["rubric"], tuple(i["reasons"])) for i in items} == {("answer_correctness", ("judge_failed",))}
    assert {i["traceId"] for i in items} == {e.trace_id for e in failed}
    detail = review.get_item(engine, items[0]["itemId"])
    assert detail["judge"]["status"] == "judge_failed" and detail["judge"]["failureKind"] == "invalid_output"


def test_a_queued_batch_escalates_when_its_last_chunk_ends(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mock_judge: str, fast_rubrics: Path
) -> None:
    """The worker path (create_queued_batch, run_chunk per chunk, no Celery): the finaliser
    runs once the last chunk is done, in whichever process ends the batch."""
    from judges.catalog import load_catalog
    from tracejury.core.sampling import default_sampling
    from tracejury.settings import Settings
    from workers.batches import create_queued_batch, run_chunk

    rubrics_dir = rubrics_with(fast_rubrics, tmp_path, ESCALATION)
    populate(tmp_path, monkeypatch, judge_url=mock_judge, rubrics_dir=rubrics_dir, traces=80)
    settings = Settings(chunk_size=25)
    sent: list[tuple[str, int]] = []
    created = create_queued_batch(
        engine, settings, load_catalog(rubrics_dir), default_sampling(), release="r1",
        rubric_ids=["helpfulness", "retrieval_grounding"], sample_size=None, budget=None, seed=1,
        enqueue=lambda b, c: sent.append((b, c)),
    )  # fmt: skip
    assert len(sent) == created.chunks > 1
    try:
        for batch_id, chunk_no in sent:
            assert review.count_items(engine, batch_id=batch_id) == 0  # not before the batch ends
            assert run_chunk(engine, settings, batch_id, chunk_no) == "done"
    finally:  # the per-process judge clients a worker keeps for its lifetime: close them here
        from workers import batches

        for scoring in batches._scoring:
            scoring._runner.run(scoring._stack.aclose())
            scoring._runner.close()
        batches._scoring.clear()
    low = {e.trace_id for e in _evaluations(engine, batch_id=created.batch_id, evaluator_id="helpfulness")
           if e.status == "scored" and e.confidence < 0.6}  # fmt: skip
    items = review.list_items(engine, limit=10_000)
    assert low and {i["traceId"] for i in items} == low
    assert {(i["rubric"], i["batchId"], tuple(i["reasons"])) for i in items} == {
        ("helpfulness", created.batch_id, ("low_confidence",))
    }


# --- the queue ----------------------------------------------------------------------------


def test_claims_come_in_priority_order_and_honour_filters(engine: Engine, scored: dict) -> None:
    queue = review.list_items(engine, state="pending", limit=10_000)
    first = review.claim_next(engine, "ana")
    assert first is not None and first["itemId"] == queue[0]["itemId"]
    assert first["priority"] == max(i["priority"] for i in queue)
    assert first["state"] == "claimed" and first["claimedBy"] == "ana" and first["leaseExpiresAt"].endswith("Z")
    low = review.claim_next(engine, "ana", reason="low_confidence", rubric="helpfulness")
    assert low is not None and low["rubric"] == "helpfulness" and "low_confidence" in low["reasons"]
    segment = queue[-1]["segment"].split("|")[1]  # one dimension, e.g. rag=on
    by_segment = review.claim_next(engine, "ana", segment=segment)
    assert by_segment is not None and segment in by_segment["segment"].split("|")
    assert review.claim_next(engine, "ana", rubric="no_such_rubric") is None
    claimed = {i["itemId"] for i in review.list_items(engine, state="claimed")}
    assert claimed == {first["itemId"], low["itemId"], by_segment["itemId"]}
    assert len(review.list_items(engine, state="pending", limit=10_000)) == len(queue) - 3
    assert [i["itemId"] for i in review.list_items(engine, segment=segment, limit=10_000)] == [
        i["itemId"] for i in queue if segment in i["segment"].split("|")
    ]
    with pytest.raises(InvalidInput, match="reason: unknown reason 'bored'"):
        review.claim_next(engine, "ana", reason="bored")
    with pytest.raises(InvalidInput, match="state: unknown state"):
        review.list_items(engine, state="done")


def test_an_expired_lease_returns_the_item_to_the_queue(engine: Engine, scored: dict) -> None:
    mine = review.claim_next(engine, "ana", lease_s=1.0)
    assert mine is not None
    other = review.claim_next(engine, "ben")
    assert other is not None and other["itemId"] != mine["itemId"]  # a live lease holds
    time.sleep(1.2)
    (listed,) = [i for i in review.list_items(engine, state="pending", limit=10_000) if i["itemId"] == mine["itemId"]]
    assert listed["claimedBy"] is None and listed["leaseExpiresAt"] is None
    taken = review.claim_next(engine, "ben")
    assert taken is not None and taken["itemId"] == mine["itemId"] and taken["claimedBy"] == "ben"
    with pytest.raises(Conflict, match=f"review item {mine['itemId']}: ana cannot label it: it is claimed by ben"):
        review.label_item(engine, mine["itemId"], "ana", "pass")
    assert review.label_item(engine, mine["itemId"], "ben", "pass")["reviewer"] == "ben"


def test_the_holder_may_label_after_the_lease_if_nobody_took_it(engine: Engine, scored: dict) -> None:
    mine = review.claim_next(engine, "ana", lease_s=0.5)
    assert mine is not None
    time.sleep(0.7)
    label = review.label_item(engine, mine["itemId"], "ana", review.item_scale(engine, mine["itemId"])["labels"][0])
    assert label["itemId"] == mine["itemId"]
    assert review.get_item(engine, mine["itemId"])["state"] == "labelled"


def _claim_until_empty(engine: Engine, reviewer: str, start: Any) -> list[int]:
    start.wait()
    got = []
    while (item := review.claim_next(engine, reviewer)) is not None:
        got.append(item["itemId"])
    return got


def test_concurrent_claims_from_threads_never_double_assign(engine: Engine, scored: dict) -> None:
    total = review.count_items(engine, state="pending")
    assert total >= 100
    n = 8
    start = threading.Barrier(n)
    results: list[list[int]] = [[] for _ in range(n)]

    def run(k: int) -> None:
        results[k] = _claim_until_empty(engine, f"t{k}", start)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    claimed = [i for r in results for i in r]
    assert len(claimed) == len(set(claimed)) == total
    assert sum(1 for r in results if r) > 1  # they really competed
    owners = {i["itemId"]: i["claimedBy"] for i in review.list_items(engine, state="claimed", limit=10_000)}
    assert all(owners[i] == f"t{k}" for k, r in enumerate(results) for i in r)


def _claimer(url: str, reviewer: str, start: Any, out: Any) -> None:
    """A separate process: its own engine, claims until the queue is empty."""
    from tracejury.store.engine import make_engine

    engine = make_engine(url)
    try:
        out.put((reviewer, _claim_until_empty(engine, reviewer, start)))
    finally:
        engine.dispose()


def test_concurrent_claims_from_processes_never_double_assign(engine: Engine, db_url: str, scored: dict) -> None:
    total = review.count_items(engine, state="pending")
    results = run_spawned(_claimer, [(db_url, f"p{k}") for k in range(4)], timeout=120)
    claimed = [i for r in results.values() for i in r]
    assert len(claimed) == len(set(claimed)) == total
    owners = {i["itemId"]: i["claimedBy"] for i in review.list_items(engine, state="claimed", limit=10_000)}
    assert all(owners[i] == who for who, r in results.items() for i in r)


# --- labels -------------------------------------------------------------------------------


def test_a_relabel_appends_and_passed_follows_the_rubric(engine: Engine, scored: dict) -> None:
    item = review.claim_next(engine, "ana", rubric="helpfulness")
    assert item is not None
    assert review.item_scale(engine, item["itemId"]) == {"labels": ["1", "2", "3", "4", "5"], "passing": ["4", "5"]}
    first = review.label_item(engine, item["itemId"], "ana", "3", rationale="misses the date")
    assert (first["label"], first["passed"], first["rationale"]) == ("3", False, "misses the date")
    second = review.label_item(engine, item["itemId"], "ben", "4")  # anyone may relabel a labelled item
    assert (second["label"], second["passed"], second["reviewer"]) == ("4", True, "ben")
    detail = review.get_item(engine, item["itemId"])
    assert [(x["reviewer"], x["label"]) for x in detail["labels"]] == [("ana", "3"), ("ben", "4")]
    assert detail["state"] == "labelled" and detail["claimedBy"] == "ana"
    with engine.connect() as conn:
        rows = conn.execute(select(ReviewLabel).order_by(ReviewLabel.id)).all()
    assert [(r.label, r.passed, r.evaluator_version) for r in rows] == [("3", False, "1"), ("4", True, "1")]
    # the judge's verdict stays as it was
    (judge,) = _evaluations(engine, id=item["evaluationIds"][0])
    assert detail["judge"]["label"] == judge.label and judge.status == "scored"


def test_labels_are_checked_and_only_the_holder_labels_or_skips(engine: Engine, scored: dict) -> None:
    item = review.claim_next(engine, "ana", rubric="answer_correctness")
    assert item is not None
    with pytest.raises(InvalidInput) as bad:
        review.label_item(engine, item["itemId"], "ana", "maybe")
    assert str(bad.value) == "label: 'maybe' is not a label of this rubric (allowed: pass, fail)"
    with pytest.raises(Conflict, match="ben cannot label it: it is claimed by ana"):
        review.label_item(engine, item["itemId"], "ben", "fail")
    with pytest.raises(Conflict, match="ben cannot skip it"):
        review.skip_item(engine, item["itemId"], "ben")
    pending = review.list_items(engine, state="pending", limit=1)[0]
    with pytest.raises(Conflict, match="it is not claimed: claim it first"):
        review.label_item(engine, pending["itemId"], "ana", "pass")
    with pytest.raises(NotFound, match="no review item 999999"):
        review.get_item(engine, 999999)
    with pytest.raises(InvalidInput, match="reviewer: at most 128 characters, got 200"):
        review.claim_next(engine, "x" * 200)
    with pytest.raises(InvalidInput, match="reviewer: must not be empty"):
        review.label_item(engine, item["itemId"], " ", "pass")
    skipped = review.skip_item(engine, item["itemId"], "ana")
    assert skipped["state"] == "skipped" and skipped["leaseExpiresAt"] is None
    assert item["itemId"] not in {i["itemId"] for i in review.list_items(engine, state="pending", limit=10_000)}
    assert (
        review.label_item(engine, item["itemId"], "ben", "fail")["passed"] is False
    )  # a skipped item stays labellable
    assert review.get_item(engine, item["itemId"])["state"] == "labelled"


def test_get_item_has_what_a_reviewer_needs(engine: Engine, scored: dict) -> None:
    items = review.list_items(engine, reason="checker_disagrees", limit=1)
    assert items
    detail = review.get_item(engine, items[0]["itemId"])
    assert detail["trace"]["traceId"] == detail["traceId"] == detail["view"]["traceId"]
    view = detail["view"]
    assert set(view) >= {"inputText", "finalAnswer", "retrievedChunks", "toolCalls", "truncated", "guardrails"}
    assert view["finalAnswer"] == detail["trace"]["sample"]["finalAnswer"]
    assert detail["judge"]["evaluator"] == "answer_correctness" and detail["judge"]["rationale"]
    assert detail["judge"]["confidence"] is not None and detail["judge"]["label"] in ("pass", "fail")
    assert [c["evaluator"] for c in detail["checkers"]] == ["retrieval_grounding"]
    assert detail["checkers"][0]["passed"] != detail["judge"]["passed"]
    assert detail["scale"] == {"labels": ["pass", "fail"], "passing": ["pass"]}
    assert detail["labels"] == []
    orjson.dumps(detail)  # JSON-ready as it is
