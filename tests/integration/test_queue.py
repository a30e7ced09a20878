"""Queued batches with real processes: redis-server, tracejury workers, the mock judge.

(a) kill -9 a worker mid-batch; (b) restart redis-server mid-batch; (c) judge faults;
(d) a poison trace. In each, the batch completes and every (sampled trace, evaluator) has
exactly one evaluation: scored, judge_failed, not_applicable or missing_evidence.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import create_engine, text

from tests.integration.procs import EXE, RedisServer, start, stop

RUBRICS = ["answer_correctness", "tool_grounding", "json_valid"]


def run(*args: str, env: dict[str, str], timeout: float = 120) -> str:
    proc = subprocess.run([EXE, *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args}: {proc.stderr[-2000:]}"
    return proc.stdout


@pytest.fixture
def queue_env(
    tmp_path: Path, base_env: dict[str, str], redis_server: RedisServer, mock_judge: str
) -> dict[str, str]:
    """600 simulated traces, small chunks, short leases, a Redis broker."""
    env = {
        **base_env,
        "TRACEJURY_BROKER_URL": redis_server.url,
        "TRACEJURY_JUDGE_BASE_URL": mock_judge,
        "TRACEJURY_CHUNK_SIZE": "25",
        "TRACEJURY_CHUNK_LEASE_S": "3",
        "TRACEJURY_SWEEP_INTERVAL_S": "0.5",
    }
    traces = tmp_path / "t.jsonl"
    run("simulate", "--release", "r1", "--traces", "600", "--seed", "5", "-o", str(traces),
        "--regress", "answer_contradicts_tool:0.3", env=env)  # fmt: skip
    run("ingest", str(traces), env=env)
    return env


@pytest.fixture
def workers(tmp_path: Path, queue_env: dict[str, str]) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [
        start([EXE, "worker", "--concurrency", "1", "--loglevel", "WARNING"], queue_env,
              tmp_path / f"worker{i}.log")
        for i in range(2)
    ]  # fmt: skip
    yield procs
    for p in procs:
        stop(p)


def create(env: dict[str, str]) -> dict:
    args = [a for r in RUBRICS for a in ("--rubric", r)]
    return orjson.loads(run("batch", "create", "--release", "r1", "--json", *args, env=env))


def status(env: dict[str, str], batch_id: str) -> dict:
    return orjson.loads(run("batch", "status", batch_id, "--json", env=env))


def wait_done(env: dict[str, str], batch_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = status(env, batch_id)
        if data["state"] != "running":
            return data
        time.sleep(0.5)
    pytest.fail(f"batch {batch_id} still running after {timeout} s: {status(env, batch_id)}")


def assert_exactly_one_each(env: dict[str, str], batch_id: str, sampled: int) -> dict:
    """Every (sampled trace, evaluator) has exactly one evaluation; returns the status."""
    engine = create_engine(env["TRACEJURY_DATABASE_URL"])
    with engine.connect() as conn:
        rows, distinct = conn.execute(text(
            "select count(*), count(distinct trace_id || '/' || evaluator_id) from evaluation"
            " where batch_id = :b"), {"b": batch_id}).one()  # fmt: skip
        missing = conn.execute(text(
            "select count(*) from batch_trace bt where bt.batch_id = :b and"
            " (select count(*) from evaluation e where e.batch_id = :b and e.trace_id = bt.trace_id) != :n"
        ), {"b": batch_id, "n": len(RUBRICS)}).scalar_one()  # fmt: skip
    engine.dispose()
    assert rows == distinct == sampled * len(RUBRICS)
    assert missing == 0
    data = status(env, batch_id)
    assert sum(data["status"].values()) == sampled * len(RUBRICS)
    return data


def test_batch_completes_on_redis(queue_env: dict[str, str], workers: list) -> None:
    created = create(queue_env)
    assert created["sampled"] == 600 and created["chunks"] == 24
    done = wait_done(queue_env, created["batchId"], timeout=90)
    assert done["state"] == "done", done
    data = assert_exactly_one_each(queue_env, created["batchId"], 600)
    assert data["status"]["judge_failed"] == 0


def _wait_progress(env: dict[str, str], batch_id: str, at_least: int) -> None:
    deadline = time.monotonic() + 60
    while status(env, batch_id)["tracesDone"] < at_least:
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.1)


def test_kill_9_a_worker_mid_batch(queue_env: dict[str, str], workers: list) -> None:
    created = create(queue_env)
    _wait_progress(queue_env, created["batchId"], 50)
    victim = workers[0]
    stop(victim, signal.SIGKILL)  # the whole worker: its main process and its pool child
    assert victim.returncode is not None
    killed_at = time.monotonic()
    done = wait_done(queue_env, created["batchId"], timeout=60)
    assert done["state"] == "done", done
    assert time.monotonic() - killed_at < 60
    assert_exactly_one_each(queue_env, created["batchId"], created["sampled"])


def test_restart_redis_mid_batch(
    queue_env: dict[str, str], workers: list, redis_server: RedisServer
) -> None:
    created = create(queue_env)
    _wait_progress(queue_env, created["batchId"], 25)
    redis_server.stop()
    time.sleep(1.0)
    redis_server.start()  # same port, same append-only file
    done = wait_done(queue_env, created["batchId"], timeout=90)
    assert done["state"] == "done", done
    assert_exactly_one_each(queue_env, created["batchId"], created["sampled"])


@pytest.mark.parametrize(
    "mock_judge", ["http500=0.2,http429=0.1,hang=0.05,malformed=0.05"], indirect=True
)
def test_judge_faults_end_as_scores_or_explicit_failures(
    queue_env: dict[str, str], workers: list
) -> None:
    created = create(queue_env)
    done = wait_done(queue_env, created["batchId"], timeout=120)
    assert done["state"] == "done", done
    data = assert_exactly_one_each(queue_env, created["batchId"], created["sampled"])
    assert data["status"]["judge_failed"] == sum(data["failures"].values()) > 0
    assert "invalid_output" in data["failures"]


POISON_PLUGIN = '''
from judges.checks import CheckResult, checker

@checker("poison_sensitive", "1")
def poison_sensitive(ev, params):
    """Raises on one trace, like a checker with a bug on one input."""
    if ev.trace_id.endswith("00000007"):
        raise RuntimeError("checker bug on this trace")
    return CheckResult.ok("fine")
'''


def test_poison_trace_fails_only_itself(
    tmp_path: Path, queue_env: dict[str, str], fast_rubrics: Path, workers: list
) -> None:
    # the workers must load the plugin too: restart them with it
    for w in workers:
        stop(w)
    (tmp_path / "poison_plugin.py").write_text(POISON_PLUGIN)
    (fast_rubrics / "poison.yaml").write_text(
        "id: poison\nversion: '1'\nchecker: poison_sensitive\n"
    )
    env = {**queue_env, "TRACEJURY_PLUGINS": "poison_plugin",
           "PYTHONPATH": f"{tmp_path}:{queue_env['PYTHONPATH']}"}  # fmt: skip
    workers[:] = [start([EXE, "worker", "--concurrency", "1"], env, tmp_path / "w.log")]
    created = orjson.loads(run("batch", "create", "--release", "r1", "--rubric", "poison",
                               "--rubric", "json_valid", "--json", env=env))  # fmt: skip
    done = wait_done(env, created["batchId"], timeout=60)
    assert done["state"] == "done", done
    assert done["failures"] == {"checker_error": 1}
    assert done["status"]["judge_failed"] == 1
    assert sum(done["status"].values()) == created["sampled"] * 2


def test_a_two_chunk_batch_runs_on_both_scoring_processes(tmp_path: Path, base_env: dict[str, str]) -> None:
    """One idle worker with two scoring processes, the embedded broker, a slow judge: each
    chunk of a 2-chunk batch runs in its own process, not chained into the first one.
    (Here the second message reaches the other process first even with ``CHAIN_AFTER_S`` at 0;
    the test holds the outcome, not that delay's share in it.)"""
    from tests.integration.procs import free_port, wait_port

    port = free_port()
    judge = start([EXE, "mock-judge", "--port", str(port), "--seed", "7", "--latency-ms", "300"],
                  base_env, tmp_path / "slow-judge.log")  # fmt: skip
    env = {**base_env, "TRACEJURY_JUDGE_BASE_URL": f"http://127.0.0.1:{port}/v1", "TRACEJURY_CHUNK_SIZE": "100"}
    traces = tmp_path / "t.jsonl"
    run("simulate", "--release", "r1", "--traces", "200", "--seed", "5", "-o", str(traces), env=env)
    run("ingest", str(traces), env=env)
    log = tmp_path / "worker.log"
    worker = start([EXE, "worker", "--concurrency", "2", "--loglevel", "INFO"], env, log)
    try:
        wait_port(port)
        deadline = time.monotonic() + 60
        while " ready." not in log.read_text():  # idle and polling, as a worker between batches
            assert time.monotonic() < deadline and worker.poll() is None, log.read_text()[-2000:]
            time.sleep(0.1)
        time.sleep(1)
        created = orjson.loads(run("batch", "create", "--release", "r1", "--json", "--rubric",
                                   "answer_correctness", env=env))  # fmt: skip
        assert created["chunks"] == 2
        assert wait_done(env, created["batchId"], timeout=90)["state"] == "done"
        engine = create_engine(env["TRACEJURY_DATABASE_URL"])
        with engine.connect() as conn:
            holders = conn.execute(text("select chunk_no, worker from batch_chunk where batch_id = :b"),
                                   {"b": created["batchId"]}).all()  # fmt: skip
        engine.dispose()
        assert len({w for _, w in holders}) == 2, f"both chunks ran in one process: {holders}"
    finally:
        stop(worker)
        stop(judge)
