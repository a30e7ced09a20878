"""Benchmark: ingest simulated traces into a fresh SQLite file through the real CLI.

Each run is a separate `tracejury ingest` process on a fresh database; peak RSS is sampled
every 20 ms over its whole process tree (reader and ingest processes, summed; RSS and PSS).
Sizes are run side by side to show memory staying flat in file size. Prints one row per
(size, run) and the medians.

    .venv/bin/python bench/ingest.py [--sizes 50000,200000] [--runs 3] [--keep DIR]
                                     [--redaction-path POLICY.yaml]

``--prepare N`` instead times ingest's CPU half in this process (parse, validate, redact,
segment, hash: ``prepare_chunk``) over N simulated traces, with the shipped redaction policy
and with none, interleaved, and prints the medians.

``--redaction-path`` ingests with that redaction policy (``TRACEJURY_REDACTION_PATH``) instead
of the shipped default; ``bench/redaction-none.yaml`` runs no detector (the walk only).
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


def tree_memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process and all its descendants, summed, from /proc (KiB).

    RSS counts pages shared between the processes (libraries) once per process; PSS splits
    them, so its sum is the memory the tree really holds."""
    rss, pss, todo = 0, 0, [pid]
    while todo:
        p = todo.pop()
        try:
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text()
            rss += int(rollup.split("\nRss:")[1].split()[0])
            pss += int(rollup.split("\nPss:")[1].split()[0])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue  # exited between listing and reading
    return rss, pss


def ingest_once(path: Path, workdir: Path, redaction_path: Path | None = None) -> tuple[float, float, float]:
    """Run one ingest in a child process; return (seconds, peak RSS and PSS of its tree, MiB)."""
    db = workdir / "bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    env = {**os.environ, "TRACEJURY_DATABASE_URL": f"sqlite:///{db}"}
    if redaction_path is not None:
        env["TRACEJURY_REDACTION_PATH"] = str(redaction_path)
    subprocess.run([EXE, "db", "upgrade"], env=env, check=True, capture_output=True)
    out = workdir / "ingest.out"
    start = time.perf_counter()
    peak_rss = peak_pss = 0
    with out.open("wb") as stdout:
        proc = subprocess.Popen([EXE, "ingest", str(path), "--json"], env=env, stdout=stdout)
        while proc.poll() is None:  # sample the whole process tree: reader + ingest processes
            rss, pss = tree_memory_kib(proc.pid)
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            time.sleep(0.02)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"ingest failed with exit code {proc.returncode}")
    counts = orjson.loads(out.read_bytes())
    if counts["ingested"] != int(path.stem.split("-")[1]):
        sys.exit(f"ingest stored {counts} traces, expected all of {path.name}")
    return elapsed, peak_rss / 1024, peak_pss / 1024


def prepare_side_by_side(n: int, runs: int) -> None:
    """Median µs per trace of ``prepare_chunk`` with the default redaction policy and without."""
    from tracejury.core.ingest import prepare_chunk
    from tracejury.core.redaction import Redactor, default_policy
    from tracejury.core.segments import default_segmentation
    from tracejury.core.validation import TraceValidator

    lines = [(i, orjson.dumps(t)) for i, t in enumerate(simulate("bench", n, seed=7), 1)]
    validator, segmentation = TraceValidator(), default_segmentation()
    times: dict[str, list[float]] = {"redaction off": [], "default policy": []}
    for _ in range(runs):
        for name, redactor in (("redaction off", Redactor.off()), ("default policy", default_policy())):
            start = time.perf_counter()
            good, bad = prepare_chunk(lines, validator=validator, segmentation=segmentation, redaction=redactor)
            times[name].append((time.perf_counter() - start) / n * 1e6)
            assert len(good) == n and not bad
    for name, us in times.items():
        print(f"  {name:>15}: median {statistics.median(us):6.1f} µs/trace over {runs} runs of {n} traces"
              f" ({', '.join(f'{u:.1f}' for u in us)})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50000,200000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="directory for the files")
    parser.add_argument("--prepare", type=int, default=0, help="time prepare_chunk, with and without redaction")
    parser.add_argument("--redaction-path", type=Path, default=None, help="a redaction policy (default: shipped)")
    args = parser.parse_args()
    if args.prepare:
        prepare_side_by_side(args.prepare, args.runs)
        return
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
        rates, rss, pss = [], [], []
        for run in range(args.runs):
            secs, peak_rss, peak_pss = ingest_once(path, workdir, args.redaction_path)
            rates.append(n / secs)
            rss.append(peak_rss)
            pss.append(peak_pss)
            print(f"  n={n:>8} ({mib:4.0f} MiB)  run {run + 1}: {n / secs:7.0f} traces/s"
                  f"  {secs:6.2f} s  peak RSS {peak_rss:4.0f} MiB,"
                  f" PSS {peak_pss:4.0f} MiB")  # fmt: skip
        results[n] = (statistics.median(rates), max(rss), max(pss), mib)
    print("median traces/s; peak memory of the process tree (max over runs) per file size:")
    for n, (rate, peak_rss, peak_pss, mib) in results.items():
        print(f"  {n:>8} traces ({mib:.0f} MiB): {rate:7.0f} traces/s,"
              f" peak RSS {peak_rss:.0f} MiB, PSS {peak_pss:.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
