"""Benchmark: adaptive judge concurrency against a mock judge with N slots, and with none.

The mock judge runs in its own process (``--max-inflight N``: a request arriving while N are in
flight gets a 429 at once, ``Retry-After: 1``). ``--processes`` client processes (each its own
event loop, as workers are) call it through ``JudgeClient`` from ``--callers`` tasks in all,
back to back, for ``--seconds``; with more than one process they share the limit through a
real redis-server (``workers.limits.RedisLimiter``), else each uses the in-process one. Every
0.1 s each process records its limit; the mock's own counts (``GET /stats``) are read at 10 s
and at the end. A run reports, after the first 10 s: the median, 5th and 95th percentile of
the limit, the share of requests the mock refused with a 429 and the calls answered per
second; and when the limit first reached the cap. Runs alternate limited / unlimited,
``--repeats`` times; medians. ``--fixed`` adds, after each unlimited run, one with the limit
fixed at the cap (``adaptive_concurrency: false``): what the adaptive limit costs or saves.

    .venv/bin/python bench/adaptive.py [--seconds 40] [--repeats 3] [--server-max 100]
        [--latency 200] [--callers 1500] [--cap 1024] [--processes 1] [--only unlimited] [--fixed]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from judges.llm import JudgeClient, JudgeProfile, JudgeVerdict, make_http_client  # noqa: E402
from judges.mock import spawn_mock_judge  # noqa: E402

SETTLE_S = 10.0


def start_mock(latency_ms: float, max_inflight: int | None) -> tuple[subprocess.Popen[str], str]:
    """A mock judge process on a free loopback port; returns it and its base URL."""
    try:
        return spawn_mock_judge(latency_ms=latency_ms, max_inflight=max_inflight)
    except RuntimeError as exc:
        sys.exit(str(exc))


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server on a free loopback port (no persistence)."""
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server is not installed (scripts/setup installs it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("redis-server did not start")


async def child(
    base_url: str, redis_url: str, start_at: float, seconds: float, callers: int, cap: int, adaptive: bool = True
) -> None:
    """One client process: ``callers`` tasks calling the judge until ``start_at + seconds``
    (wall clock); prints its limit samples and call counts as one JSON line."""
    from bench.judges import requests

    reqs = requests(500)
    profile = JudgeProfile(name="bench", model="mock-judge", max_concurrency=cap, max_attempts=4,
                           adaptive_concurrency=adaptive, structured_output="json_schema",
                           backoff_max_s=2.0)  # fmt: skip
    limiter = None
    redis = None
    if redis_url:
        from redis.asyncio import Redis

        from workers.limits import RedisLimiter

        redis = Redis.from_url(redis_url)
        limiter = RedisLimiter(redis, "bench", requests_per_minute=None, tokens_per_minute=None, max_concurrency=cap,
                               adaptive=profile.concurrency_settings())  # fmt: skip
    samples: list[tuple[float, int, int]] = []
    answered = failed = 0
    async with make_http_client(profile) as http:
        client = JudgeClient(http, profile, base_url=base_url, limiter=limiter, concurrency=limiter)
        concurrency = client.concurrency
        assert concurrency is not None
        await asyncio.sleep(max(0.0, start_at - time.time()))
        until = start_at + seconds

        async def call(i: int) -> None:
            nonlocal answered, failed
            j = i
            while time.time() < until:
                outcome = await client.judge(reqs[j % len(reqs)])
                j += callers
                if time.time() - start_at >= SETTLE_S:
                    answered += isinstance(outcome, JudgeVerdict)
                    failed += not isinstance(outcome, JudgeVerdict)

        async def sample() -> None:
            while time.time() < until:
                samples.append((time.time() - start_at, concurrency.limit, concurrency.in_flight))  # type: ignore[attr-defined]
                await asyncio.sleep(0.1)

        await asyncio.gather(sample(), *(call(i) for i in range(callers)))
    if limiter is not None:
        await limiter.aclose()
    if redis is not None:
        await redis.aclose()
    print(orjson.dumps({"samples": samples, "answered": answered, "failed": failed}).decode(), flush=True)


def mock_stats(base_url: str) -> dict[str, int]:
    """The mock judge's own counts."""
    return httpx.get(base_url.removesuffix("/v1") + "/stats", timeout=10).json()


def run(args: argparse.Namespace, limited: bool, adaptive: bool = True) -> dict[str, float]:
    """One run: the mock, perhaps Redis, the client processes; what they measured."""
    mock, base_url = start_mock(args.latency, args.server_max if limited else None)
    redis = None
    tmp = tempfile.TemporaryDirectory()
    try:
        redis_url = ""
        if args.processes > 1:
            redis, redis_url = start_redis(Path(tmp.name))
        start_at = time.time() + 2.0
        per = args.callers // args.processes
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, __file__, "--child", base_url, redis_url, str(start_at), str(args.seconds), str(per),
                str(args.cap), "1" if adaptive else "0"]  # fmt: skip
        kids = [
            subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT) for _ in range(args.processes)
        ]
        time.sleep(max(0.0, start_at + SETTLE_S - time.time()))
        at_settle = mock_stats(base_url)
        outs = [orjson.loads(kid.communicate(timeout=args.seconds + 120)[0].strip().splitlines()[-1]) for kid in kids]
        at_end = mock_stats(base_url)
    finally:
        mock.terminate()
        mock.wait(timeout=10)
        if redis is not None:
            redis.terminate()
            redis.wait(timeout=10)
        tmp.cleanup()
    # the shared limit is one: any process's samples; per-process limits add up
    by_tick: dict[int, list[int]] = {}
    for out in outs:
        for t, limit, _ in out["samples"]:
            by_tick.setdefault(round(t * 10), []).append(limit)
    shared = args.processes > 1
    series = sorted((tick / 10, max(v) if shared else sum(v)) for tick, v in by_tick.items())
    settled = [limit for t, limit in series if t >= SETTLE_S]
    q = statistics.quantiles(settled, n=20, method="inclusive")
    requests = at_end["requests"] - at_settle["requests"]
    refused = at_end["rateLimited"] - at_settle["rateLimited"]
    cap_total = args.cap if shared else args.cap * args.processes
    reached = next((t for t, limit in series if limit >= cap_total), float("nan"))
    return {
        "median": statistics.median(settled), "p5": q[0], "p95": q[-1], "min": min(settled), "max": max(settled),
        "refused_pct": 100 * refused / max(1, requests),
        "calls_per_s": sum(o["answered"] for o in outs) / (args.seconds - SETTLE_S),
        "failed": sum(o["failed"] for o in outs), "reached_cap_s": reached, "peak_at_mock": at_end["peakInFlight"],
    }  # fmt: skip


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        base_url, redis_url, start_at, seconds, callers, cap, adaptive = sys.argv[2:9]
        asyncio.run(
            child(base_url, redis_url, float(start_at), float(seconds), int(callers), int(cap), adaptive == "1")
        )
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--server-max", type=int, default=100)
    parser.add_argument("--latency", type=float, default=200.0, help="mock latency, ms")
    parser.add_argument("--callers", type=int, default=1500)
    parser.add_argument("--cap", type=int, default=1024, help="the profile's max_concurrency")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--only", choices=("limited", "unlimited"), default=None)
    parser.add_argument("--fixed", action="store_true", help="also unlimited runs with the limit fixed at the cap")
    args = parser.parse_args()
    kinds = [(k, True) for k in (True, False) if args.only is None or args.only == ("limited" if k else "unlimited")]
    if args.fixed:
        kinds.append((False, False))
    results: dict[tuple[bool, bool], list[dict[str, float]]] = {k: [] for k in kinds}
    for r in range(args.repeats):
        for limited, adaptive in kinds:
            res = run(args, limited, adaptive)
            results[(limited, adaptive)].append(res)
            name = f"limited N={args.server_max}" if limited else "unlimited" if adaptive else "unlimited, fixed"
            print(f"run {r + 1} {name}: " + ", ".join(f"{k} {v:.4g}" for k, v in res.items()), flush=True)
    load = os.getloadavg()
    print(f"\nlatency {args.latency:g} ms, cap {args.cap}, {args.processes} process(es), {args.callers} callers,"
          f" {args.seconds:g} s runs (after {SETTLE_S:g} s), medians of {args.repeats};"
          f" load {load[0]:.1f}")  # fmt: skip
    for (limited, adaptive), rows in results.items():
        name = f"429 above {args.server_max} in flight" if limited else "no limit" if adaptive else "no limit, fixed"
        med = {k: statistics.median(row[k] for row in rows) for k in rows[0] if k != "reached_cap_s"}
        reached = [row["reached_cap_s"] for row in rows if row["reached_cap_s"] == row["reached_cap_s"]]  # not NaN
        med["reached_cap_s"] = statistics.median(reached) if reached else float("nan")
        print(f"{name}: limit median {med['median']:.0f} (p5 {med['p5']:.0f}, p95 {med['p95']:.0f}),"
              f" refused {med['refused_pct']:.2f}% of requests, {med['calls_per_s']:.0f} calls/s,"
              f" cap reached in {len(reached)} of {len(rows)} runs (median at {med['reached_cap_s']:.1f} s),"
              f" peak at the mock {med['peak_at_mock']:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
