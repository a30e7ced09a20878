"""Benchmark: CPU per key of the store calls a scoring chunk makes, on a fresh SQLite store.

    .venv/bin/python bench/store_calls.py [--rounds 8]

A store with 4,096 simulated traces; per round, a chunk of 512 traces x 2 rubrics = 1,024
keys: the judge cache prefetch (``cache_get``, nothing cached), the claims (``claim_keys``),
the verdicts into the cache (``cache_put``), the claims' release (``release_keys``) and the
evaluations' save (``save_evaluations``, a new batch each round). Process CPU
(``time.process_time``) per key, median over the rounds after the first two. Run it with
``PYTHONPATH`` on another checkout to compare commits side by side.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import orjson  # noqa: E402

from tracejury.core.evaluation import Evaluation  # noqa: E402
from tracejury.core.segments import default_segmentation  # noqa: E402
from tracejury.core.simulate import simulate  # noqa: E402
from tracejury.store import evaluations as st  # noqa: E402
from tracejury.store.engine import make_engine, migrate  # noqa: E402
from tracejury.store.ingest import ingest_lines  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    engine = make_engine(f"sqlite:///{tempfile.mkdtemp()}/store.db")
    migrate(engine)
    traces = list(simulate(release="r", n=4096, seed=1))
    ingest_lines(engine, "bench", ((i, orjson.dumps(t)) for i, t in enumerate(traces)),
                 segmentation=default_segmentation())  # fmt: skip
    ids = [t["traceId"] for t in traces]
    cpu: dict[str, list[float]] = {k: [] for k in ("cache_get", "claim_keys", "cache_put", "release_keys", "save")}

    def timed(name: str, fn, *a) -> None:  # noqa: ANN001
        t0 = time.process_time()
        fn(*a)
        cpu[name].append((time.process_time() - t0) / 1024)

    for rnd in range(args.rounds):
        chunk = ids[(rnd % 4) * 1024 : (rnd % 4) * 1024 + 512]
        fingerprint = uuid.uuid4().hex
        keys = [("m", fingerprint + r, f"ev{rnd}-{i}", 0) for i in range(512) for r in "ab"]
        owner = f"w{rnd}"
        timed("cache_get", st.cache_get, engine, keys)
        timed("claim_keys", st.claim_keys, engine, keys, owner, 30.0)
        timed("cache_put", st.cache_put, engine, [(k, st.CachedVerdict("pass", "because", 0.9, 100, 20)) for k in keys])
        timed("release_keys", st.release_keys, engine, keys, [], owner)
        batch = st.create_batch(engine, release="r", kind="queued", config={}, sampled=512)
        evaluations = [
            Evaluation(trace_id=tid, evaluator_id=f"ev{r}", evaluator_version="1", evaluator_fingerprint="f" + r,
                       evaluator_kind="rubric", evidence_hash="h", status="scored", label="pass", passed=True,
                       score=1.0, confidence=0.9, rationale="because", attempts=1, latency_ms=200,
                       prompt_tokens=100, completion_tokens=20, judge_profile="default", judge_model="m")
            for tid in chunk for r in "ab"
        ]  # fmt: skip
        timed("save", st.save_evaluations, engine, batch, evaluations)
    print(f"1,024 keys a chunk, {args.rounds} rounds (median of rounds 3..{args.rounds}), µs of CPU per key:")
    for name, values in cpu.items():
        print(f"  {name:<13} {statistics.median(values[2:]) * 1e6:6.1f}")


if __name__ == "__main__":
    main()
