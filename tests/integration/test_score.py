"""`tracejury score` end to end: real CLI processes, a real mock judge over loopback with
faults, a real SQLite store. Every (trace, evaluator) ends scored or explicitly failed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest

from tests.integration.procs import EXE


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def workspace(tmp_path: Path, base_env: dict[str, str]) -> dict[str, str]:
    """A store with 120 simulated traces, some answers contradicting the tool."""
    traces = tmp_path / "t.jsonl"
    sim = _run("simulate", "--release", "r1", "--traces", "120", "--seed", "3", "-o", str(traces),
               "--regress", "answer_contradicts_tool:0.5", env=base_env)  # fmt: skip
    assert sim.returncode == 0, sim.stderr
    assert _run("ingest", str(traces), env=base_env).returncode == 0
    return base_env


def _score(env: dict[str, str], base_url: str, *rubrics: str) -> dict:
    args = [a for r in rubrics for a in ("--rubric", r)]
    proc = _run("score", "--release", "r1", "--json", *args,
                env={**env, "TRACEJURY_JUDGE_BASE_URL": base_url})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return orjson.loads(proc.stdout)


def test_clean_judge_scores_and_agrees_with_the_checker(
    workspace: dict[str, str], mock_judge: str
) -> None:
    out = _score(workspace, mock_judge, "tool_grounded_correctness", "tool_grounding")
    assert out["traces"] == 120
    assert sum(out["status"].values()) == 120 * 2
    assert out["status"]["judge_failed"] == 0 and out["failures"] == {}
    assert out["status"]["scored"] > 0

    from sqlalchemy import create_engine, text

    engine = create_engine(workspace["TRACEJURY_DATABASE_URL"])
    with engine.connect() as conn:
        rows = conn.execute(text(
            "select j.passed, c.passed from evaluation j join evaluation c using (trace_id)"
            " where j.evaluator_id = 'tool_grounded_correctness' and c.evaluator_id = 'tool_grounding'"
            " and j.status = 'scored' and c.status = 'scored'"
        )).all()  # fmt: skip
    assert rows, "no trace scored by both"
    assert sum(not p for p, _ in rows) > 0, "the planted contradictions should fail"
    assert all(j == c for j, c in rows), "the mock judge follows the evidence like the checker"


@pytest.mark.parametrize(
    "mock_judge", ["http500=0.2,http429=0.1,hang=0.05,malformed=0.05"], indirect=True
)
def test_faults_end_as_scores_or_explicit_failures(
    workspace: dict[str, str], mock_judge: str
) -> None:
    out = _score(workspace, mock_judge, "answer_correctness", "helpfulness", "json_valid")
    n = 120 * 3
    assert sum(out["status"].values()) == n  # scored + failed + n/a + missing = traces x evaluators
    assert out["status"]["judge_failed"] == sum(out["failures"].values())
    assert out["status"]["judge_failed"] > 0
    assert set(out["failures"]) <= {"timeout", "http_error", "rate_limited", "invalid_output"}
    assert "invalid_output" in out["failures"]  # malformed is not retried into a verdict


@pytest.mark.parametrize("mock_judge", ["label=1.0"], indirect=True)
def test_label_outside_the_rubric_is_rubric_mismatch(
    workspace: dict[str, str], mock_judge: str
) -> None:
    out = _score(workspace, mock_judge, "answer_correctness")
    assert out["failures"] == {"rubric_mismatch": out["status"]["judge_failed"]}
    assert out["status"]["scored"] == 0


def test_latency_is_the_call_s_own_not_the_wait_for_a_slot(
    workspace: dict[str, str], mock_judge: str, tmp_path: Path
) -> None:
    """One call at a time against a 20 ms judge: 120 calls queue for the one slot, yet each
    evaluation's latency_ms is its own call's (it used to include the wait: seconds)."""
    import shutil

    import yaml

    rubrics = tmp_path / "rubrics-serial"
    shutil.copytree(Path(__file__).resolve().parents[2] / "rubrics", rubrics)
    profiles = {"profiles": [{"name": "default", "model": "mock-judge", "max_concurrency": 1,
                              "adaptive_concurrency": False}]}  # fmt: skip
    (rubrics / "profiles.yaml").write_text(yaml.safe_dump(profiles))
    _score({**workspace, "TRACEJURY_RUBRICS_DIR": str(rubrics)}, mock_judge, "tool_grounded_correctness")

    from sqlalchemy import create_engine, text

    engine = create_engine(workspace["TRACEJURY_DATABASE_URL"])
    with engine.connect() as conn:
        latencies = sorted(conn.execute(text(
            "select latency_ms from evaluation where evaluator_id = 'tool_grounded_correctness'"
            " and status = 'scored' and not cached"
        )).scalars())  # fmt: skip
    engine.dispose()
    assert len(latencies) >= 20, latencies
    assert 15 <= latencies[len(latencies) // 2] < 500, latencies
    assert latencies[-1] < 1000, latencies
