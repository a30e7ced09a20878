"""Judge-profile limits shared through a real redis-server by separate clients."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from redis import Redis as SyncRedis
from redis.asyncio import BlockingConnectionPool, Redis

from tests.integration.procs import RedisServer, stop
from workers.limits import RedisLimiter

ROOT = Path(__file__).resolve().parents[2]


def _limiters(server: RedisServer, n: int, **kw: object) -> tuple[list[Redis], list[RedisLimiter]]:
    clients = [  # one pool each, like separate processes; blocking: wait for a free connection
        Redis(connection_pool=BlockingConnectionPool.from_url(server.url, max_connections=16))
        for _ in range(n)
    ]
    return clients, [RedisLimiter(c, "p", **kw) for c in clients]  # type: ignore[arg-type]


async def _close(clients: list[Redis], limiters: list[RedisLimiter]) -> None:
    for limiter in limiters:
        await limiter.aclose()
    for c in clients:
        await c.aclose()
        await c.connection_pool.disconnect()


def _held(server: RedisServer) -> int:
    """Slots held by all holders, as Redis records them."""
    with SyncRedis.from_url(server.url) as r:
        return sum(int(v) for v in r.hgetall("tracejury:limits:p:slots:held").values())


def test_concurrency_holds_across_clients(redis_server: RedisServer) -> None:
    async def main() -> int:
        clients, limiters = _limiters(redis_server, 2, requests_per_minute=None,
                                      tokens_per_minute=None, max_concurrency=3)  # fmt: skip
        held, peak = 0, 0

        async def call(limiter: RedisLimiter) -> None:
            nonlocal held, peak
            async with limiter.slot():
                held += 1
                peak = max(peak, held)
                await asyncio.sleep(0.02)
                held -= 1

        await asyncio.gather(*(call(limiters[i % 2]) for i in range(40)))
        await _close(clients, limiters)
        return peak

    assert asyncio.run(main()) == 3


def test_requests_per_minute_holds_across_clients(redis_server: RedisServer) -> None:
    async def main() -> float:
        clients, limiters = _limiters(redis_server, 2, requests_per_minute=6000,
                                      tokens_per_minute=None, max_concurrency=100)  # fmt: skip
        start = time.monotonic()
        # 100/s with a 5 s burst (500): 600 requests need ~1 s of refill, whoever sends them
        await asyncio.gather(*(limiters[i % 2].acquire(100) for i in range(600)))
        elapsed = time.monotonic() - start
        for c in clients:
            await c.aclose()
            await c.connection_pool.disconnect()
        return elapsed

    elapsed = asyncio.run(main())
    assert 0.8 < elapsed < 3.0


# A holder in its own process: takes every slot, says so, then holds them until killed.
_HOLDER = """
import asyncio, sys
from redis.asyncio import Redis
from workers.limits import RedisLimiter

async def main() -> None:
    limiter = RedisLimiter(Redis.from_url(sys.argv[1]), "p", requests_per_minute=None,
                           tokens_per_minute=None, max_concurrency=2, lease_s=float(sys.argv[2]))
    async def hold() -> None:
        async with limiter.slot():
            print("held", flush=True)
            await asyncio.sleep(3600)
    await asyncio.gather(hold(), hold())

asyncio.run(main())
"""


def test_a_crashed_holder_frees_its_slot(redis_server: RedisServer, tmp_path: Path) -> None:
    lease = 1.0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, redis_server.url, str(lease)], env=env,
                              stdout=subprocess.PIPE, start_new_session=True)  # fmt: skip
    try:
        assert holder.stdout is not None
        assert [holder.stdout.readline(), holder.stdout.readline()] == [b"held\n", b"held\n"]
        time.sleep(2 * lease)  # alive, it renews its lease: the slots stay taken
        assert _held(redis_server) == 2
        os.kill(holder.pid, signal.SIGKILL)  # crashes: nothing gives the slots back
        holder.wait(timeout=10)
        killed = time.monotonic()

        async def main() -> float:
            clients, (limiter,) = _limiters(redis_server, 1, requests_per_minute=None,
                                            tokens_per_minute=None, max_concurrency=2)  # fmt: skip
            async with limiter.slot(), limiter.slot():
                waited = time.monotonic() - killed
            await _close(clients, [limiter])
            return waited

        # freed when the lease renewed last (at most lease/3 before the kill) runs out
        assert 0.5 * lease < asyncio.run(main()) < lease + 1.0
    finally:
        stop(holder)
        assert holder.stdout is not None
        holder.stdout.close()


def test_a_renewed_lease_keeps_a_long_held_slot(redis_server: RedisServer) -> None:
    async def main() -> tuple[float, float]:
        clients, (a, b) = _limiters(redis_server, 2, requests_per_minute=None, tokens_per_minute=None,
                                    max_concurrency=1, lease_s=0.3)  # fmt: skip
        released = 0.0

        async def long_call() -> None:
            nonlocal released
            async with a.slot():
                await asyncio.sleep(1.5)  # five leases
                released = time.monotonic()

        holding = asyncio.create_task(long_call())
        await asyncio.sleep(0.05)
        start = time.monotonic()
        async with b.slot():
            got = time.monotonic()
        await holding
        await _close(clients, [a, b])
        return got - start, got - released

    waited, after_release = asyncio.run(main())
    assert waited > 1.3  # not before the holder let go, though its lease ran out five times
    assert 0 <= after_release < 0.5  # and promptly after


def test_the_cap_holds_across_limiters_under_many_waiters(redis_server: RedisServer) -> None:
    async def main() -> tuple[int, list[int], list[int]]:
        clients, limiters = _limiters(redis_server, 2, requests_per_minute=None,
                                      tokens_per_minute=None, max_concurrency=8)  # fmt: skip
        held, peak = 0, 0
        served, peak_each, held_each = [0, 0], [0, 0], [0, 0]
        rng = random.Random(7)

        async def call(i: int, hold: float) -> None:
            nonlocal held, peak
            async with limiters[i].slot():
                held += 1
                held_each[i] += 1
                peak, peak_each[i] = max(peak, held), max(peak_each[i], held_each[i])
                served[i] += 1
                await asyncio.sleep(hold)
                held -= 1
                held_each[i] -= 1

        await asyncio.gather(*(call(i % 2, rng.uniform(0.001, 0.01)) for i in range(600)))
        await _close(clients, limiters)
        return peak, served, peak_each

    peak, served, peak_each = asyncio.run(main())
    assert peak == 8  # never above the cap, and the cap is used
    assert served == [300, 300]
    assert min(peak_each) >= 4  # both limiters got their share at some point


def test_a_waiting_limiter_gets_its_share_from_a_busy_one(redis_server: RedisServer) -> None:
    async def main() -> tuple[float, float, float]:
        clients, (a, b) = _limiters(redis_server, 2, requests_per_minute=None,
                                    tokens_per_minute=None, max_concurrency=8)  # fmt: skip

        async def calls(limiter: RedisLimiter, n: int) -> float:
            async def one() -> None:
                async with limiter.slot():
                    await asyncio.sleep(0.02)

            await asyncio.gather(*(one() for _ in range(n)))
            return time.monotonic()

        start = time.monotonic()
        busy = asyncio.create_task(calls(a, 300))  # alone: 300 × 20 ms / 8 slots = 0.75 s
        await asyncio.sleep(0.1)  # a holds all 8 slots and keeps reusing them
        b_start = time.monotonic()
        first = asyncio.create_task(calls(b, 1))
        b_first = await first - b_start
        b_done = await calls(b, 40)  # 40 × 20 ms with its share of 4 slots ≈ 0.2 s
        a_done = await busy
        await _close(clients, [a, b])
        return b_first, b_done - start, a_done - start

    b_first, b_done, a_done = asyncio.run(main())
    assert b_first < 0.3  # not after a finished (0.75 s or more)
    assert b_done < a_done  # b was not starved while a had callers waiting


def test_idle_slots_go_back_for_others(redis_server: RedisServer) -> None:
    async def main() -> tuple[dict[bytes, bytes], float, int]:
        clients, (a, b) = _limiters(redis_server, 2, requests_per_minute=None,
                                    tokens_per_minute=None, max_concurrency=4)  # fmt: skip

        async def burst(limiter: RedisLimiter, n: int) -> int:
            held = peak = 0

            async def one() -> None:
                nonlocal held, peak
                async with limiter.slot():
                    held += 1
                    peak = max(peak, held)
                    await asyncio.sleep(0.01)
                    held -= 1

            await asyncio.gather(*(one() for _ in range(n)))
            return peak

        await burst(a, 4)
        await a.settle()  # a chunk ended: nothing kept
        after_settle = await clients[0].hgetall("tracejury:limits:p:slots:held")
        await burst(a, 4)  # then idle, and nothing settles: a gives them back after lingering
        start = time.monotonic()
        peak = await burst(b, 4)
        waited = time.monotonic() - start
        await _close(clients, [a, b])
        return after_settle, waited, peak

    after_settle, waited, peak = asyncio.run(main())
    assert after_settle == {}
    assert peak == 4  # b got every slot a had
    assert waited < 0.5


def test_no_redis_round_trip_per_call(redis_server: RedisServer) -> None:
    async def main() -> int:
        clients, (limiter,) = _limiters(redis_server, 1, requests_per_minute=None,
                                        tokens_per_minute=None, max_concurrency=64)  # fmt: skip
        await clients[0].config_resetstat()

        async def one() -> None:
            async with limiter.slot():
                await asyncio.sleep(0.005)

        await asyncio.gather(*(one() for _ in range(2000)))
        await limiter.settle()
        stats = await clients[0].info("commandstats")
        await _close(clients, [limiter])
        return sum(v["calls"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))

    calls = asyncio.run(main())
    assert 0 < calls < 100  # was 2 per call (4,000)


def test_an_unreachable_redis_falls_back_to_local_limits() -> None:
    from tests.integration.procs import free_port

    async def main() -> int:
        dead = Redis(connection_pool=BlockingConnectionPool.from_url(f"redis://127.0.0.1:{free_port()}/0"))
        limiter = RedisLimiter(dead, "p", requests_per_minute=6000, tokens_per_minute=None, max_concurrency=2)
        held = peak = 0

        async def call() -> None:
            nonlocal held, peak
            await limiter.acquire(10)
            async with limiter.slot():
                held += 1
                peak = max(peak, held)
                await asyncio.sleep(0.01)
                held -= 1

        await asyncio.gather(*(call() for _ in range(10)))
        await dead.aclose()
        await dead.connection_pool.disconnect()
        return peak

    assert asyncio.run(main()) == 2  # the judgment goes on, limited in this process
