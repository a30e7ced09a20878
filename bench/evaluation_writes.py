"""Benchmark: storing evaluations (``save_evaluations``) at two schema revisions, side by side.

    .venv/bin/python bench/evaluation_writes.py [--traces 20000] [--evaluators 7] [--runs 3]
        [--revisions 0006,head]

What the gates' covering index costs on the write side: per revision a fresh SQLite store
with ``--traces`` simulated traces (ingested), then, per run, a new batch whose evaluations
are stored the way a worker stores them — one ``save_evaluations`` call per chunk of 256
traces, ``--evaluators`` checker evaluations per trace. Runs alternate between revisions.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import orjson  # noqa: E402
from alembic import command  # noqa: E402
from sqlalchemy import Engine  # noqa: E402

from tracejury.core.evaluation import Evaluation  # noqa: E402
from tracejury.core.segments import default_segmentation  # noqa: E402
from tracejury.core.simulate import simulate  # noqa: E402
from tracejury.store.engine import alembic_config, make_engine  # noqa: E402
from tracejury.store.evaluations import create_batch, save_evaluations  # noqa: E402
from tracejury.store.ingest import ingest_lines  # noqa: E402

CHUNK = 256


def store(path: Path, revision: str, traces: list[bytes]) -> tuple[Engine, list[str]]:
    engine = make_engine(f"sqlite:///{path}")
    command.upgrade(alembic_config(engine), revision)
    ingest_lines(engine, "bench", list(enumerate(traces, 1)), segmentation=default_segmentation())
    return engine, [orjson.loads(t)["traceId"] for t in traces]


def save_all(engine: Engine, ids: list[str], evaluators: int) -> float:
    """Evaluations stored per second (building the ``Evaluation`` models is outside the clock)."""
    batch = create_batch(engine, release="bench", kind="queued", config={}, sampled=len(ids))
    spent = 0.0
    for start in range(0, len(ids), CHUNK):
        chunk = [
            Evaluation(trace_id=t, evaluator_id=f"check_{k}", evaluator_version="1", evaluator_fingerprint="f",
                       evaluator_kind="checker", status="scored", passed=(i * 7 + k) % 20 != 0,
                       label="pass", evidence_hash="e")
            for i, t in enumerate(ids[start : start + CHUNK], start) for k in range(evaluators)
        ]  # fmt: skip
        t = time.perf_counter()
        save_evaluations(engine, batch, chunk)
        spent += time.perf_counter() - t
    return len(ids) * evaluators / spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=20000)
    parser.add_argument("--evaluators", type=int, default=7)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--revisions", default="0006,head")
    args = parser.parse_args()
    traces = [orjson.dumps(t) for t in simulate("bench", args.traces, seed=7)]
    workdir = Path(tempfile.mkdtemp(prefix="tj-evals-"))
    try:
        stores = {rev: store(workdir / f"{rev}.db", rev, traces) for rev in args.revisions.split(",")}
        rates: dict[str, list[float]] = {rev: [] for rev in stores}
        for _ in range(args.runs):
            for rev, (engine, ids) in stores.items():
                rates[rev].append(save_all(engine, ids, args.evaluators))
    finally:
        shutil.rmtree(workdir)
    for rev, runs in rates.items():
        print(f"schema {rev}: median {statistics.median(runs):,.0f} evaluations/s"
              f"  (runs: {', '.join(f'{r:,.0f}' for r in runs)})")  # fmt: skip


if __name__ == "__main__":
    main()
