"""`tracejury review list|next|show|label|skip|agreement` on a real scored store."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine

from tests.integration.procs import EXE
from tests.integration.reviewing import invoke, populate, rubrics_with, runner, score
from tracejury.cli import app
from tracejury.store import review

POLICIES = {
    "answer_correctness": {"confidence_below": 0.7, "audit_rate": 0.2},
    "helpfulness": {"confidence_below": 0.6},
}


@pytest.fixture
def queue(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mock_judge: str, fast_rubrics: Path
) -> dict[str, Any]:
    populate(tmp_path, monkeypatch, judge_url=mock_judge, rubrics_dir=rubrics_with(fast_rubrics, tmp_path, POLICIES),
             traces=100)  # fmt: skip
    out = score("answer_correctness", "helpfulness")
    assert out["escalated"] > 10
    return out


def _json(*args: str) -> Any:
    return orjson.loads(invoke(*args).stdout)


def test_next_json_claims_one_item_and_prints_its_summary(engine: Engine, queue: dict) -> None:
    first = review.list_items(engine, state="pending", limit=1)[0]
    before = datetime.now(UTC)
    got = _json("review", "next", "--reviewer", "ana", "--json")
    assert set(got) == {"itemId", "traceId", "rubric", "reasons", "leaseExpiresAt"}
    assert (got["itemId"], got["traceId"], got["rubric"], got["reasons"]) == (
        first["itemId"], first["traceId"], first["rubric"], first["reasons"],
    )  # fmt: skip
    lease = datetime.fromisoformat(got["leaseExpiresAt"])
    assert before + timedelta(seconds=590) < lease < datetime.now(UTC) + timedelta(seconds=610)
    stored = review.get_item(engine, got["itemId"])
    assert (stored["state"], stored["claimedBy"]) == ("claimed", "ana")
    other = _json("review", "next", "--reviewer", "ben", "--json", "--rubric", "helpfulness")
    assert other["itemId"] != got["itemId"] and other["rubric"] == "helpfulness"


def test_next_exits_4_when_nothing_is_pending(engine: Engine) -> None:
    result = runner.invoke(app, ["review", "next", "--reviewer", "ana", "--json"])
    assert result.exit_code == 4 and result.stdout == ""
    result = runner.invoke(app, ["review", "next", "--reviewer", "ana"])
    assert result.exit_code == 4 and "no review item pending" in result.stderr


def test_the_queue_drains_then_next_exits_4(engine: Engine, queue: dict) -> None:
    total = review.count_items(engine, state="pending")
    claimed = [review.claim_next(engine, "ana") for _ in range(total)]
    assert all(claimed)
    assert runner.invoke(app, ["review", "next", "--reviewer", "ben", "--json"]).exit_code == 4


def test_label_skip_list_and_agreement(engine: Engine, queue: dict) -> None:
    labelled = []
    for k in range(6):
        got = _json("review", "next", "--reviewer", "ana", "--json", "--rubric", "answer_correctness")
        judge = review.get_item(engine, got["itemId"])["judge"]["label"]
        label = judge if k % 3 else ("fail" if judge == "pass" else "pass")  # disagree on every third
        stored = _json("review", "label", str(got["itemId"]), "--reviewer", "ana", "--label", label,
                       "--rationale", f"checked {k}", "--json")  # fmt: skip
        assert (stored["label"], stored["passed"], stored["reviewer"]) == (label, label == "pass", "ana")
        labelled.append((judge, label))
    text = invoke("review", "next", "--reviewer", "ana").stdout
    item_id = int(text.split()[1])
    assert "why:" in text and "answer:" in text and f"tracejury review label {item_id}" in text
    assert "skipped by ana" in invoke("review", "skip", str(item_id), "--reviewer", "ana").stdout
    assert [i["itemId"] for i in _json("review", "list", "--state", "skipped", "--json")] == [item_id]
    assert len(_json("review", "list", "--state", "labelled", "--json")) == 6
    shown = _json("review", "show", str(item_id), "--json")
    assert shown["state"] == "skipped" and shown["view"]["finalAnswer"] == shown["trace"]["sample"]["finalAnswer"]
    (report,) = _json("review", "agreement", "--rubric", "answer_correctness", "--json")
    assert report["n"] == 6 and report["labels"] == ["pass", "fail"]
    index = {"pass": 0, "fail": 1}
    expected = [[0, 0], [0, 0]]
    for judge, human in labelled:
        expected[index[judge]][index[human]] += 1
    assert report["matrix"] == expected
    assert report["verdictFlips"] == 2 and sum(s["disagree"] for s in report["segments"]) == 2
    by_rag = _json("review", "agreement", "--by", "rag", "--json")[0]["segments"]
    assert {s["segment"] for s in by_rag} <= {"rag=on", "rag=off"} and sum(s["n"] for s in by_rag) == 6
    assert "kappa" in invoke("review", "agreement").stdout


def test_errors_are_one_line(engine: Engine, db_url: str, queue: dict) -> None:
    got = _json("review", "next", "--reviewer", "ana", "--json", "--rubric", "helpfulness")
    env = {**os.environ, "TRACEJURY_DATABASE_URL": db_url}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([EXE, "review", *args], env=env, capture_output=True, text=True, timeout=60)

    bad = run("label", str(got["itemId"]), "--reviewer", "ana", "--label", "pass")
    assert bad.returncode == 2
    assert bad.stderr == "error: label: 'pass' is not a label of this rubric (allowed: 1, 2, 3, 4, 5)\n"
    theirs = run("label", str(got["itemId"]), "--reviewer", "ben", "--label", "4")
    assert theirs.returncode == 2 and theirs.stderr.count("\n") == 1
    assert theirs.stderr.startswith(f"error: review item {got['itemId']}: ben cannot label it: it is claimed by ana")
    missing = run("show", "999999")
    assert (missing.returncode, missing.stderr) == (2, "error: no review item 999999\n")
    reason = run("list", "--reason", "bored")
    assert reason.returncode == 2 and reason.stderr.startswith("error: reason: unknown reason 'bored' (known: ")


def test_escalate_reruns_a_batch_escalation_idempotently(engine: Engine, queue: dict) -> None:
    from sqlalchemy import delete, func, select

    from tracejury.store.tables import ReviewItem

    items = ReviewItem.__table__
    before = len(review.list_items(engine, limit=10_000))
    assert "0 review item(s) enqueued" in invoke("review", "escalate", queue["batchId"]).stdout
    with engine.begin() as conn:  # as if the finaliser had failed for two of them
        gone = conn.execute(select(items.c.id).order_by(items.c.id.desc()).limit(2)).scalars().all()
        conn.execute(delete(items).where(items.c.id.in_(gone)))
    assert "2 review item(s) enqueued" in invoke("review", "escalate", queue["batchId"]).stdout
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(items)).scalar_one() == before
    missing = subprocess.run([EXE, "review", "escalate", "no-such-batch"], capture_output=True, text=True,
                             env={**os.environ, "TRACEJURY_DATABASE_URL": str(engine.url.render_as_string(False))},
                             timeout=60)  # fmt: skip
    assert (missing.returncode, missing.stderr) == (2, "error: no batch 'no-such-batch'\n")
