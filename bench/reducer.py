"""Benchmark: the gate reducer over 1,000,000 evaluations and 100 segments on SQLite.

    .venv/bin/python bench/reducer.py [--evaluations 1000000] [--segments 100] [--runs 5]

Builds a store with two releases (half the traces each) spread over ``--segments`` segment
keys, one evaluation per trace for one evaluator (about 3% failing, 1% judge failures),
inserted directly with the columns the pipeline writes (this measures the reducer, not
ingest or scoring). Then times ``run_gates`` (dry
run: the windows query, two aggregations by SQL, the decisions) for an evaluator gate
grouped by every segment dimension (100 groups) with windows of 50,000 traces. Beside it, in
the same run: a plain ``GROUP BY`` over the evaluation table, the floor of any SQL reducer.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from sqlalchemy import text  # noqa: E402

from tracejury.core.gates import GateSpec  # noqa: E402
from tracejury.store.engine import open_engine  # noqa: E402
from workers.reducer import run_gates  # noqa: E402

DIMS = ("model", "rag", "tool", "trunc", "ret", "turns", "guard")


def segment_keys(n: int) -> list[str]:
    rng = random.Random(0)
    keys: set[str] = set()
    while len(keys) < n:
        keys.add("|".join([
            f"model=m@{rng.choice('ab')}", f"rag={rng.choice(['on', 'off'])}",
            f"tool={rng.choice(['none', 't@1', 'u@2'])}",
            f"trunc={rng.choice(['yes', 'no'])}", f"ret={rng.choice(['none', 'low', 'mid', 'high', 'empty'])}",
            f"turns={rng.choice(['1', '2-5', '6+'])}", f"guard={rng.choice(['allow', 'rewrite', 'block'])}",
        ]))  # fmt: skip
    return sorted(keys)


def build(url: str, evaluations: int, segments: int) -> None:
    engine = open_engine(url)
    keys = segment_keys(segments)
    rng = random.Random(1)
    now = datetime(2026, 11, 1, tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    with engine.begin() as conn:
        conn.execute(text(
            "insert into batch (id, release_id, kind, state, config, sampled, created_at)"
            " values ('b1', 'r2', 'inline', 'done', '{}', 0, :now)"), {"now": now})  # fmt: skip
    half = evaluations // 2
    step = 1000
    for start in range(0, evaluations, step):
        traces, evals = [], []
        for i in range(start, min(start + step, evaluations)):
            release = "r1" if i < half else "r2"
            ts = datetime(2026, 11, 1 if release == "r1" else 5, tzinfo=UTC) + timedelta(seconds=(i % half) * 0.1)
            tid = f"t{i:08d}"
            traces.append({"trace_id": tid, "release_id": release, "ts": ts.strftime("%Y-%m-%d %H:%M:%S.%f"),
                           "segment_key": keys[i % len(keys)], "now": now})  # fmt: skip
            u = rng.random()
            status = "judge_failed" if u < 0.01 else "scored"
            passed = None if status == "judge_failed" else u > 0.04
            evals.append({"trace_id": tid, "status": status, "passed": passed, "now": now,
                          "failure_kind": "timeout" if status == "judge_failed" else None,
                          "release_id": release, "segment_key": keys[i % len(keys)],
                          "ts": traces[-1]["ts"]})  # fmt: skip
        with engine.begin() as conn:
            conn.execute(text(
                "insert into trace (trace_id, release_id, ts, segment_key, segmentation_version, content_hash,"
                " session_id_hash, latency_ms, input_tokens, completion_tokens, truncated, format_invalid,"
                " fallback_used, rag_on, retrieval_empty, tool_required, tool_called, tool_error, tool_timeout,"
                " guard_block, negative_feedback, has_sample, body, ingested_at) values (:trace_id, :release_id,"
                " :ts, :segment_key, 'seg-v1', 'h', 's', 100, 10, 10, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, x'7b7d',"
                " :now)"), traces)  # fmt: skip
            conn.execute(text(
                "insert into evaluation (batch_id, trace_id, evaluator_id, evaluator_version, evaluator_fingerprint,"
                " evaluator_kind, status, passed, failure_kind, attempts, evidence_hash, cached, created_at,"
                " release_id, segment_key, trace_ts, weight)"
                " values ('b1', :trace_id, 'answer_correctness', '1', 'f', 'rubric', :status, :passed,"
                " :failure_kind, 1, 'e', 0, :now, :release_id, :segment_key, :ts, 1.0)"), evals)  # fmt: skip
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=1_000_000)
    parser.add_argument("--segments", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    url = f"sqlite:///{tempfile.mkdtemp(prefix='tj-reducer-')}/r.db"
    start = time.perf_counter()
    build(url, args.evaluations, args.segments)
    built = time.perf_counter() - start
    print(f"built {args.evaluations:,} evaluations over {args.segments} segment keys in {built:.0f} s")
    engine = open_engine(url)
    spec = GateSpec.model_validate({
        "id": "ac", "metric": {"evaluator": "answer_correctness"}, "group_by": list(DIMS), "min_samples": 300,
        "hysteresis": {"windows": 2, "window": {"traces": 50_000}}, "judge_failure_tolerance": 0.05,
    })  # fmt: skip
    reducer, floor = [], []
    for _ in range(args.runs):
        t = time.perf_counter()
        result = run_gates(engine, [spec], "r2", baseline="r1", dry_run=True)
        reducer.append(time.perf_counter() - t)
        t = time.perf_counter()
        with engine.connect() as conn:
            plain = "select evaluator_id, status, passed, count(*) from evaluation group by 1, 2, 3"
            conn.execute(text(plain)).all()
        floor.append(time.perf_counter() - t)
    groups = len(result.outcomes)
    windows = len(result.outcomes[0].windows) if result.outcomes else 0
    print(f"gate run (dry): {groups} segment groups x {windows} windows, decision {result.decision}")
    print(f"reducer: median {statistics.median(reducer):.3f} s  (runs: {', '.join(f'{r:.3f}' for r in reducer)})")
    print(f"plain GROUP BY over evaluations: median {statistics.median(floor):.3f} s")


if __name__ == "__main__":
    main()
