"""The HTTP API in process (FastAPI's TestClient over the real app and a real store): roles on
every route, JSON errors, the body limit, ingest parity with the CLI, the OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from tracejury.api import create_app
from tracejury.settings import Settings
from tracejury.store.tokens import ROLES, create_token

ROOT = Path(__file__).resolve().parents[2]

# Who may call each route: the roles (ingest may only ingest; reviewer may read traces
# and work the review queue; admin may do everything). A new route must be added here.
ACCESS: dict[tuple[str, str], set[str]] = {
    ("POST", "/traces"): {"ingest", "admin"},
    ("POST", "/v1/traces"): {"ingest", "admin"},
    ("POST", "/v1/logs"): {"ingest", "admin"},
    ("GET", "/traces/{trace_id}"): {"reviewer", "admin"},
    ("GET", "/traces/{trace_id}/evaluations"): {"reviewer", "admin"},
    ("GET", "/signals"): {"admin"},
    ("GET", "/quarantine"): {"admin"},
    ("POST", "/batches"): {"admin"},
    ("GET", "/batches"): {"admin"},
    ("GET", "/batches/{batch_id}"): {"admin"},
    ("GET", "/batches/{batch_id}/results"): {"admin"},
    ("POST", "/gates/runs"): {"admin"},
    ("GET", "/gates/runs/{run_id}"): {"admin"},
    ("GET", "/gates/{gate_id}/history"): {"admin"},
    ("GET", "/rubrics"): {"admin"},
    ("GET", "/metrics"): {"admin"},
    ("GET", "/healthz"): {"anyone"},
}
REVIEW_PREFIXES = ("/review", "/api/review")
"""Review queue routes: reviewer and admin (checked generically below)."""


@pytest.fixture
def client(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(database_url=db_url, rubrics_dir=str(ROOT / "rubrics"),
                        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}")  # fmt: skip
    with TestClient(create_app(settings)) as c:
        yield c
        c.app.state.engine().dispose()


@pytest.fixture
def tokens(client: TestClient) -> dict[str, str]:
    engine = client.app.state.engine()
    return {role: create_token(engine, role, f"test-{role}")[0] for role in ROLES}


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _routes(client: TestClient) -> list[tuple[str, str]]:
    """Every route of the OpenAPI document (hidden routes are not part of the API)."""
    paths = client.get("/openapi.json").json()["paths"]
    return sorted((m.upper(), p) for p, ops in paths.items() for m in ops)


def _allowed(method: str, path: str) -> set[str]:
    if (method, path) in ACCESS:
        return ACCESS[(method, path)]
    if path.startswith(REVIEW_PREFIXES):
        return {"reviewer", "admin"}
    raise AssertionError(f"route {method} {path} has no entry in ACCESS: decide who may call it")


def _concrete(path: str) -> str:
    return path.replace("{", "x").replace("}", "")


def test_every_route_checks_roles(client: TestClient, tokens: dict[str, str]) -> None:
    routes = _routes(client)
    assert ("POST", "/traces") in routes and ("GET", "/metrics") in routes
    for method, path in routes:
        allowed = _allowed(method, path)
        url = _concrete(path)
        if allowed == {"anyone"}:
            assert client.request(method, url).status_code == 200
            continue
        if "html" in path or path.endswith(("/review", "/review/")):
            continue  # the review page itself is a static shell; its data routes are checked
        missing = client.request(method, url)
        assert missing.status_code == 401, (method, path, missing.text)
        assert missing.json()["code"] == "unauthorized"
        assert client.request(method, url, headers=_auth("tj_bogus")).status_code == 401
        for role, token in tokens.items():
            status = client.request(method, url, headers=_auth(token)).status_code
            if role in allowed:
                assert status not in (401, 403), (method, path, role, status)
            else:
                assert status == 403, (method, path, role, status)


def test_revoked_token_is_refused(client: TestClient, tokens: dict[str, str]) -> None:
    from tracejury.store.tokens import list_tokens, revoke_token

    engine = client.app.state.engine()
    assert client.get("/rubrics", headers=_auth(tokens["admin"])).status_code == 200
    admin_id = next(t["id"] for t in list_tokens(engine) if t["role"] == "admin")
    revoke_token(engine, str(admin_id))
    refused = client.get("/rubrics", headers=_auth(tokens["admin"]))
    assert refused.status_code == 401 and refused.json()["message"] == "invalid or revoked token"


def test_ingest_matches_the_cli(client: TestClient, tokens: dict[str, str], example_trace: dict[str, Any]) -> None:
    h = _auth(tokens["ingest"])
    good = dict(example_trace)
    bad = dict(example_trace, traceId="bad-1", runtime={**example_trace["runtime"], "latencyMs": -5})
    body = orjson.dumps([good, bad])
    r = client.post("/traces", content=body, headers={**h, "content-type": "application/json"})
    assert r.status_code == 200
    assert r.json() == {"ingested": 1, "duplicates": 0, "conflicts": 0, "quarantined": 1}
    # the same trace again, as JSON lines: idempotent
    again = client.post(
        "/traces", content=orjson.dumps(good) + b"\n\n", headers={**h, "content-type": "application/x-ndjson"}
    )
    assert again.json() == {"ingested": 0, "duplicates": 1, "conflicts": 0, "quarantined": 0}
    admin = _auth(tokens["admin"])
    quarantined = client.get("/quarantine", headers=admin).json()
    assert [q["traceId"] for q in quarantined] == ["bad-1"]
    assert quarantined[0]["source"].startswith("http:") and quarantined[0]["line"] == 2
    trace = client.get(f"/traces/{good['traceId']}", headers=_auth(tokens["reviewer"])).json()
    assert trace["trace"]["traceId"] == good["traceId"]
    assert client.get(f"/traces/{good['traceId']}/evaluations", headers=admin).json() == []


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        (b"", "application/json", "empty_body"),
        (b"\xff\xfe{}", "application/x-ndjson", "invalid_utf8"),
        (b"[" * 5000 + b"]" * 5000, "application/json", "invalid_json"),
        (b"this is not json", "application/json", "invalid_json"),
        (b'"a string"', "application/json", "invalid_json"),
    ],
)
def test_bad_bodies_are_4xx_and_change_nothing(
    client: TestClient, tokens: dict[str, str], body: bytes, content_type: str, code: str
) -> None:
    r = client.post("/traces", content=body, headers={**_auth(tokens["ingest"]), "content-type": content_type})
    assert r.status_code == 400
    assert r.json()["code"] == code and "\n" not in r.json()["message"]
    metrics = client.get("/metrics", headers=_auth(tokens["admin"])).text
    assert "tracejury_traces_ingested_total 0.0" in metrics
    assert "tracejury_traces_quarantined_total 0.0" in metrics


def test_oversized_body_is_413(db_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=db_url, api_max_body_bytes=1000)
    with TestClient(create_app(settings)) as c:
        token = create_token(c.app.state.engine(), "ingest")[0]
        r = c.post("/traces", content=b"x" * 5000, headers=_auth(token))
        assert r.status_code == 413 and r.json()["code"] == "too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
            for _ in range(10):
                yield b"y" * 500

        r = c.post("/traces", content=chunks(), headers=_auth(token))
        assert r.status_code == 413 and r.json()["code"] == "too_large"
        admin = create_token(c.app.state.engine(), "admin")[0]
        r = c.post("/batches", content=chunks(), headers={**_auth(admin), "content-type": "application/json"})
        assert r.status_code == 413 and r.json()["code"] == "too_large"  # a JSON model route, streamed
        c.app.state.engine().dispose()


def test_errors_are_json_one_line(client: TestClient, tokens: dict[str, str]) -> None:
    admin = _auth(tokens["admin"])
    cases = [
        (client.get("/batches/nope", headers=admin), 404, "not_found"),
        (client.get("/gates/runs/nope", headers=admin), 404, "not_found"),
        (client.get("/signals", params={"release": "r1", "by": "nope"}, headers=admin), 400, "bad_request"),
        (client.get("/signals", headers=admin), 422, "invalid_request"),
        (
            client.post("/batches", json={"release": "r1", "sampleSize": 5, "budget": 5}, headers=admin),
            422,
            "invalid_request",
        ),
        (
            client.post("/batches", content=b"{", headers={**admin, "content-type": "application/json"}),
            422,
            "invalid_request",
        ),
        (client.get("/no/such/route", headers=admin), 404, "not_found"),
        (client.delete("/traces", headers=admin), 405, "method_not_allowed"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        body = response.json()
        assert body["code"] == code and set(body) == {"code", "message"}
        assert body["message"] and "\n" not in body["message"] and "Traceback" not in body["message"]


def test_openapi_document(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for method, path in ACCESS:
        if not path.startswith("/v1/"):  # OTLP's routes are documented by their own module
            assert method.lower() in paths[path], (method, path)
    assert all(op.get("summary") for ops in paths.values() for op in ops.values())
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404  # no CDN scripts
    assert "application/x-ndjson" in paths["/traces"]["post"]["requestBody"]["content"]
    assert set(paths["/batches"]["post"]["requestBody"]["content"]["application/json"]["schema"]) >= {"$ref"}


def test_batch_and_gate_routes_give_the_cli_json(client: TestClient, tokens: dict[str, str], tmp_path: Path) -> None:
    """Create a batch over HTTP on ingested simulated traces; its status has the CLI's keys."""
    from tracejury.core.simulate import simulate

    lines = b"\n".join(orjson.dumps(t) for t in simulate("r1", 40, seed=3, regressions=[]))
    r = client.post(
        "/traces", content=lines, headers={**_auth(tokens["ingest"]), "content-type": "application/x-ndjson"}
    )
    assert r.json()["ingested"] == 40
    admin = _auth(tokens["admin"])
    created = client.post(
        "/batches", json={"release": "r1", "rubrics": ["json_valid"], "sampleSize": 40}, headers=admin
    )
    assert created.status_code == 201, created.text
    batch_id = created.json()["batchId"]
    status = client.get(f"/batches/{batch_id}", headers=admin).json()
    assert status["batchId"] == batch_id and status["state"] in ("running", "done")
    assert set(status) >= {"batchId", "state", "sampled", "status", "failures"}
    assert [b["batchId"] for b in client.get("/batches", headers=admin).json()] == [batch_id]
    no_baseline = client.post("/gates/runs", json={"release": "r1", "dryRun": True}, headers=admin)
    assert no_baseline.status_code == 400 and "no baseline release" in no_baseline.json()["message"]
    run = client.post("/gates/runs", json={"release": "r1", "baseline": "r1", "dryRun": True}, headers=admin)
    assert run.status_code == 200, run.text
    assert run.json()["runId"] is None and {o["decision"] for o in run.json()["outcomes"]} <= {
        "pass",
        "inconclusive",
        "insufficient_data",
    }


def test_metrics_are_read_once_per_cache_period(db_url: str, example_trace: dict[str, Any]) -> None:
    """Scrapes within TRACEJURY_METRICS_CACHE_S share one read of the store; after it, new counts."""
    # the same store twice: cached, the second scrape repeats the first; uncached, it sees the new trace
    for cache_s, expected in ((3600.0, ("0.0", "0.0")), (0.0, ("1.0", "2.0"))):
        with TestClient(create_app(Settings(database_url=db_url, metrics_cache_s=cache_s))) as c:
            engine = c.app.state.engine()
            admin, ingest = create_token(engine, "admin")[0], create_token(engine, "ingest")[0]
            first = c.get("/metrics", headers=_auth(admin)).text
            trace = dict(example_trace, traceId=f"m-{cache_s}")
            assert c.post("/traces", json=[trace], headers=_auth(ingest)).json()["ingested"] == 1
            second = c.get("/metrics", headers=_auth(admin)).text
            engine.dispose()
        assert f"tracejury_traces_ingested_total {expected[0]}" in first
        assert f"tracejury_traces_ingested_total {expected[1]}" in second


def test_an_unreachable_store_is_503_not_a_traceback() -> None:
    from tests.integration.procs import free_port

    url = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none?connect_timeout=2"
    with TestClient(create_app(Settings(database_url=url))) as c:
        r = c.get("/rubrics", headers=_auth("tj_anything"))
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert r.json()["code"] == "store_unavailable" and r.json()["message"].startswith("database error: ")
