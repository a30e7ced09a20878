"""Benchmark: ingest simulated traces into a fresh SQLite file through the real CLI.

Each run is a separate `tracejury ingest` process on a fresh database, so its peak RSS is the
ingest's own (ru_maxrss of the child). Sizes are run side by side to show memory staying flat
in file size. Prints one row per (size, run) and the medians.

    .venv/bin/python bench/ingest.py [--sizes 50000,200000] [--runs 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from tracejury.core.simulate import simulate

EXE = Path(sys.executable).parent / "tracejury"


def write_traces(path: Path, n: int) -> int:
    """Simulate n traces (two releases' worth of traffic, as in production) into a JSONL file."""
    with path.open("wb") as fh:
        for trace in simulate("bench", n, seed=7):
            fh.write(orjson.dumps(trace) + b"\n")
    return path.stat().st_size


def ingest_once(path: Path, workdir: Path) -> tuple[float, float]:
    """Run one ingest in a child process; return (seconds, child peak RSS in MiB)."""
    db = workdir / "bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    env = {**os.environ, "TRACEJURY_DATABASE_URL": f"sqlite:///{db}"}
    subprocess.run([EXE, "db", "upgrade"], env=env, check=True, capture_output=True)
    out = workdir / "ingest.out"
    start = time.perf_counter()
    with out.open("wb") as stdout:
        proc = subprocess.Popen([EXE, "ingest", str(path), "--json"], env=env, stdout=stdout)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"ingest failed with exit code {proc.returncode}")
    counts = orjson.loads(out.read_bytes())
    if counts["ingested"] != int(path.stem.split("-")[1]):
        sys.exit(f"ingest stored {counts} traces, expected all of {path.name}")
    return elapsed, usage.ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50000,200000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="directory for the files")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="tj-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, workdir {workdir}")
    results = {}
    for n in sizes:
        path = workdir / f"traces-{n}.jsonl"
        if not path.exists():
            write_traces(path, n)
        mib = path.stat().st_size / 2**20
        rates, rss = [], []
        for run in range(args.runs):
            secs, peak = ingest_once(path, workdir)
            rates.append(n / secs)
            rss.append(peak)
            print(f"  n={n:>8} ({mib:6.0f} MiB)  run {run + 1}: {n / secs:8.0f} traces/s"
                  f"  {secs:6.2f} s  peak RSS {peak:6.0f} MiB")  # fmt: skip
        results[n] = (statistics.median(rates), max(rss), mib)
    print("median traces/s and peak RSS (max over runs) per file size:")
    for n, (rate, peak, mib) in results.items():
        print(f"  {n:>8} traces ({mib:.0f} MiB): {rate:8.0f} traces/s, peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
