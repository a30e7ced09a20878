"""Identical (evidence, rubric) pairs are judged once, end to end: within one chunk (a release
whose traces repeat evidence, scored inline against the real mock judge over loopback; the
judge calls made are the evaluations that were not cache hits and made attempts), and across
chunks and worker processes (a queued batch, two workers, calls counted at a proxy)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import yaml
from sqlalchemy import create_engine, text

from tests.integration.judge_proxy import judge_proxy
from tests.integration.procs import EXE, start, stop

COPIES = 3


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], env=env, capture_output=True, text=True, timeout=120)


def test_repeated_evidence_in_one_chunk_is_judged_once(
    tmp_path: Path, base_env: dict[str, str], mock_judge: str
) -> None:
    simulated = tmp_path / "sim.jsonl"
    sim = _run("simulate", "--release", "r1", "--traces", "20", "--seed", "5", "-o", str(simulated), env=base_env)
    assert sim.returncode == 0, sim.stderr
    repeated = []
    for line in simulated.read_text().splitlines():
        trace = orjson.loads(line)
        for n in range(COPIES):  # the same evidence under another trace id
            repeated.append(orjson.dumps({**trace, "traceId": f"{trace['traceId']}-{n}"}).decode())
    traces = tmp_path / "repeated.jsonl"
    traces.write_text("\n".join(repeated) + "\n")
    ingest = _run("ingest", str(traces), env=base_env)
    assert ingest.returncode == 0, ingest.stderr

    env = {**base_env, "TRACEJURY_JUDGE_BASE_URL": mock_judge}
    proc = _run("score", "--release", "r1", "--json", "--rubric", "answer_correctness", "--rubric", "helpfulness",
                env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = orjson.loads(proc.stdout)
    assert out["traces"] == 20 * COPIES

    engine = create_engine(base_env["TRACEJURY_DATABASE_URL"])
    with engine.connect() as conn:
        judged = conn.execute(text(
            "select count(distinct evidence_hash || '|' || evaluator_id) from evaluation"
            " where status in ('scored', 'judge_failed') and evaluator_kind = 'rubric'"
        )).scalar_one()  # fmt: skip
        calls = conn.execute(text(
            "select count(*) from evaluation where evaluator_kind = 'rubric' and not cached and attempts > 0"
        )).scalar_one()  # fmt: skip
        shared = conn.execute(text(
            "select count(*) from evaluation where evaluator_kind = 'rubric' and cached and attempts = 0"
        )).scalar_one()  # fmt: skip
    engine.dispose()
    assert judged > 0
    assert calls == judged, f"{calls} judge calls for {judged} distinct (evidence, rubric) pairs"
    assert shared == judged * (COPIES - 1)


def test_two_workers_judge_each_distinct_question_once(
    tmp_path: Path, base_env: dict[str, str], fast_rubrics: Path, mock_judge: str
) -> None:
    """1,000 traces holding 250 distinct evidences (each four times, in different chunks), a
    queued batch on the embedded broker, two worker processes: the judge, counted at a proxy
    in front of the real mock, answers one call per distinct (evidence, rubric) pair (and only
    the retries those calls record); every other evaluation of a pair is a cache hit (cost 0),
    in whichever process it ran."""
    profiles = yaml.safe_load((fast_rubrics / "profiles.yaml").read_text())
    profiles["profiles"][0]["timeout_s"] = 30.0  # few retried calls on a loaded machine
    (fast_rubrics / "profiles.yaml").write_text(yaml.safe_dump(profiles))
    simulated = tmp_path / "sim.jsonl"
    sim = _run("simulate", "--release", "r1", "--traces", "250", "--seed", "5", "-o", str(simulated), env=base_env)
    assert sim.returncode == 0, sim.stderr
    repeated = [orjson.dumps({**orjson.loads(line), "traceId": f"{n}-{orjson.loads(line)['traceId']}"}).decode()
                for line in simulated.read_text().splitlines() for n in range(4)]  # fmt: skip
    traces = tmp_path / "repeated.jsonl"
    traces.write_text("\n".join(repeated) + "\n")
    assert _run("ingest", str(traces), env=base_env).returncode == 0

    with judge_proxy(mock_judge) as proxy:
        env = {**base_env, "TRACEJURY_JUDGE_BASE_URL": proxy.url, "TRACEJURY_CHUNK_SIZE": "100"}
        batch = _run_batch_on_two_workers(tmp_path, env)
    calls = proxy.calls
    _check_one_call_per_question(base_env, batch, calls, tmp_path)


def _run_batch_on_two_workers(tmp_path: Path, env: dict[str, str]) -> dict[str, Any]:
    workers = [start([EXE, "worker"], env, tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        for i in range(2):
            _wait_for(lambda i=i: " ready." in (tmp_path / f"worker{i}.log").read_text(errors="replace"), 60)
        created = _run("batch", "create", "--release", "r1", "--rubric", "answer_correctness", "--rubric",
                       "helpfulness", "--json", env=env)  # fmt: skip
        assert created.returncode == 0, created.stderr
        batch = orjson.loads(created.stdout)
        assert batch["sampled"] == 1000 and batch["chunks"] == 10

        def done() -> bool:
            out = _run("batch", "status", batch["batchId"], "--json", env=env)
            return orjson.loads(out.stdout)["state"] != "running"

        _wait_for(done, 180)
    finally:
        for w in workers:
            stop(w)
    return batch


def _check_one_call_per_question(base_env: dict[str, str], batch: dict[str, Any], calls: int,
                                 tmp_path: Path) -> None:  # fmt: skip
    engine = create_engine(base_env["TRACEJURY_DATABASE_URL"])
    with engine.connect() as conn:
        rows = conn.execute(text(
            "select evidence_hash, evaluator_id, cached, attempts, cost_usd, status from evaluation"
            " where batch_id = :b and evaluator_kind = 'rubric' and status in ('scored', 'judge_failed')"
        ), {"b": batch["batchId"]}).all()  # fmt: skip
        state = conn.execute(text("select state from batch where id = :b"), {"b": batch["batchId"]}).scalar_one()
    engine.dispose()
    assert state == "done"
    distinct = {(r.evidence_hash, r.evaluator_id) for r in rows}
    assert len(distinct) > 100 and all(r.status == "scored" for r in rows)
    assert sum(1 for r in rows if not r.cached and r.attempts > 0) == len(distinct)  # one judged row a pair
    # one call per distinct pair, plus only the retries its judged row records (a loaded machine
    # can time an attempt out and retry the same question; that is not a second asker's call)
    retries = sum(r.attempts - 1 for r in rows if not r.cached and r.attempts > 0)
    assert len(distinct) <= calls <= len(distinct) + retries, (
        f"{calls} judge calls for {len(distinct)} distinct pairs and {retries} recorded retries")
    hits = [r for r in rows if r.cached]
    assert len(hits) == len(rows) - len(distinct) and all(r.attempts == 0 for r in hits)
    logs = "".join((tmp_path / f"worker{i}.log").read_text(errors="replace") for i in range(2))
    assert "Traceback" not in logs, logs[-3000:]


def _wait_for(ready: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.2)
    raise AssertionError(f"not ready after {timeout} s")
