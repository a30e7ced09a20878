"""`tracejury serve` as a real process on loopback: tokens from the CLI, ingest over HTTP,
metrics, and a bounded schemathesis run over the OpenAPI document that must find no 5xx."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.integration.procs import EXE, free_port, start, stop, wait_port
from tracejury.core.simulate import simulate


def _token(env: dict[str, str], role: str) -> str:
    out = subprocess.run([EXE, "token", "create", "--role", role, "--json"], env=env, check=True,
                         capture_output=True, timeout=60).stdout  # fmt: skip
    return orjson.loads(out)["token"]


@pytest.fixture
def api(base_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A running `tracejury serve`; yields its base URL and a token per role."""
    tokens = {role: _token(base_env, role) for role in ("ingest", "reviewer", "admin")}
    port = free_port()
    proc = start([EXE, "serve", "--port", str(port), "--log-level", "warning"], base_env, tmp_path / "serve.log")
    try:
        wait_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}", tokens
    finally:
        stop(proc)
        assert "Traceback" not in (tmp_path / "serve.log").read_text(), (tmp_path / "serve.log").read_text()


def test_serve_ingests_and_reports_metrics(api: tuple[str, dict[str, str]]) -> None:
    url, tokens = api
    body = b"\n".join(orjson.dumps(t) for t in simulate("r7", 120, seed=5)) + b"\nnot json\n"
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.post("/traces", content=body).status_code == 401
        r = http.post("/traces", content=body, headers={"Authorization": f"Bearer {tokens['ingest']}",
                                                         "content-type": "application/x-ndjson"})  # fmt: skip
        assert r.status_code == 200 and r.json() == {"ingested": 120, "duplicates": 0, "conflicts": 0, "quarantined": 1}
        admin = {"Authorization": f"Bearer {tokens['admin']}"}
        forbidden = http.get("/metrics", headers={"Authorization": f"Bearer {tokens['ingest']}"})
        assert forbidden.status_code == 403 and forbidden.json()["code"] == "forbidden"
        metrics = http.get("/metrics", headers=admin).text
        assert "tracejury_traces_ingested_total 120.0" in metrics
        assert "tracejury_traces_quarantined_total 1.0" in metrics
        assert 'tracejury_http_requests_total{method="POST",route="/traces",status="200"} 1.0' in metrics
        signals = http.get("/signals", params={"release": "r7", "by": "rag"}, headers=admin).json()
        assert sum(row["count"] for row in signals) == 120


def test_schemathesis_finds_no_server_error(api: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    """Fuzz every operation from the OpenAPI document (bounded: 30 examples each, 10 s per
    request, 6 minutes in all), as admin so requests reach the handlers."""
    url, tokens = api
    st = Path(EXE).parent / "schemathesis"
    run = subprocess.run(
        [str(st), "run", f"{url}/openapi.json", "--checks", "not_a_server_error", "--max-examples", "30",
         "--seed", "20261126", "--request-timeout", "10", "-H", f"Authorization: Bearer {tokens['admin']}",
         "--report-dir", str(tmp_path / "st")],
        capture_output=True, text=True, timeout=360, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert counts is not None, run.stdout[-2000:]
    generated, passed = map(int, counts.groups())
    assert generated == passed and generated >= 200, run.stdout[-2000:]
