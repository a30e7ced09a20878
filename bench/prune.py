"""Benchmark: prune every trace of a SQLite store of N simulated traces (``tracejury prune``'s
store function, in batches of 5,000 traces per transaction).

The store is built once (simulated JSONL, then the real ``tracejury ingest``) and copied fresh
for each run, so every run prunes the same N live traces. Prints, per run, the wall time, the
traces per second and the median and longest batch transaction (how long ingest can wait for the
write lock), then the medians. The store holds traces only (no evaluations or review items:
those add one indexed UPDATE per batch each).

    .venv/bin/python bench/prune.py [--traces 1000000] [--runs 3] [--batch-size 5000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from tracejury.core.retention import Selection
from tracejury.core.simulate import simulate
from tracejury.store.engine import open_engine
from tracejury.store.prune import prune

EXE = Path(sys.executable).parent / "tracejury"


def build(where: Path, n: int) -> Path:
    """A SQLite store with ``n`` simulated traces (reused when ``where`` already has one)."""
    db = where / f"template-{n}.db"
    if db.exists():
        return db
    jsonl = where / f"traces-{n}.jsonl"
    with jsonl.open("wb") as fh:
        for trace in simulate("bench", n, seed=7):
            fh.write(orjson.dumps(trace) + b"\n")
    t0 = time.perf_counter()
    # one ingest process: building the store is not what is measured
    env = {**os.environ, "TRACEJURY_DATABASE_URL": f"sqlite:///{db}", "TRACEJURY_INGEST_WORKERS": "0"}
    subprocess.run([str(EXE), "ingest", str(jsonl)], env=env, check=True, stdout=subprocess.DEVNULL)
    print(f"built {n:,} traces in {time.perf_counter() - t0:.0f}s ({db.stat().st_size / 2**20:,.0f} MiB)", flush=True)
    jsonl.unlink()
    return db


def one_run(template: Path, scratch: Path, batch_size: int) -> tuple[float, int, float, float]:
    """(seconds, traces pruned, median and longest batch in seconds) on a fresh copy of the template."""
    db = scratch / "run.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(template, db)
    engine = open_engine(f"sqlite:///{db}")
    marks = [time.perf_counter()]
    t0 = marks[0]
    counts = prune(engine, Selection(before=datetime(2100, 1, 1, tzinfo=UTC)), batch_size=batch_size,
                   progress=lambda _: marks.append(time.perf_counter()))  # fmt: skip
    seconds = time.perf_counter() - t0
    engine.dispose()
    batches = [b - a for a, b in zip(marks, marks[1:], strict=False)] or [0.0]
    return seconds, counts.traces, statistics.median(batches), max(batches)


def main() -> None:
    """Parse arguments, build the store, prune it ``--runs`` times, print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--keep", type=Path, help="Directory to keep (and reuse) the built store in.")
    args = parser.parse_args()
    where = args.keep or Path(tempfile.mkdtemp(prefix="tj-prune-"))
    where.mkdir(parents=True, exist_ok=True)
    template = build(where, args.traces)
    rows = []
    for run in range(args.runs):
        seconds, n, typical, longest = one_run(template, where, args.batch_size)
        rows.append((seconds, typical, longest))
        print(f"run {run + 1}: pruned {n:,} traces in {seconds:.1f}s ({n / seconds:,.0f} traces/s),"
              f" batch median {typical * 1000:.0f} ms, longest {longest * 1000:.0f} ms", flush=True)  # fmt: skip
    seconds, typical, longest = (statistics.median(r[i] for r in rows) for i in range(3))
    print(f"median: {seconds:.1f}s, batch median {typical * 1000:.0f} ms, longest {longest * 1000:.0f} ms")
    if args.keep is None:
        shutil.rmtree(where)


if __name__ == "__main__":
    main()
