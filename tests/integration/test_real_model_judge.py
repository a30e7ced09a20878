"""The shipped judge rubrics against a real model: `tracejury score` on 50 simulated traces,
judged by SmolLM2-135M-Instruct behind llama-cpp-python's OpenAI-compatible server.

What is asserted is the protocol, not the verdicts (a 135M model is no judge): every
(trace, rubric) ends scored or as a typed judge failure, every reply's tokens are recorded and
priced, latencies are real model time. The profile asks for ``structured_output: auto``: the
server refuses ``json_schema`` (HTTP 500), and the client falls back to ``json_object`` with the
schema, which llama.cpp turns into a grammar. Needs ``./scripts/setup`` (see real_model.py).
"""

from __future__ import annotations

import math
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from sqlalchemy import create_engine, text

from tests.integration.procs import EXE
from tests.integration.real_model import ROOT, LlamaServer, require_real_model
from tracejury.core.evaluation import FAILURE_KINDS

pytestmark = [pytest.mark.integration, pytest.mark.real_model]

TRACES = 50
RUBRICS = ("answer_correctness", "tool_grounded_correctness")
"""Two of the four shipped judge rubrics: 63 calls on these traces (tool_grounded_correctness
applies to the 13 that need a tool), ~2.5 min at ~2.4 s a call on 2 cores; all four would be
200 calls, ~8 min (BENCHMARKS.md)."""
PRICE = {"input_per_million": 0.15, "output_per_million": 0.6}
REPLIED = {"invalid_output", "rubric_mismatch", "refused"}
"""Failure kinds of calls that got a reply (billed: tokens reported)."""


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """The real judge server for this module's tests, stopped at the end."""
    model = require_real_model()
    server = LlamaServer(model, tmp_path_factory.mktemp("llama") / "server.log")
    try:
        server.start()
        print(f"\nllama_cpp.server up in {server.start_s:.1f} s, model {server.model!r}")
        yield server
    finally:
        server.stop()


def _run(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([EXE, *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"tracejury {args[0]} failed:\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def scored(llama: LlamaServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """50 simulated traces ingested into a fresh SQLite store and scored by the real judge:
    ``out`` is `score --json`, ``rows`` the batch's evaluations, ``wall_s`` the score's time."""
    tmp = tmp_path_factory.mktemp("real-judge")
    rubrics = tmp / "rubrics"
    shutil.copytree(ROOT / "rubrics", rubrics)
    profile = {
        "name": "default",
        "base_url": llama.base_url,
        "model": llama.model,
        "timeout_s": 60.0,
        "max_attempts": 2,
        "max_concurrency": 1,  # the server runs one completion at a time; more would only queue
        "backoff_initial_s": 0.1,
        "backoff_max_s": 0.5,
        "structured_output": "auto",
        "max_output_tokens": 256,
        "price": PRICE,
    }
    (rubrics / "profiles.yaml").write_text(yaml.safe_dump({"profiles": [profile]}))
    db = f"sqlite:///{tmp / 'tracejury.db'}"
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp),
        "PYTHONPATH": str(ROOT),
        "TRACEJURY_DATABASE_URL": db,
        "TRACEJURY_RUBRICS_DIR": str(rubrics),
        "TRACEJURY_BROKER_URL": f"sqla+sqlite:///{tmp / 'broker.db'}",
        # one evaluation at a time: the server runs one completion at a time anyway, and an
        # evaluation's latency then is its call's, not time queued behind the others' calls
        "TRACEJURY_SCORE_CONCURRENCY": "1",
    }
    traces = tmp / "t.jsonl"
    _run("simulate", "--release", "r1", "--traces", str(TRACES), "--seed", "1", "-o", str(traces), env=env)
    _run("ingest", str(traces), env=env)
    began = time.monotonic()
    args = [a for r in RUBRICS for a in ("--rubric", r)]
    proc = _run("score", "--release", "r1", "--json", *args, env=env, timeout=600)
    wall_s = time.monotonic() - began
    out = orjson.loads(proc.stdout)
    engine = create_engine(db)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(
            text("select * from evaluation where batch_id = :b"), {"b": out["batchId"]}
        )]  # fmt: skip
    engine.dispose()
    judged = [r for r in rows if r["evaluator_kind"] == "rubric" and r["attempts"] > 0]
    latencies = [r["latency_ms"] for r in judged]
    print(f"score: {len(judged)} judge calls in {wall_s:.1f} s, median latency"
          f" {statistics.median(latencies) if latencies else float('nan'):.0f} ms,"
          f" status {out['status']}, failures {out['failures']}")  # fmt: skip
    return {"out": out, "rows": rows, "wall_s": wall_s, "server": llama}


def test_every_trace_and_rubric_ends_scored_or_as_a_typed_failure(scored: dict[str, Any]) -> None:
    out, rows = scored["out"], scored["rows"]
    assert out["traces"] == TRACES
    assert sorted(out["evaluators"]) == sorted(RUBRICS)
    assert sum(out["status"].values()) == TRACES * len(RUBRICS)
    assert len(rows) == TRACES * len(RUBRICS)
    assert len({(r["trace_id"], r["evaluator_id"]) for r in rows}) == len(rows)
    assert out["status"]["judge_failed"] == sum(out["failures"].values())
    for r in rows:
        where = f"{r['evaluator_id']} on {r['trace_id']}"
        if r["status"] == "scored":
            assert r["label"] in ("pass", "fail") and r["passed"] == (r["label"] == "pass"), where
            assert r["failure_kind"] is None, where
        elif r["status"] == "judge_failed":
            assert r["failure_kind"] in FAILURE_KINDS and r["error"], where
            assert r["label"] is None and r["passed"] is None, where  # a failure is no verdict
        else:
            assert r["status"] in ("not_applicable", "missing_evidence"), where
    # the server is up and every call reached the model: the only failures are replies that
    # held no verdict (never transport, never the server refusing the request)
    assert set(out["failures"]) <= REPLIED, out["failures"]
    assert out["status"]["scored"] > 0
    assert scored["server"].alive(), "the judge server died (an illegal instruction?)"


def test_replies_record_tokens_and_real_latency(scored: dict[str, Any]) -> None:
    judged = [r for r in scored["rows"] if r["evaluator_kind"] == "rubric" and r["attempts"] > 0]
    assert judged
    verdicts = [r for r in judged if r["status"] == "scored"]
    for r in verdicts:
        assert r["prompt_tokens"] and r["prompt_tokens"] > 200, r  # the rubric and the evidence
        assert r["completion_tokens"] and 0 < r["completion_tokens"] <= 256, r  # the reply cap
        assert r["judge_model"] == scored["server"].model
    latencies = [r["latency_ms"] for r in judged]
    assert statistics.median(latencies) > 50, "a real model takes real time per call"
    assert sum(latencies) <= scored["wall_s"] * 1000, "one evaluation at a time: no overlap"


def test_replies_are_priced_and_the_summary_adds_them_up(scored: dict[str, Any]) -> None:
    out, rows = scored["out"], scored["rows"]
    calls = [r for r in rows if r["evaluator_kind"] == "rubric" and r["attempts"] > 0]
    replied = [r for r in calls if r["status"] == "scored" or r["failure_kind"] in REPLIED]
    assert replied
    for r in replied:  # billed: by the usage the server reported, at the profile's price
        assert r["prompt_tokens"] is not None and r["completion_tokens"] is not None, r
        expected = (r["prompt_tokens"] * PRICE["input_per_million"]
                    + r["completion_tokens"] * PRICE["output_per_million"]) / 1_000_000  # fmt: skip
        assert r["cost_usd"] is not None and math.isclose(r["cost_usd"], expected, rel_tol=1e-9), r
    for r in rows:
        if r["evaluator_kind"] == "rubric" and r["cached"]:  # no call made: free, its price saved
            assert r["cost_usd"] == 0.0 and r["attempts"] == 0, r
    usage = out["usage"]
    assert usage["promptTokens"] == sum(r["prompt_tokens"] or 0 for r in rows)
    assert usage["completionTokens"] == sum(r["completion_tokens"] or 0 for r in rows)
    assert usage["costUsd"] > 0
    assert math.isclose(usage["costUsd"], sum(r["cost_usd"] or 0 for r in rows), abs_tol=1e-8)
    assert usage["unpricedEvaluations"] == 0
