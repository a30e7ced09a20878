"""The judge concurrency limit as reported by the processes that judge: the store's rows, what
``/metrics`` and ``batch status`` show, on SQLite and PostgreSQL, from real judge calls."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from judges.llm import JudgeProfile, JudgeRequest
from judges.mock import running_mock_judge
from tests.unit.test_judge_client import SCHEMA
from tracejury.api import create_app
from tracejury.cli import app
from tracejury.settings import Settings
from tracejury.store import evaluations as store
from tracejury.store.engine import make_engine, migrate
from tracejury.store.judge_concurrency import ConcurrencyReport, EndpointConcurrency, live, publish, withdraw
from tracejury.store.tokens import create_token
from workers.deps import production_deps

SLOTS = 8


def _request(i: int) -> JudgeRequest:
    messages = ({"role": "system", "content": "You are a judge.\nAllowed labels: pass, fail"},
                {"role": "user", "content": f"Grade answer {i}.\n<evidence>\n{{}}\n</evidence>"})  # fmt: skip
    return JudgeRequest(messages, SCHEMA, ("pass", "fail"), "answer_correctness")


def test_live_sums_per_process_limits_counts_a_shared_one_once_and_drops_stale_rows(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate(engine)
        now = datetime.now(UTC)
        url = "http://judge.test/v1/chat/completions"
        publish(engine, [ConcurrencyReport("p1", "local", url, False, 40, 30),
                         ConcurrencyReport("s1", "shared", url, True, 90, 50)], now - timedelta(seconds=2))  # fmt: skip
        publish(engine, [ConcurrencyReport("p2", "local", url, False, 24, 20),
                         ConcurrencyReport("s2", "shared", url, True, 81, 31)], now - timedelta(seconds=1))  # fmt: skip
        publish(engine, [ConcurrencyReport("old", "gone", url, False, 7, 7)], now - timedelta(seconds=120))
        assert live(engine, now) == [
            EndpointConcurrency("local", url, 64, 50, 2, False),  # each process may have its own limit in flight
            EndpointConcurrency("shared", url, 81, 81, 2, True),  # one limit: the newest view of it
        ]
        publish(engine, [ConcurrencyReport("p1", "local", url, False, 10, 0)], now)  # a holder's row is replaced
        withdraw(engine, ["p2", "s1", "s2"])
        assert live(engine, now) == [EndpointConcurrency("local", url, 10, 0, 1, False)]
        publish(engine, [], now + timedelta(hours=2))  # rows an hour old are forgotten
        assert live(engine, now, fresh_s=10_000) == []
    finally:
        engine.dispose()


def test_a_judging_process_reports_its_limit_to_metrics_and_batch_status(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    settings = Settings(database_url=db_url, broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
                        metrics_cache_s=0)  # fmt: skip
    batch_id = store.create_batch(engine, release="r1", kind="queued", sampled=0,
                                  config={"judgeProfiles": {"default": {}}})  # fmt: skip
    profile = JudgeProfile(name="default", model="mock-judge", initial_concurrency=32, backoff_max_s=0.2)
    seen: dict[str, object] = {}

    async def main() -> None:
        async with running_mock_judge(latency_ms=20, max_inflight=SLOTS) as mock:
            profiles = {"default": profile.model_copy(update={"base_url": mock.base_url})}
            async with production_deps(engine, settings, profiles) as deps:
                await asyncio.gather(*(deps.judge_call("default", _request(i)) for i in range(300)))
                assert deps.settle is not None
                await deps.settle()  # a chunk ends: the limit is reported
                seen["live"] = await asyncio.to_thread(live, engine)
                seen["metrics"] = await asyncio.to_thread(_scrape, settings)
                seen["status"] = await asyncio.to_thread(CliRunner().invoke, app, ["batch", "status", batch_id])
                seen["url"] = mock.base_url + "/chat/completions"
        seen["after"] = live(engine)  # the process closed its clients: its rows are gone

    try:
        asyncio.run(main())
        (report,) = seen["live"]  # type: ignore[misc]
        assert (report.profile, report.endpoint, report.shared, report.processes) == ("default", seen["url"], False, 1)
        assert 4 <= report.limit <= 2 * SLOTS  # 32 to start, cut by the mock's 429s above 8
        metrics = seen["metrics"]
        value = re.search(r'tracejury_judge_concurrency_limit\{endpoint="([^"]+)",profile="default"\} (\S+)', metrics)  # type: ignore[arg-type]
        assert value and value.group(1) == seen["url"] and float(value.group(2)) == report.limit
        assert re.search(r'tracejury_judge_in_flight\{endpoint="[^"]+",profile="default"\} 0\.0', metrics)  # type: ignore[arg-type]
        status = seen["status"]
        assert status.exit_code == 0, status.output  # type: ignore[attr-defined]
        assert f"judge default: concurrency limit {report.limit} (1 process(es)), 0 in flight" in status.output  # type: ignore[attr-defined]
        assert seen["after"] == []
    finally:
        engine.dispose()


def _scrape(settings: Settings) -> str:
    with TestClient(create_app(settings)) as c:
        engine = c.app.state.engine()
        admin = create_token(engine, "admin")[0]
        text = c.get("/metrics", headers={"authorization": f"Bearer {admin}"}).text
        engine.dispose()
    return text
