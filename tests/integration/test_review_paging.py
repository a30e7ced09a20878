"""Keyset paging of ``GET /api/review/items`` over a queue of 2,500 items (SQLite and
PostgreSQL, as ``db_url``): every item once, in queue order, whatever is claimed between pages;
the cursor's bad input in one line. And the review page's claim: ``POST /api/review/next`` with
``detail`` answers with the claimed item's detail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.integration.review_seed import seed_queue
from tracejury.api import create_app
from tracejury.settings import Settings
from tracejury.store import review
from tracejury.store.tokens import create_token

pytestmark = pytest.mark.integration

N = 2_500


@pytest.fixture
def api(engine: Engine, db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The app over a store seeded with N pending items; a reviewer token's headers."""
    seed_queue(engine, N)
    settings = Settings(database_url=db_url, broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}")
    headers = {"Authorization": f"Bearer {create_token(engine, 'reviewer', 'ana')[0]}"}
    with TestClient(create_app(settings)) as client:
        yield client, headers
        client.app.state.engine().dispose()


def _walk(client: TestClient, headers: dict[str, str], limit: int, **params: str) -> list[list[dict]]:
    """Every page of the pending queue, following X-Next-Cursor until there is none."""
    pages: list[list[dict]] = []
    cursor = None
    for _ in range(N // limit + 2):  # bounded: one more page than there can be
        query = {"state": "pending", "limit": str(limit), **params, **({"after": cursor} if cursor else {})}
        got = client.get("/api/review/items", params=query, headers=headers)
        assert got.status_code == 200, got.text
        pages.append(got.json())
        cursor = got.headers.get("x-next-cursor")
        if cursor is None:
            return pages
    raise AssertionError("the cursor never ran out")


def test_pages_cover_the_queue_once_in_order(api: tuple[TestClient, dict[str, str]], engine: Engine) -> None:
    client, headers = api
    whole = review.list_items(engine, state="pending", limit=N + 10)
    assert len(whole) == N
    pages = _walk(client, headers, 1000)
    assert [len(p) for p in pages] == [1000, 1000, 500]
    assert [i["itemId"] for p in pages for i in p] == [i["itemId"] for i in whole]
    # an exact multiple: the last full page says there is no more (no empty page after it)
    assert [len(p) for p in _walk(client, headers, 500)] == [500] * 5
    # filters hold across pages
    audit = [i["itemId"] for p in _walk(client, headers, 300, reason="audit") for i in p]
    assert audit == [i["itemId"] for i in review.list_items(engine, state="pending", reason="audit", limit=N)]


def test_claims_between_pages_shift_nothing(api: tuple[TestClient, dict[str, str]], engine: Engine) -> None:
    client, headers = api
    first = client.get("/api/review/items", params={"state": "pending", "limit": "50"}, headers=headers)
    seen = [i["itemId"] for i in first.json()]
    for _ in range(20):  # 20 claims take the top of the queue: items of page one
        assert client.post("/api/review/next", json={}, headers=headers).status_code == 200
    second = client.get("/api/review/items", headers=headers,
                        params={"state": "pending", "limit": "50", "after": first.headers["x-next-cursor"]})  # fmt: skip
    after = [i["itemId"] for i in second.json()]
    whole = [i["itemId"] for i in review.list_items(engine, limit=N)]
    assert after == whole[50:100] and not set(after) & set(seen)


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"after": "5"}, "after: '5' is not a cursor"),
        ({"after": "x.1"}, "after: 'x.1' is not a cursor"),
        ({"after": "5.1", "offset": "10"}, "after: page with a cursor or with offset, not both"),
    ],
)
def test_a_bad_cursor_is_one_line(api: tuple[TestClient, dict[str, str]], params: dict, words: str) -> None:
    client, headers = api
    got = client.get("/api/review/items", params=params, headers=headers)
    assert got.status_code == 400 and got.json()["code"] == "invalid_input"
    assert got.json()["message"].startswith(words) and "\n" not in got.json()["message"]


def test_a_claim_with_detail_answers_with_the_item(api: tuple[TestClient, dict[str, str]], engine: Engine) -> None:
    client, headers = api
    top = review.list_items(engine, state="pending", limit=2)
    plain = client.post("/api/review/next", json={}, headers=headers).json()
    assert set(plain) == {"itemId", "traceId", "rubric", "reasons", "leaseExpiresAt"}
    assert plain["itemId"] == top[0]["itemId"]
    got = client.post("/api/review/next", json={"detail": True}, headers=headers)
    assert got.status_code == 200, got.text
    detail = got.json()
    assert detail["itemId"] == top[1]["itemId"] and detail["state"] == "claimed" and detail["claimedBy"] == "ana"
    assert detail == client.get(f"/api/review/items/{detail['itemId']}", headers=headers).json()
    assert detail["question"]["description"] and "Rubric: answer correctness" in detail["question"]["prompt"]
    assert detail["view"]["finalAnswer"] and detail["scale"] == {"labels": ["pass", "fail"], "passing": ["pass"]}
