"""Benchmark: what pricing and cost caps cost a judge call, side by side in one run.

One ``tracejury mock-judge --latency-ms 0`` process; per run and cell, a fresh SQLite store
with the same simulated release ingested, then ``tracejury score --release bench --rubric
helpfulness --json`` timed as a subprocess (wall, and its CPU as this process's children's). Cells, with the
shipped rubrics and only ``profiles.yaml`` changed:

* ``unpriced`` — the shipped profile (no price: spend counted in tokens only);
* ``priced`` — a price, no cap: costs are computed and stored, no ledger;
* ``daily cap (store)`` — a price and ``max_cost_per_day`` far above the spend, so every call
  reserves and settles in the store's ledger (the embedded broker's) and none is refused.

Cells run interleaved, ``--runs`` times; the table gives medians of judge calls per second and
CPU per call (the score process, which holds the client, the guard and the store writes).

    .venv/bin/python bench/spend.py [--runs 3] [--traces 2000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXE = str(Path(sys.executable).parent / "tracejury")
PRICE = {"input_per_million": 0.15, "output_per_million": 0.6}
CELLS = {
    "unpriced": {},
    "priced": {"price": PRICE},
    "daily cap (store)": {"price": PRICE, "max_cost_per_day": 1000.0},
}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args: list[str], env: dict[str, str]) -> tuple[bytes, float]:
    """Run a tracejury command; (stdout, wall seconds)."""
    start = time.perf_counter()
    proc = subprocess.run([EXE, *args], env=env, capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(f"{args[0]} failed: {proc.stderr.decode()[-500:]}")
    return proc.stdout, time.perf_counter() - start


def _cell(tmp: Path, name: str, extra: dict, judge_url: str, traces: Path) -> tuple[float, float, int]:
    rubrics = tmp / f"rubrics-{name.replace(' ', '_')}"
    shutil.copytree(ROOT / "rubrics", rubrics, dirs_exist_ok=True)
    profile = {"name": "default", "model": "mock-judge", "max_concurrency": 64, **extra}
    (rubrics / "profiles.yaml").write_text(yaml.safe_dump({"profiles": [profile]}))
    db = tmp / f"{name.replace(' ', '_')}-{time.monotonic_ns()}.db"
    env = {**os.environ, "TRACEJURY_DATABASE_URL": f"sqlite:///{db}", "TRACEJURY_RUBRICS_DIR": str(rubrics),
           "TRACEJURY_JUDGE_BASE_URL": judge_url}  # fmt: skip
    subprocess.run([EXE, "ingest", str(traces)], env=env, check=True, capture_output=True)
    start_cpu = os.times()
    out, wall = _run(["score", "--release", "bench", "--rubric", "helpfulness", "--json"], env)
    end_cpu = os.times()
    cpu = (end_cpu.children_user - start_cpu.children_user) + (end_cpu.children_system - start_cpu.children_system)
    data = orjson.loads(out)
    calls = data["usage"]["judgeEvaluations"] - data["usage"]["cachedEvaluations"]
    if data["failures"]:
        raise SystemExit(f"{name}: judge failures {data['failures']}")
    return calls / wall, cpu * 1000 / calls, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--traces", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        port = _port()
        judge = subprocess.Popen([EXE, "mock-judge", "--port", str(port), "--latency-ms", "0"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            traces = tmp / "bench.jsonl"
            subprocess.run([EXE, "simulate", "--release", "bench", "--traces", str(args.traces), "--seed", "11",
                            "-o", str(traces)], check=True, capture_output=True)  # fmt: skip
            results: dict[str, list[tuple[float, float, int]]] = {c: [] for c in CELLS}
            for run in range(args.runs):
                for cell, extra in CELLS.items():
                    results[cell].append(_cell(tmp, cell, extra, f"http://127.0.0.1:{port}/v1", traces))
                    rate, cpu, calls = results[cell][-1]
                    print(f"run {run + 1} {cell}: {calls} calls, {rate:.0f} calls/s, {cpu:.2f} ms CPU/call",
                          file=sys.stderr)  # fmt: skip
        finally:
            judge.terminate()
            judge.wait()
    print(f"| cell | judge calls/s (median of {args.runs}) | CPU ms per call (median) |")
    print("|---|---|---|")
    for cell, rows in results.items():
        print(f"| {cell} | {statistics.median(r[0] for r in rows):.0f} | {statistics.median(r[1] for r in rows):.2f} |")


if __name__ == "__main__":
    main()
