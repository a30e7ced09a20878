"""Judge spend on a real store and a real mock judge: costs recorded and reported, a capped
batch planned to its cap and stopped on whole chunks with its probabilities scaled, calls
refused once a cap has no room, a daily cap per profile, and the cap never exceeded by two
processes sharing it through a real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from sqlalchemy import Engine, select

from tests.integration.procs import RedisServer
from tests.integration.reviewing import invoke, populate, runner
from tracejury.cli import app
from tracejury.store import batches as store
from tracejury.store import spend as spend_store
from tracejury.store.tables import BatchChunk, BatchTrace, EvaluationRow

ROOT = Path(__file__).resolve().parents[2]
PRICE = {"input_per_million": 5.0, "output_per_million": 15.0}  # dear, so cents show


def priced(fast_rubrics: Path, tmp_path: Path, **extra: Any) -> Path:
    """The fast rubrics with a price (and ``extra``) on the default judge profile."""
    target = tmp_path / "priced-rubrics"
    target.mkdir()
    for item in fast_rubrics.iterdir():
        dest = target / item.name
        if item.is_dir():
            import shutil

            shutil.copytree(item, dest)
        else:
            dest.write_bytes(item.read_bytes())
    doc = yaml.safe_load((target / "profiles.yaml").read_text())
    doc["profiles"][0] |= {"price": PRICE, "max_output_tokens": 64, **extra}
    (target / "profiles.yaml").write_text(yaml.safe_dump(doc))
    return target


def _rows(engine: Engine, batch_id: str) -> list[Any]:
    e = EvaluationRow.__table__
    with engine.connect() as conn:
        return list(conn.execute(select(e).where(e.c.batch_id == batch_id)))


def _close_worker_clients() -> None:
    from workers import batches

    for scoring in batches._scoring:
        scoring._runner.run(scoring._stack.aclose())
        scoring._runner.close()
    batches._scoring.clear()


def test_score_records_cost_and_cached_verdicts_are_saved_not_spent(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mock_judge: str, fast_rubrics: Path
) -> None:
    populate(tmp_path, monkeypatch, judge_url=mock_judge, rubrics_dir=priced(fast_rubrics, tmp_path), traces=40)
    first = orjson.loads(invoke("score", "--release", "r1", "--json", "--rubric", "helpfulness").stdout)
    usage = first["usage"]
    rows = [r for r in _rows(engine, first["batchId"]) if r.evaluator_kind == "rubric"]
    assert rows and all(r.prompt_tokens and r.completion_tokens for r in rows if not r.cached)
    # the cost of each evaluation is its reported tokens at the profile's price
    for r in rows:
        if not r.cached:
            expected = (r.prompt_tokens * 5.0 + r.completion_tokens * 15.0) / 1e6
            assert r.cost_usd == pytest.approx(expected)
    assert usage["costUsd"] == pytest.approx(sum(r.cost_usd or 0.0 for r in rows))
    assert usage["promptTokens"] == sum(r.prompt_tokens or 0 for r in rows) > 0
    assert usage["evaluators"]["helpfulness"]["costUsd"] == pytest.approx(usage["costUsd"])

    again = orjson.loads(invoke("score", "--release", "r1", "--json", "--rubric", "helpfulness").stdout)["usage"]
    assert again["costUsd"] == 0.0 and again["promptTokens"] == 0  # every verdict from the cache
    assert again["cachedEvaluations"] == again["judgeEvaluations"] == usage["judgeEvaluations"]
    assert again["savedUsd"] == pytest.approx(usage["costUsd"] + usage["savedUsd"])

    report = orjson.loads(invoke("cost", "--by", "rubric", "--json").stdout)
    (row,) = [r for r in report if r["rubric"] == "helpfulness"]
    assert row["costUsd"] == pytest.approx(usage["costUsd"])
    assert row["savedUsd"] == pytest.approx(again["savedUsd"] + usage["savedUsd"])
    assert "judge usage:" in invoke("score", "--release", "r1", "--rubric", "helpfulness").stdout
    bad = runner.invoke(app, ["cost", "--by", "colour"])
    assert bad.exit_code != 0

    from fastapi.testclient import TestClient

    from tracejury.api.app import create_app
    from tracejury.settings import Settings
    from tracejury.store.tokens import create_token

    with TestClient(create_app(Settings())) as client:
        admin = create_token(engine, "admin", "spend-test")[0]
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {admin}"}).text
    cost_line = next(line for line in metrics.splitlines()
                     if line.startswith('tracejury_judge_cost_usd_total{profile="default",rubric="helpfulness"}'))  # fmt: skip
    assert float(cost_line.split()[-1]) == pytest.approx(usage["costUsd"])
    assert 'tracejury_judge_tokens_total{kind="prompt",profile="default",rubric="helpfulness"}' in metrics


def test_a_capped_batch_is_planned_to_its_cap_and_stopped_on_whole_chunks(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mock_judge: str, fast_rubrics: Path
) -> None:
    from judges.catalog import load_catalog
    from tracejury.core.sampling import default_sampling
    from tracejury.settings import Settings
    from workers.batches import create_queued_batch, run_chunk
    from workers.spend import batch_key, nano

    rubrics = priced(fast_rubrics, tmp_path)
    populate(tmp_path, monkeypatch, judge_url=mock_judge, rubrics_dir=rubrics, traces=200)
    settings = Settings(chunk_size=10)

    def create(max_cost: float, seed: int) -> Any:
        sent: list[tuple[str, int]] = []
        created = create_queued_batch(
            engine, settings, load_catalog(rubrics), default_sampling(), release="r1",
            rubric_ids=["helpfulness"], sample_size=None, budget=None, seed=seed,
            enqueue=lambda b, c: sent.append((b, c)), max_cost=max_cost,
        )  # fmt: skip
        return created, sent

    # planned: the expected cost is 90% of the cap, estimated from rendered prompts (no history)
    created, sent = create(0.5, seed=1)
    cap = created.cost_cap
    assert cap["estimateFrom"] == "rendered prompts" and cap["estimatePerTraceUsd"] > 0
    assert 0.3 * 0.9 * 0.5 < cap["expectedCostUsd"] < 1.7 * 0.9 * 0.5
    assert any("--max-cost $0.5 buys about" in w for w in created.warnings)
    try:
        for batch_id, chunk_no in sent:
            assert run_chunk(engine, settings, batch_id, chunk_no) in ("done", "capped")
        spent = sum(r.cost_usd or 0.0 for r in _rows(engine, created.batch_id))
        assert 0 < spent <= 0.5
        assert spend_store.used(engine, batch_key(created.batch_id)) == pytest.approx(nano(spent), rel=1e-6)

        # measured now: the next plan reads tokens per call from the batch above
        created, sent = create(0.5, seed=2)
        assert created.cost_cap["estimateFrom"] == "measured"
        b = created.batch_id
        assert run_chunk(engine, settings, b, sent[0][1]) == "done"
        bt, bc = BatchTrace.__table__, BatchChunk.__table__
        with engine.connect() as conn:
            before = dict(conn.execute(select(bt.c.trace_id, bt.c.inclusion_prob).where(bt.c.batch_id == b)).all())
        # others spent the cap down to exactly chunk 1's expected cost: it is admitted, then its
        # calls' worst cases do not fit: cut whole, its evaluations set aside
        chunk1 = store.chunk_trace_ids(engine, b, sent[1][1])
        expected = nano(created.cost_cap["estimatePerTraceUsd"] * len(chunk1))
        fill = nano(0.5) - spend_store.used(engine, batch_key(b)) - expected
        assert spend_store.reserve(engine, batch_key(b), fill, nano(0.5)) == 1
        spend_store.settle(engine, batch_key(b), fill, fill)
        assert run_chunk(engine, settings, b, sent[1][1]) == "capped"
        assert not {r.trace_id for r in _rows(engine, b)} & set(chunk1)
        # the cap spent to its last cent: the rest are not admitted at all
        left = nano(0.5) - spend_store.used(engine, batch_key(b)) - 1000
        assert spend_store.reserve(engine, batch_key(b), left, nano(0.5)) == 1
        spend_store.settle(engine, batch_key(b), left, left)
        assert {run_chunk(engine, settings, b, c) for _, c in sent[2:]} == {"capped"}
    finally:
        _close_worker_clients()
    status = orjson.loads(invoke("batch", "status", b, "--json").stdout)
    assert status["state"] == "done" and "stopped by its cost cap" in status["reason"]
    assert status["failures"] == {}  # the refused calls went with their chunk
    stopped = status["costCap"]
    assert stopped["stopped"] and stopped["chunksRun"] == 1 and stopped["chunks"] == len(sent)
    with engine.connect() as conn:
        states = dict(conn.execute(select(bc.c.chunk_no, bc.c.state).where(bc.c.batch_id == b)).all())
        after = dict(conn.execute(select(bt.c.trace_id, bt.c.inclusion_prob).where(bt.c.batch_id == b)).all())
    ran = store.chunk_trace_ids(engine, b, sent[0][1])
    assert stopped["tracesRun"] == len(ran) and stopped["inclusionScale"] == pytest.approx(len(ran) / len(before))
    assert sorted(states.values()) == ["capped"] * (len(sent) - 1) + ["done"]
    rows = _rows(engine, b)
    assert {r.trace_id for r in rows} == set(ran)
    for trace_id in before:  # scaled once, and only for the traces that ran
        scale = stopped["inclusionScale"] if trace_id in ran else 1.0
        assert after[trace_id] == pytest.approx(before[trace_id] * scale)
    for r in rows:  # weight = 1 / (p × the share that ran)
        assert r.weight == pytest.approx(1.0 / (before[r.trace_id] * stopped["inclusionScale"]))
    assert "cost cap $0.5, stopped after 1 of" in invoke("batch", "status", b).stdout


def test_calls_that_do_not_fit_are_refused_and_recorded_as_budget_exhausted(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mock_judge: str, fast_rubrics: Path
) -> None:
    """A daily cap on the profile (the store's ledger, the embedded broker): calls beyond it are
    not sent, each one a ``budget_exhausted`` judge failure; the spend stays under the cap."""
    rubrics = priced(fast_rubrics, tmp_path, max_cost_per_day=0.2)
    populate(tmp_path, monkeypatch, judge_url=mock_judge, rubrics_dir=rubrics, traces=150)
    result = orjson.loads(invoke("score", "--release", "r1", "--json", "--rubric", "helpfulness").stdout)
    assert result["failures"].get("budget_exhausted", 0) > 0
    assert result["status"]["scored"] > 0
    assert 0 < result["usage"]["costUsd"] <= 0.2
    refused = [r for r in _rows(engine, result["batchId"]) if r.failure_kind == "budget_exhausted"]
    assert all(r.attempts == 0 and r.label is None and "daily cap" in r.error for r in refused)


WORKER = """
import asyncio, sys, orjson
from redis.asyncio import BlockingConnectionPool, Redis
from judges.llm.client import JudgeClient
from judges.llm.profiles import JudgeProfile
from judges.llm.transport import make_http_client
from judges.llm.types import JudgeRequest, JudgeVerdict
from workers.spend import BATCH_CAP, BatchCap, RedisLedger, SpendGuard

redis_url, judge_url, cap, calls, who = sys.argv[1:6]

async def main():
    profile = JudgeProfile(name="default", model="mock-judge", max_concurrency=16, max_output_tokens=64,
                           price={"input_per_million": 5.0, "output_per_million": 15.0})
    redis = Redis(connection_pool=BlockingConnectionPool.from_url(redis_url, max_connections=8))
    async with make_http_client(profile) as http:
        client = JudgeClient(http, profile, base_url=judge_url)
        guard = SpendGuard(lambda _n, req: client.judge(req), {"default": profile}, RedisLedger(redis))
        BATCH_CAP.set(BatchCap("b_shared", float(cap)))
        schema = {"type": "object", "properties": {"label": {"enum": ["pass", "fail"]},
                  "rationale": {"type": "string"}}, "required": ["label", "rationale"]}
        async def one(i):
            req = JudgeRequest(messages=({"role": "system", "content": "Judge."},
                                         {"role": "user", "content": f"{who} evidence {i} " + "x" * (i % 50)}),
                               output_schema=schema, labels=("pass", "fail"), schema_name="t")
            return await guard("default", req)
        outs = await asyncio.gather(*(one(i) for i in range(int(calls))))
    await redis.aclose()
    from tracejury.core.cost import call_cost, Price
    price = Price(**{"input_per_million": 5.0, "output_per_million": 15.0})
    print(orjson.dumps([{"kind": getattr(o, "kind", "verdict"),
                          "cost": call_cost(price, o.prompt_tokens, o.completion_tokens)} for o in outs]).decode())

asyncio.run(main())
"""


def test_a_cap_shared_through_redis_is_never_exceeded_by_two_processes(
    tmp_path: Path, redis_server: RedisServer, mock_judge: str
) -> None:
    cap = 0.15  # below what 2 × 250 calls cost
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, redis_server.url, mock_judge, str(cap), "250", who],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # fmt: skip
        for who in ("w1", "w2")
    ]
    outcomes = []
    for p in procs:
        out, errs = p.communicate(timeout=120)
        assert p.returncode == 0, errs.decode()[-2000:]
        outcomes += orjson.loads(out)
    spent = sum(o["cost"] or 0.0 for o in outcomes)
    kinds = {o["kind"] for o in outcomes}
    assert "budget_exhausted" in kinds and "verdict" in kinds
    assert spent <= cap
    # used to the end but for the last call's worst case over its 4 attempts (~$0.03 here):
    # calls wait for room while others settle
    assert spent > cap - 0.035
    import redis

    ledger = redis.Redis.from_url(redis_server.url).hgetall("tracejury:spend:batch:b_shared")
    assert int(ledger[b"reserved"]) == 0
    assert int(ledger[b"spent"]) == pytest.approx(spent * 1e9, rel=1e-6)


def test_the_api_creates_a_capped_batch_and_refuses_a_cap_without_prices(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mock_judge: str, fast_rubrics: Path
) -> None:
    from fastapi.testclient import TestClient

    from tracejury.api.app import create_app
    from tracejury.settings import Settings
    from tracejury.store.tokens import create_token

    populate(tmp_path, monkeypatch, judge_url=mock_judge, rubrics_dir=fast_rubrics, traces=60)
    monkeypatch.setenv("TRACEJURY_BROKER_URL", f"sqla+sqlite:///{tmp_path / 'broker.db'}")
    admin = {"Authorization": f"Bearer {create_token(engine, 'admin', 'cap-test')[0]}"}
    body = {"release": "r1", "rubrics": ["helpfulness"], "maxCost": 0.05}
    with TestClient(create_app(Settings())) as client:
        unpriced = client.post("/batches", json=body, headers=admin)
    assert unpriced.status_code == 400
    assert "has no price" in unpriced.json()["message"] and "\n" not in unpriced.json()["message"]

    monkeypatch.setenv("TRACEJURY_RUBRICS_DIR", str(priced(fast_rubrics, tmp_path)))
    with TestClient(create_app(Settings())) as client:
        created = client.post("/batches", json=body, headers=admin)
        assert created.status_code == 201, created.text
        cap = created.json()["costCap"]
        status = client.get(f"/batches/{created.json()['batchId']}", headers=admin).json()
    assert cap["maxCostUsd"] == 0.05 and cap["expectedCostUsd"] <= 0.05
    assert status["costCap"] == cap and status["usage"]["costUsd"] is None  # nothing run yet
