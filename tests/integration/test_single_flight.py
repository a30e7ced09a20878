"""Identical (evidence, rubric) pairs within one chunk are judged once, end to end: a release
whose traces repeat evidence, scored inline against the real mock judge over loopback. The
judge calls made are the evaluations that were not cache hits and made attempts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
from sqlalchemy import create_engine, text

from tests.integration.procs import EXE

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
