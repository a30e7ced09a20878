"""Benchmark: the gate reducer over 1,000,000 evaluations and 100 segments on SQLite.

    .venv/bin/python bench/reducer.py [--evaluations 1000000] [--segments 100] [--runs 5]
        [--labels 0.01] [--audit 0.05] [--before REV] [--plans seek grouped]

Builds a store with two releases (half the traces each) spread over ``--segments`` segment
keys, one evaluation per trace for one evaluator (about 3% failing, 1% judge failures),
inserted directly with the columns the pipeline writes (this measures the reducer, not
ingest or scoring). Then times ``run_gates`` (dry
run: the windows query, two aggregations by SQL, the decisions) for an evaluator gate
grouped by every segment dimension (100 groups) with windows of 50,000 traces. Beside it, in
the same run: a plain ``GROUP BY`` over the evaluation table, the floor of any SQL reducer.

``--labels F``: a reviewer labelled a fraction F of the traces (a tenth of them twice: the
newest label counts), so the gate reads human labels where they exist.
``--audit F``: the review queue audited a fraction F of the traces and people labelled every
audit item (random verdicts); then the same gate with ``calibration: ppi`` is timed beside the
judge-only one (plan ``auto`` for both), alternating run by run: the cost of calibration.
``--before REV``: the reducer of git revision REV (``git archive``) runs in a child process
on a copy of the same store at that revision's schema (``--before-schema``), alternating run
by run with this tree's reducer, so both medians come from one run on the same data.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
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
        for batch, release in (("b0", "r1"), ("b1", "r2")):  # one done batch per release, as scoring makes
            conn.execute(text(
                "insert into batch (id, release_id, kind, state, config, sampled, created_at)"
                " values (:batch, :release, 'queued', 'done', :config, 0, :now)"),
                # a sampling population as batches record it: the gate checks it against the traces stored
                {"now": now, "batch": batch, "release": release,
                 "config": json.dumps({"sampling": {"population": evaluations // 2}})})  # fmt: skip
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
                          "batch": "b0" if release == "r1" else "b1",
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
                " values (:batch, :trace_id, 'answer_correctness', '1', 'f', 'rubric', :status, :passed,"
                " :failure_kind, 1, 'e', 0, :now, :release_id, :segment_key, :ts, 1.0)"), evals)  # fmt: skip
    engine.dispose()


def add_labels(url: str, evaluations: int, share: float) -> int:
    """Labels on ``share`` of the traces (random verdicts); a tenth of them relabelled."""
    rng = random.Random(2)
    now = datetime(2026, 11, 6, tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    picked = sorted(rng.sample(range(evaluations), int(evaluations * share)))
    rows = [{"tid": f"t{i:08d}", "passed": rng.random() < 0.5, "now": now} for i in picked]
    rows += [{**r, "passed": not r["passed"]} for r in rows[::10]]  # relabels append
    engine = open_engine(url)
    with engine.begin() as conn:
        conn.execute(text(
            "insert into review_label (trace_id, evaluator_id, evaluator_version, reviewer, label, passed, created_at)"
            " values (:tid, 'answer_correctness', '1', 'bench', case when :passed then 'pass' else 'fail' end,"
            " :passed, :now)"), rows)  # fmt: skip
    engine.dispose()
    return len(rows)


def add_audit(url: str, share: float) -> int:
    """Audit items on ``share`` of the evaluated traces, each labelled (random verdicts)."""
    rng = random.Random(3)
    engine = open_engine(url)
    now = datetime(2026, 11, 6, tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    with engine.begin() as conn:
        evals = conn.execute(text("select id, batch_id, trace_id, release_id, segment_key from evaluation"
                                  " where status = 'scored'")).all()  # fmt: skip
        picked = [e for e in evals if rng.random() < share]
        conn.execute(text(
            "insert into review_item (trace_id, evaluator_id, evaluator_version, batch_id, release_id, segment_key,"
            " reasons, priority, evaluation_ids, audit_rate, inclusion_p, state, created_at, updated_at)"
            " values (:tid, 'answer_correctness', '1', :batch, :rel, :seg, '[\"audit\"]', 10, :ids, :a, :a,"
            " 'labelled', :now, :now)"),
            [{"tid": e.trace_id, "batch": e.batch_id, "rel": e.release_id, "seg": e.segment_key,
              "ids": f"[{e.id}]", "a": share, "now": now} for e in picked])  # fmt: skip
        conn.execute(text(
            "insert into review_label (item_id, trace_id, evaluator_id, evaluator_version, reviewer, label, passed,"
            " created_at) select id, trace_id, 'answer_correctness', '1', 'bench',"
            " case when abs(random()) % 20 = 0 then 'fail' else 'pass' end, null, :now from review_item"), {"now": now})
        conn.execute(text("update review_label set passed = (label = 'pass')"))
    engine.dispose()
    return len(picked)


SPEC = {
    "id": "ac", "metric": {"evaluator": "answer_correctness"}, "group_by": list(DIMS), "min_samples": 300,
    "hysteresis": {"windows": 2, "window": {"traces": 50_000}}, "judge_failure_tolerance": 0.05,
}  # fmt: skip
CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from tracejury.core.gates import GateSpec
from tracejury.store.engine import make_engine
from workers.reducer import run_gates
engine, spec = make_engine(sys.argv[2]), GateSpec.model_validate(json.loads(sys.argv[3]))
for _ in sys.stdin:
    t, cpu = time.perf_counter(), time.process_time()
    result = run_gates(engine, [spec], "r2", baseline="r1", dry_run=True)
    took, cpu = time.perf_counter() - t, time.process_time() - cpu
    print(json.dumps([took, cpu, [[o.segment, o.decision] for o in result.outcomes]]), flush=True)
"""


def start_before(rev: str, schema: str, url: str, workdir: Path) -> subprocess.Popen[str]:
    """A child process running revision ``rev``'s reducer on a copy of the store downgraded
    to ``schema``; it times one run per line it reads."""
    from alembic import command

    from tracejury.store.engine import alembic_config, make_engine

    tree = workdir / f"tree-{rev}"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    copy = workdir / "before.db"
    shutil.copyfile(url.removeprefix("sqlite:///"), copy)
    engine = make_engine(f"sqlite:///{copy}")
    command.downgrade(alembic_config(engine), schema)
    engine.dispose()
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tree), f"sqlite:///{copy}", json.dumps(SPEC)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tree,
    )  # fmt: skip


def _count(decided: list[list[str]]) -> str:
    counts: dict[str, int] = {}
    for _, d in decided:
        counts[d] = counts.get(d, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=1_000_000)
    parser.add_argument("--segments", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--labels", type=float, default=0.0, help="share of traces a reviewer labelled")
    parser.add_argument("--audit", type=float, default=0.0, help="share of traces audited and labelled")
    parser.add_argument("--before", help="git revision whose reducer runs beside this one")
    parser.add_argument("--before-schema", default="0006", help="the schema revision of --before's store")
    parser.add_argument("--plans", nargs="+", default=["seek", "grouped"], choices=["auto", "seek", "grouped"],
                        help="evaluator aggregation plans to time, alternating run by run")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tj-reducer-"))
    url = f"sqlite:///{workdir}/r.db"
    start = time.perf_counter()
    build(url, args.evaluations, args.segments)
    built = time.perf_counter() - start
    print(f"built {args.evaluations:,} evaluations over {args.segments} segment keys in {built:.0f} s")
    if args.labels:
        print(f"{add_labels(url, args.evaluations, args.labels):,} review labels")
    if args.audit:
        print(f"{add_audit(url, args.audit):,} audit items, each labelled")
    before = start_before(args.before, args.before_schema, url, workdir) if args.before else None
    engine = open_engine(url)
    spec = GateSpec.model_validate(SPEC)
    calibrated = GateSpec.model_validate({**SPEC, "calibration": {"method": "ppi", "min_labels": 30}})
    variants = {"judge-only (auto plan)": spec, "calibrated (auto plan)": calibrated} if args.audit else {}
    timed: dict[str, list[float]] = {v: [] for v in variants}
    reducer: dict[str, list[float]] = {p: [] for p in args.plans}
    cpu: dict[str, list[float]] = {p: [] for p in args.plans}
    floor, earlier, earlier_cpu = [], [], []
    same = True
    try:
        for _ in range(args.runs):
            if before is not None:
                assert before.stdin is not None and before.stdout is not None
                before.stdin.write("go\n")
                before.stdin.flush()
                took, took_cpu, decided = json.loads(before.stdout.readline())
                earlier.append(took)
                earlier_cpu.append(took_cpu)
            decisions = []
            for plan in args.plans:
                t, c = time.perf_counter(), time.process_time()
                result = run_gates(engine, [spec], "r2", baseline="r1", dry_run=True, plan=plan)
                reducer[plan].append(time.perf_counter() - t)
                cpu[plan].append(time.process_time() - c)
                decisions.append([[o.segment, o.decision] for o in result.outcomes])
            same = same and all(d == decisions[0] for d in decisions)
            for name, variant in variants.items():
                t = time.perf_counter()
                ran = run_gates(engine, [variant], "r2", baseline="r1", dry_run=True)
                timed[name].append(time.perf_counter() - t)
                if variant is calibrated:
                    strata = [o.current.get("calibration", {}).get("strata", "none") for o in ran.outcomes]
            if before is not None:
                earlier_decisions = decided
            t = time.perf_counter()
            with engine.connect() as conn:
                plain = "select evaluator_id, status, passed, count(*) from evaluation group by 1, 2, 3"
                conn.execute(text(plain)).all()
            floor.append(time.perf_counter() - t)
    finally:
        if before is not None:
            before.communicate("")
        engine.dispose()
        shutil.rmtree(workdir)
    groups = len(result.outcomes)
    windows = len(result.outcomes[0].windows) if result.outcomes else 0
    labels = sum(o.baseline.get("humanLabels", 0) for o in result.outcomes)
    print(f"gate run (dry): {groups} segment groups x {windows} windows, decision {result.decision}"
          f" (human labels read in the baseline arm: {labels})")  # fmt: skip

    def show(name: str, runs: list[float], cpu: list[float] | None = None) -> None:
        spent = f", CPU median {statistics.median(cpu):.3f} s (all threads)" if cpu else ""
        print(f"{name}: median {statistics.median(runs):.3f} s  (runs: {', '.join(f'{r:.3f}' for r in runs)}){spent}")

    if earlier:
        show(f"reducer at {args.before}", earlier, earlier_cpu)
    for plan in args.plans:
        show(f"reducer ({plan} plan)", reducer[plan], cpu[plan])
    print(f"same decisions per segment across plans: {same}; decisions {_count(decisions[0])}"
          + (f"; at {args.before}: {_count(earlier_decisions)}" if earlier else ""))  # fmt: skip
    show("plain GROUP BY over evaluations", floor)
    for name, runs in timed.items():
        show(name, runs)
    if timed:
        a, b = (statistics.median(timed[n]) for n in variants)
        kinds = ", ".join(f"{k} {strata.count(k)}" for k in sorted(set(strata)))
        print(f"calibration adds {100 * (b / a - 1):+.1f}% (medians); outcomes calibrated with labels of: {kinds}")


if __name__ == "__main__":
    main()
