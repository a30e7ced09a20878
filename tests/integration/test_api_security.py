"""The API's security review (issue 15, item 5; docs/security.md): failed tokens per client
address are locked out, no cross-origin access, every route's body is bounded, /metrics
needs an admin token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tracejury.api import create_app
from tracejury.api.app import ROUTERS
from tracejury.api.throttle import FailedAuth
from tracejury.settings import Settings
from tracejury.store.tokens import create_token


class Clock:
    """A hand-moved monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_lock_a_source_out_for_a_while_within_bounded_memory() -> None:
    clock = Clock()
    throttle = FailedAuth(max_failures=3, window_s=60, lockout_s=30, max_sources=100, clock=clock)
    for _ in range(2):
        throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") is None
    clock.now += 61  # the window ran out: the count starts again
    throttle.failed("10.0.0.1")
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") is None
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 30
    assert throttle.retry_after("10.0.0.2") is None  # per source
    clock.now += 29.5
    assert throttle.retry_after("10.0.0.1") == 1
    clock.now += 1
    assert throttle.retry_after("10.0.0.1") is None
    for i in range(1000):
        throttle.failed(f"192.0.2.{i}")
    assert len(throttle) == 100  # the least recently failing sources are forgotten


@pytest.fixture
def client(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(database_url=db_url, api_max_body_bytes=1000,
                        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}")  # fmt: skip
    with TestClient(create_app(settings), client=("203.0.113.7", 5000)) as c:
        yield c
        c.app.state.engine().dispose()


def test_bad_tokens_from_one_address_are_locked_out_with_retry_after(client: TestClient) -> None:
    clock = Clock()
    client.app.state.failed_auth = FailedAuth(max_failures=5, window_s=60, lockout_s=120, clock=clock)
    good = {"Authorization": f"Bearer {create_token(client.app.state.engine(), 'reviewer', 'ana')[0]}"}
    assert client.get("/api/review/me", headers=good).status_code == 200
    for i in range(5):
        bad = client.get("/api/review/me", headers={"Authorization": f"Bearer tj_guess_{i}"})
        assert bad.status_code == 401
    locked = client.get("/api/review/me", headers=good)  # even a good token: the lookup is not made
    assert locked.status_code == 429 and locked.headers["retry-after"] == "120"
    assert locked.json()["code"] == "too_many_failures"
    assert client.get("/api/review/me").status_code == 401  # no token at all is not a guess
    other = TestClient(client.app, client=("198.51.100.9", 5000))
    assert other.get("/api/review/me", headers=good).status_code == 200  # another address
    clock.now += 121
    assert client.get("/api/review/me", headers=good).status_code == 200


def test_no_cross_origin_access(client: TestClient) -> None:
    token = create_token(client.app.state.engine(), "reviewer", "ana")[0]
    origin = {"Origin": "https://evil.example"}
    preflight = client.options("/api/review/me", headers={**origin, "Access-Control-Request-Method": "GET",
                                                          "Access-Control-Request-Headers": "authorization"})  # fmt: skip
    assert preflight.status_code >= 400
    for r in (preflight, client.get("/api/review/me", headers={**origin, "Authorization": f"Bearer {token}"}),
              client.get("/review", headers=origin)):  # fmt: skip
        assert not any(h.startswith("access-control-") for h in r.headers), r.headers


def test_metrics_need_an_admin_token(client: TestClient) -> None:
    engine = client.app.state.engine()
    assert client.get("/metrics").status_code == 401
    for role in ("ingest", "reviewer"):
        token = create_token(engine, role)[0]
        assert client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 403
    admin = create_token(engine, "admin")[0]
    assert client.get("/metrics", headers={"Authorization": f"Bearer {admin}"}).status_code == 200


def _concrete(path: str) -> str:
    return path.replace("{item_id}", "1").replace("{", "x").replace("}", "")


def test_every_route_refuses_a_body_over_the_limit(client: TestClient) -> None:
    """Every route, documented or not (the review page, /healthz, the OTLP receivers, login
    via /api/review/me), with and without an admin token: 413 before anything reads it."""
    admin = {"Authorization": f"Bearer {create_token(client.app.state.engine(), 'admin')[0]}"}
    every = [*client.app.routes, *(r for module in ROUTERS for r in module.router.routes)]
    routes = sorted({(m, r.path) for r in every if hasattr(r, "path") for m in r.methods or () if m != "HEAD"})
    assert {("POST", "/v1/traces"), ("POST", "/v1/logs"), ("POST", "/traces"), ("GET", "/review"),
            ("POST", "/api/review/items/{item_id}/label")} <= set(routes)  # fmt: skip
    for method, path in routes:
        for headers in ({}, admin):
            r = client.request(method, _concrete(path), content=b"x" * 1001,
                               headers={**headers, "content-type": "application/json"})  # fmt: skip
            assert r.status_code == 413 and r.json()["code"] == "too_large", (method, path, r.text)


def test_otlp_grpc_locks_out_bad_tokens_per_peer(engine: object) -> None:
    from tracejury.api.errors import ApiError
    from tracejury.api.otlp_grpc import _Receiver

    class Context:
        def __init__(self, peer: str, token: str) -> None:
            self._peer, self._token = peer, token

        def peer(self) -> str:
            return self._peer

        def invocation_metadata(self) -> list[tuple[str, str]]:
            return [("authorization", f"Bearer {self._token}")]

    receiver = _Receiver(lambda: engine, Settings())
    receiver.failed_auth = FailedAuth(max_failures=2, window_s=60, lockout_s=60)
    good = create_token(engine, "ingest", "feeder")[0]  # type: ignore[arg-type]
    for _ in range(2):
        with pytest.raises(ApiError) as bad:
            receiver._principal(Context("ipv4:192.0.2.1:4000", "tj_guess"))  # type: ignore[arg-type]
        assert bad.value.status == 401
    with pytest.raises(ApiError) as locked:
        receiver._principal(Context("ipv4:192.0.2.1:4001", good))  # type: ignore[arg-type]
    assert locked.value.status == 429
    assert receiver._principal(Context("ipv6:[2001:db8::1]:4000", good)).name == "feeder"  # type: ignore[arg-type]
