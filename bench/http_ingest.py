"""Benchmark: ingest over HTTP (`tracejury serve`) beside the CLI, in one run.

For each request size (traces per request), a fresh SQLite store and a fresh `tracejury
serve` process (one uvicorn worker, loopback) take the same simulated traces from
`--clients` concurrent clients (asyncio + httpx in this process, JSON lines bodies); the CLI
(`tracejury ingest`, default settings) ingests the same traces into its own fresh store. Each
figure is traces stored per second of wall time, from the first request to the last
response; the server's count is checked afterwards (every trace stored, none quarantined).

    .venv/bin/python bench/http_ingest.py [--traces 20000] [--sizes 1,100,1000] [--clients 4] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.procs import free_port, start, stop, wait_port  # noqa: E402
from tracejury.core.simulate import simulate  # noqa: E402

EXE = str(Path(sys.executable).parent / "tracejury")


def _env(db: Path) -> dict[str, str]:
    return {**os.environ, "TRACEJURY_DATABASE_URL": f"sqlite:///{db}"}


def cli_rate(path: Path, n: int, workdir: Path) -> float:
    """Traces/s of `tracejury ingest` on a fresh store."""
    db = workdir / "cli.db"
    subprocess.run([EXE, "db", "upgrade"], env=_env(db), check=True, capture_output=True)
    t0 = time.perf_counter()
    subprocess.run([EXE, "ingest", str(path)], env=_env(db), check=True, capture_output=True)
    return n / (time.perf_counter() - t0)


async def _send(url: str, token: str, bodies: list[bytes], clients: int) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/x-ndjson"}

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as http:
            while not queue.empty():
                r = await http.post("/traces", content=queue.get_nowait())
                r.raise_for_status()

    await asyncio.gather(*(client() for _ in range(clients)))


def http_rate(lines: list[bytes], size: int, clients: int, workdir: Path) -> float:
    """Traces/s through a fresh `tracejury serve` with ``size`` traces per request."""
    db = workdir / f"http-{size}.db"
    env = _env(db)
    subprocess.run([EXE, "db", "upgrade"], env=env, check=True, capture_output=True)
    token = orjson.loads(subprocess.run([EXE, "token", "create", "--role", "ingest", "--json"], env=env,
                                        check=True, capture_output=True).stdout)["token"]  # fmt: skip
    port = free_port()
    proc = start([EXE, "serve", "--port", str(port), "--log-level", "warning"], env, workdir / f"serve-{size}.log")
    try:
        wait_port(port, timeout=30)
        bodies = [b"\n".join(lines[i : i + size]) for i in range(0, len(lines), size)]
        t0 = time.perf_counter()
        asyncio.run(_send(f"http://127.0.0.1:{port}", token, bodies, clients))
        seconds = time.perf_counter() - t0
    finally:
        stop(proc)
    out = subprocess.run([EXE, "signals", "--release", "bench", "--json"], env=env, check=True, capture_output=True)
    stored = orjson.loads(out.stdout)[0]["count"]
    if stored != len(lines):
        raise SystemExit(f"size {size}: stored {stored} of {len(lines)} traces")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return len(lines) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=int, default=20000)
    ap.add_argument("--sizes", default="1,100,1000")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        lines = [orjson.dumps(t) for t in simulate("bench", args.traces, seed=11)]
        path = workdir / "traces.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        results: dict[str, list[float]] = {"cli": [], **{f"http x{s}": [] for s in sizes}}
        for run in range(1, args.runs + 1):
            results["cli"].append(cli_rate(path, len(lines), workdir))
            (workdir / "cli.db").unlink()
            for s in sizes:
                # one trace per request is slow: send a tenth of the traces (still 2,000 requests)
                part = lines if s > 1 else lines[: max(1, len(lines) // 10)]
                results[f"http x{s}"].append(http_rate(part, s, args.clients, workdir))
            print(f"run {run}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in results.items()), flush=True)
        print(f"\nmedians over {args.runs} runs ({args.traces} traces, {args.clients} concurrent clients):")
        for k, v in results.items():
            print(f"  {k:<12} {statistics.median(v):>10,.0f} traces/s")


if __name__ == "__main__":
    main()
