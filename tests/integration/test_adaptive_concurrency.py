"""Adaptive judge concurrency against a real `tracejury mock-judge --max-inflight N` process:
in one process (the embedded broker's limit) and across two processes sharing a real Redis."""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from judges.llm import JudgeClient, JudgeProfile, JudgeRequest, JudgeVerdict, make_http_client
from tests.integration.procs import EXE, RedisServer, free_port, run_spawned, start, stop, wait_port
from tests.unit.test_judge_client import SCHEMA

SLOTS, LATENCY_MS, SECONDS, SETTLE_S = 40, 200, 6.0, 3.0
PROFILE = JudgeProfile(name="adaptive", model="mock-judge", max_concurrency=1024, initial_concurrency=32,
                       structured_output="json_schema", backoff_max_s=1.0)  # fmt: skip


@pytest.fixture
def slotted_judge(tmp_path: Path) -> Iterator[str]:
    """A mock judge process with SLOTS slots (429 above them) and LATENCY_MS; its base URL."""
    port = free_port()
    proc = start([EXE, "mock-judge", "--port", str(port), "--latency-ms", str(LATENCY_MS),
                  "--max-inflight", str(SLOTS)], dict(os.environ), tmp_path / "mock-judge.log")  # fmt: skip
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc)


def _stats(base_url: str) -> dict[str, int]:
    return httpx.get(base_url.removesuffix("/v1") + "/stats", timeout=5).json()


def _request(i: int) -> JudgeRequest:
    messages = ({"role": "system", "content": "You are a judge.\nAllowed labels: pass, fail"},
                {"role": "user", "content": f"Grade answer {i}.\n<evidence>\n{{}}\n</evidence>"})  # fmt: skip
    return JudgeRequest(messages, SCHEMA, ("pass", "fail"), "answer_correctness")


async def _drive(base_url: str, callers: int, start_at: float, redis_url: str | None = None) -> dict[str, Any]:
    """``callers`` tasks judging until ``start_at + SECONDS`` (wall clock); the limit every 50 ms
    and the verdicts' latencies after ``SETTLE_S``."""
    limiter = redis = None
    if redis_url is not None:
        from redis.asyncio import Redis

        from workers.limits import RedisLimiter

        redis = Redis.from_url(redis_url)
        limiter = RedisLimiter(redis, "adaptive", requests_per_minute=None, tokens_per_minute=None,
                               max_concurrency=PROFILE.max_concurrency, adaptive=PROFILE.concurrency_settings())  # fmt: skip
    samples: list[tuple[float, int]] = []
    latencies: list[int] = []
    async with make_http_client(PROFILE) as http:
        client = JudgeClient(http, PROFILE, base_url=base_url, limiter=limiter, concurrency=limiter)
        concurrency: Any = client.concurrency
        await asyncio.sleep(max(0.0, start_at - time.time()))
        until = start_at + SECONDS

        async def call(i: int) -> None:
            while time.time() < until:
                outcome = await client.judge(_request(i))
                i += callers
                if isinstance(outcome, JudgeVerdict) and time.time() - start_at >= SETTLE_S:
                    latencies.append(outcome.latency_ms)

        async def sample() -> None:
            while time.time() < until:
                samples.append((time.time() - start_at, concurrency.limit))
                await asyncio.sleep(0.05)

        await asyncio.gather(sample(), *(call(i) for i in range(callers)))
    if limiter is not None:
        await limiter.aclose()
    if redis is not None:
        await redis.aclose()
    return {"samples": samples, "latencies": latencies}


def _settled(samples: list[tuple[float, int]]) -> list[int]:
    return [limit for t, limit in samples if t >= SETTLE_S]


def _refused_share(base_url: str, before: dict[str, int]) -> float:
    after = _stats(base_url)
    return (after["rateLimited"] - before["rateLimited"]) / max(1, after["requests"] - before["requests"])


def test_the_limit_settles_just_below_the_servers_slots(slotted_judge: str) -> None:
    start_at = time.time() + 0.5

    async def main() -> tuple[dict[str, Any], dict[str, int]]:
        task = asyncio.create_task(_drive(slotted_judge, 200, start_at))
        await asyncio.sleep(start_at + SETTLE_S - time.time())
        at_settle = await asyncio.to_thread(_stats, slotted_judge)
        return await task, at_settle

    out, at_settle = asyncio.run(main())
    settled = _settled(out["samples"])
    assert 0.8 * SLOTS <= statistics.median(settled) <= SLOTS + 1, settled
    assert _refused_share(slotted_judge, at_settle) < 0.05
    assert _stats(slotted_judge)["peakInFlight"] == SLOTS
    # 200 callers share ~20 slots, so each waits ~1 s for one; its latency is the call's, from send
    assert LATENCY_MS <= statistics.median(out["latencies"]) < 2 * LATENCY_MS


def _process(base_url: str, redis_url: str, start_at: float, barrier: Any, results: Any) -> None:
    barrier.wait()
    results.put((os.getpid(), asyncio.run(_drive(base_url, 100, start_at, redis_url))))


def test_two_processes_share_one_limit_through_redis(slotted_judge: str, redis_server: RedisServer) -> None:
    start_at = time.time() + 3.0  # spawned interpreters need a moment to start
    at_settle: dict[str, int] = {}
    timer = threading.Timer(start_at + SETTLE_S - time.time(), lambda: at_settle.update(_stats(slotted_judge)))
    timer.start()
    out = run_spawned(_process, [(slotted_judge, redis_server.url, start_at)] * 2, timeout=SECONDS + 60)
    timer.join()
    a, b = (dict(o["samples"]) for o in out.values())
    settled = _settled([*a.items(), *b.items()])
    assert 0.8 * SLOTS <= statistics.median(settled) <= SLOTS + 1, settled
    # one limit: each process's view of it, tick by tick, agrees within a cut or a step
    ticks_a, ticks_b = ({round(t * 20): v for t, v in s.items() if t >= SETTLE_S} for s in (a, b))
    common = ticks_a.keys() & ticks_b.keys()
    close = sum(abs(ticks_a[t] - ticks_b[t]) <= 2 for t in common)
    assert common and close >= 0.8 * len(common)
    assert _refused_share(slotted_judge, at_settle) < 0.05
    assert _stats(slotted_judge)["peakInFlight"] == SLOTS
