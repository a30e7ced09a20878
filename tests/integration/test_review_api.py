"""The review routes (``/api/review/…``) in process over a real scored store (SQLite and
PostgreSQL, as ``db_url``): the same shapes as the store and the CLI, who reviews as whom,
conflicts, bad input, the empty queue, agreement."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.integration.reviewing import invoke, populate, rubrics_with, score
from tracejury.api import create_app
from tracejury.core.escalation import REASONS
from tracejury.core.review import ITEM_STATES
from tracejury.settings import Settings
from tracejury.store import review
from tracejury.store.tokens import create_token

ESCALATION = {"answer_correctness": {"audit_rate": 1.0, "high_risk": True}, "helpfulness": {"audit_rate": 0.5}}


@pytest.fixture
def api(
    engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mock_judge: str, fast_rubrics: Path
) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    """30 traces scored with answer_correctness (all escalated) and helpfulness (ordinal,
    about half audited); the app over that store and tokens: ana and ben (reviewers), an
    unnamed reviewer, an admin and an ingest token."""
    rubrics = rubrics_with(fast_rubrics, tmp_path, ESCALATION)
    populate(tmp_path, monkeypatch, judge_url=mock_judge, rubrics_dir=rubrics, traces=30)
    assert score("answer_correctness", "helpfulness")["escalated"] >= 30
    settings = Settings(database_url=db_url, rubrics_dir=str(rubrics),
                        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}")  # fmt: skip
    tokens = {
        "ana": create_token(engine, "reviewer", "ana")[0],
        "ben": create_token(engine, "reviewer", "ben")[0],
        "anon": create_token(engine, "reviewer")[0],
        "admin": create_token(engine, "admin", "root")[0],
        "ingest": create_token(engine, "ingest", "feeder")[0],
    }
    with TestClient(create_app(settings)) as client:
        yield client, {who: {"Authorization": f"Bearer {t}"} for who, t in tokens.items()}
        client.app.state.engine().dispose()


def test_reads_match_the_store_and_the_cli(api: tuple[TestClient, dict], engine: Engine) -> None:
    client, h = api
    me = client.get("/api/review/me", headers=h["ana"]).json()
    assert me == {"reviewer": "ana", "role": "reviewer", "tokenId": me["tokenId"], "states": list(ITEM_STATES),
                  "reasons": list(REASONS)}  # fmt: skip
    anon = client.get("/api/review/me", headers=h["anon"]).json()
    assert anon["reviewer"] == f"token:{anon['tokenId']}"
    for params in ({}, {"rubric": "helpfulness"}, {"reason": "audit", "state": "pending"}, {"release": "r1"},
                   {"segment": "rag=on"}, {"limit": "5", "offset": "3"}):  # fmt: skip
        got = client.get("/api/review/items", params=params, headers=h["ana"])
        assert got.status_code == 200, got.text
        limit = int(params.get("limit", 100))
        query = {k: v for k, v in params.items() if k not in ("limit", "offset")}
        assert got.json() == review.list_items(engine, **query, limit=limit, offset=int(params.get("offset", 0)))
    cli = orjson.loads(invoke("review", "list", "--rubric", "helpfulness", "--limit", "100", "--json").stdout)
    assert client.get("/api/review/items", params={"rubric": "helpfulness"}, headers=h["ben"]).json() == cli
    first = cli[0]["itemId"]
    detail = client.get(f"/api/review/items/{first}", headers=h["ana"]).json()
    assert detail == orjson.loads(orjson.dumps(review.get_item(engine, first)))
    assert detail["scale"] == {"labels": ["1", "2", "3", "4", "5"], "passing": ["4", "5"]}
    assert {"trace", "view", "judge", "checkers", "labels"} <= detail.keys()
    missing = client.get("/api/review/items/999999", headers=h["ana"])
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    for params, field in (
        ({"reason": "bogus"}, "reason"),
        ({"state": "done"}, "state"),
        ({"segment": "rag"}, "segment"),
    ):
        bad = client.get("/api/review/items", params=params, headers=h["ana"])
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_input", bad.text
        assert bad.json()["message"].startswith(f"{field}: ")


def test_claim_label_skip_as_the_token_reviewer(api: tuple[TestClient, dict], engine: Engine) -> None:
    client, h = api
    top = review.list_items(engine, state="pending", limit=1)[0]
    claimed = client.post("/api/review/next", headers=h["ana"])
    assert claimed.status_code == 200, claimed.text
    body = claimed.json()
    assert list(body) == ["itemId", "traceId", "rubric", "reasons", "leaseExpiresAt"]  # review next --json
    assert (body["itemId"], body["reasons"]) == (top["itemId"], top["reasons"])
    item = body["itemId"]
    assert review.get_item(engine, item)["claimedBy"] == "ana"
    scale = review.item_scale(engine, item)

    # another reviewer can neither label nor skip it; ana may not act as ben; bad labels are 400
    for path, payload in ((f"/api/review/items/{item}/label", {"label": scale["labels"][0]}),
                          (f"/api/review/items/{item}/skip", None)):  # fmt: skip
        refused = client.post(path, json=payload, headers=h["ben"])
        assert refused.status_code == 409 and refused.json()["code"] == "conflict", refused.text
        assert "claimed by ana" in refused.json()["message"]
    posing = client.post(f"/api/review/items/{item}/label", json={"label": scale["labels"][0], "reviewer": "ben"},
                         headers=h["ana"])  # fmt: skip
    assert posing.status_code == 403 and posing.json()["code"] == "forbidden"
    wrong = client.post(f"/api/review/items/{item}/label", json={"label": "maybe"}, headers=h["ana"])
    assert wrong.status_code == 400 and wrong.json()["code"] == "invalid_input"
    for payload in ({"label": "pass", "extra": 1}, {"label": "pass", "rationale": "a\x00b"}, {"label": ""}, {}):
        assert client.post(f"/api/review/items/{item}/label", json=payload, headers=h["ana"]).status_code == 422
    assert review.get_item(engine, item)["labels"] == []  # nothing refused left a trace

    passing = scale["passing"][0]
    labelled = client.post(f"/api/review/items/{item}/label", json={"label": passing, "rationale": "ok"},
                           headers=h["ana"])  # fmt: skip
    assert labelled.status_code == 200, labelled.text
    stored = review.get_item(engine, item)["labels"]
    assert labelled.json() == stored[0] and (stored[0]["reviewer"], stored[0]["passed"]) == ("ana", True)
    relabel = client.post(f"/api/review/items/{item}/label", json={"label": scale["labels"][-1]}, headers=h["ben"])
    assert relabel.status_code == 200, relabel.text
    assert [x["reviewer"] for x in review.get_item(engine, item)["labels"]] == ["ana", "ben"]  # appended

    # an admin may claim for someone else; that reviewer then skips it
    for_ben = client.post("/api/review/next", json={"reviewer": "ben", "leaseSeconds": 60}, headers=h["admin"]).json()
    assert review.get_item(engine, for_ben["itemId"])["claimedBy"] == "ben"
    skipped = client.post(f"/api/review/items/{for_ben['itemId']}/skip", headers=h["ben"])
    assert skipped.status_code == 200 and skipped.json()["state"] == "skipped"
    assert skipped.json() == review.list_items(engine, state="skipped")[0]
    assert client.post("/api/review/next", json={"reviewer": "ben"}, headers=h["ana"]).status_code == 403
    assert client.post("/api/review/next", headers=h["ingest"]).status_code == 403

    # filters pass through; nothing claimable is 404 queue_empty
    low = client.post("/api/review/next", json={"rubric": "helpfulness", "reason": "audit"}, headers=h["ana"]).json()
    assert low["rubric"] == "helpfulness" and "audit" in low["reasons"]
    empty = client.post("/api/review/next", json={"rubric": "no_such_rubric"}, headers=h["ana"])
    assert empty.status_code == 404 and empty.json()["code"] == "queue_empty"
    bad = client.post("/api/review/next", json={"reason": "bogus"}, headers=h["ana"])
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_input"


def test_agreement_matches_the_cli(api: tuple[TestClient, dict], engine: Engine) -> None:
    client, h = api
    for _ in range(4):
        got: dict[str, Any] | None = review.claim_next(engine, "ana", rubric="answer_correctness")
        assert got is not None
        review.label_item(engine, got["itemId"], "ana", "fail")
    report = client.get("/api/review/agreement", params={"rubric": "answer_correctness", "by": "rag"}, headers=h["ana"])
    assert report.status_code == 200, report.text
    cli = invoke("review", "agreement", "--rubric", "answer_correctness", "--by", "rag", "--json").stdout
    assert report.json() == orjson.loads(cli)
    (one,) = report.json()
    assert one["rubric"] == "answer_correctness" and one["n"] + one["judgeFailed"] == 4
    bad = client.get("/api/review/agreement", params={"by": "nope"}, headers=h["ana"])
    assert bad.status_code == 400 and "by: unknown dimension" in bad.json()["message"]


def test_metrics_count_judge_calls_and_the_queue_as_the_queue_reads(
    api: tuple[TestClient, dict], engine: Engine
) -> None:
    """/metrics over a scored store: the judge latency histogram counts every uncached judge
    call; review items by state; a claim whose lease expired counts as pending again."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import func, select, update

    from tracejury.store.metrics import store_metrics
    from tracejury.store.tables import EvaluationRow, ReviewItem

    client, h = api
    e = EvaluationRow.__table__
    with engine.connect() as conn:
        calls = conn.execute(select(func.count()).where(e.c.evaluator_kind == "rubric", e.c.cached.is_(False),
                                                        e.c.latency_ms.is_not(None))).scalar_one()  # fmt: skip
    assert calls > 0
    text = client.get("/metrics", headers=h["admin"]).text
    assert f'tracejury_judge_call_latency_seconds_bucket{{le="+Inf"}} {calls}.0' in text
    assert f"tracejury_judge_call_latency_seconds_count {calls}.0" in text
    pending = len(review.list_items(engine, state="pending", limit=10_000))
    assert f'tracejury_review_items{{state="pending"}} {pending}.0' in text
    claimed = client.post("/api/review/next", json={}, headers=h["ana"]).json()["itemId"]
    assert store_metrics(engine).review == {"pending": pending - 1, "claimed": 1}
    with engine.begin() as conn:
        conn.execute(update(ReviewItem.__table__).where(ReviewItem.__table__.c.id == claimed)
                     .values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=1)))  # fmt: skip
    assert store_metrics(engine).review == {"pending": pending}


def test_claims_and_labels_record_the_token_id_and_the_name(api: tuple[TestClient, dict], engine: Engine) -> None:
    client, h = api
    ids = {who: client.get("/api/review/me", headers=h[who]).json()["tokenId"] for who in ("ana", "ben", "admin")}
    mine = client.post("/api/review/next", headers=h["ana"]).json()["itemId"]
    held = review.get_item(engine, mine)
    assert (held["claimedBy"], held["claimedByToken"]) == ("ana", ids["ana"])
    label = review.item_scale(engine, mine)["labels"][0]
    own = client.post(f"/api/review/items/{mine}/label", json={"label": label}, headers=h["ana"]).json()
    assert (own["reviewer"], own["tokenId"]) == ("ana", ids["ana"])

    # an admin acting for ben: the name is ben's, the token id the admin's
    theirs = client.post("/api/review/next", json={"reviewer": "ben"}, headers=h["admin"]).json()["itemId"]
    held = review.get_item(engine, theirs)
    assert (held["claimedBy"], held["claimedByToken"]) == ("ben", ids["admin"])
    label = review.item_scale(engine, theirs)["labels"][0]
    by_admin = client.post(f"/api/review/items/{theirs}/label", json={"label": label, "reviewer": "ben"},
                           headers=h["admin"]).json()  # fmt: skip
    assert (by_admin["reviewer"], by_admin["tokenId"]) == ("ben", ids["admin"])
    assert review.get_item(engine, theirs)["labels"][-1] == by_admin


def test_a_token_named_like_another_tokens_default_identity_cannot_act_as_it(
    api: tuple[TestClient, dict], engine: Engine
) -> None:
    from sqlalchemy import update

    from tracejury.core.errors import InvalidInput
    from tracejury.store.tables import ApiToken

    client, h = api
    anon = client.get("/api/review/me", headers=h["anon"]).json()["tokenId"]
    with pytest.raises(InvalidInput, match="reserved"):
        create_token(engine, "reviewer", f"token:{anon}")
    # a token so named before migration 0013: its name is ignored, it reviews as itself
    token, principal = create_token(engine, "reviewer", "mallory")
    table = ApiToken.__table__
    with engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == principal.token_id).values(name=f"token:{anon}"))
    mallory = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/review/me", headers=mallory).json()["reviewer"] == f"token:{principal.token_id}"
    claimed = client.post("/api/review/next", headers=h["anon"]).json()["itemId"]
    label = review.item_scale(engine, claimed)["labels"][0]
    posing = client.post(f"/api/review/items/{claimed}/label", json={"label": label, "reviewer": f"token:{anon}"},
                         headers=mallory)  # fmt: skip
    assert posing.status_code == 403 and posing.json()["code"] == "forbidden"
    not_theirs = client.post(f"/api/review/items/{claimed}/skip", headers=mallory)
    assert not_theirs.status_code == 409
    assert review.get_item(engine, claimed)["claimedBy"] == f"token:{anon}"
