"""Never a pass without evidence: every way a gate could pass on nothing, in a real store
(SQLite and PostgreSQL), becomes ``insufficient_data`` or ``inconclusive`` with a reason
that names what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.gate_data import ingest_release, judge_config, score
from tracejury.core.errors import ConfigError
from tracejury.core.gates import GateSpec
from tracejury.store.evaluations import finish_batch
from workers.reducer import load_gates, run_gates

ROOT = Path(__file__).resolve().parents[2]


def gate(**over: Any) -> GateSpec:
    """An evaluator gate over windows of 500 traces, 2 parts of persistence."""
    spec = {"id": "answer_correctness", "metric": {"evaluator": "answer_correctness"}, "min_samples": 200,
            "margin": {"absolute": 0.01}, "hysteresis": {"windows": 2, "window": {"traces": 500}}}  # fmt: skip
    return GateSpec.model_validate({**spec, **over})


def two_releases(engine: Any, example: dict[str, Any], n: int = 2000) -> tuple[list[str], list[str]]:
    return (ingest_release(engine, example, "r1", 18, n, models=1, tie=1),
            ingest_release(engine, example, "r2", 20, n, models=1, tie=1, seed=1))  # fmt: skip


def passing(i: int) -> tuple[str, bool | None]:
    return "scored", i % 50 != 0  # 2% fail


def test_an_evaluator_never_scored_is_one_insufficient_outcome(engine: Any, example_trace: dict[str, Any]) -> None:
    r1, _ = two_releases(engine, example_trace)
    score(engine, "r1", r1, passing)
    result = run_gates(engine, [gate()], "r2", baseline="r1", dry_run=True)
    (o,) = result.outcomes
    assert (result.decision, o.decision) == ("insufficient_data", "insufficient_data")
    assert o.reason == "no done batch scored answer_correctness in the current arm r2"


def test_a_where_that_matches_nothing_says_so(engine: Any, example_trace: dict[str, Any]) -> None:
    r1, r2 = two_releases(engine, example_trace)
    score(engine, "r1", r1, passing)
    score(engine, "r2", r2, passing)
    result = run_gates(engine, [gate(where={"segment": {"rag": "onn"}})], "r2", baseline="r1", dry_run=True)
    (o,) = result.outcomes
    assert result.decision == "insufficient_data" and o.decision == "insufficient_data"
    assert "matching the gate's where" in o.reason
    assert any("where.segment rag=onn matches nothing the gate read (rag seen: on)" in n for n in o.notes), o.notes


def test_a_threshold_baseline_on_a_release_shorter_than_a_window(engine: Any, example_trace: dict[str, Any]) -> None:
    ingest_release(engine, example_trace, "r2", 20, 300, models=1, tie=1)
    spec = GateSpec.model_validate({"id": "fmt", "metric": {"signal": "format_invalid"}, "interval": "wilson",
                                    "baseline": {"kind": "threshold", "value": 0.01}, "min_samples": 100,
                                    "hysteresis": {"windows": 1, "window": {"traces": 500}}})  # fmt: skip
    result = run_gates(engine, [spec], "r2", dry_run=True)
    (o,) = result.outcomes
    assert result.decision == "insufficient_data"
    assert o.reason == "no complete window of traffic in r2"


def test_unscored_newest_traffic_is_not_passed_on_older_windows(engine: Any, example_trace: dict[str, Any]) -> None:
    r1, r2 = two_releases(engine, example_trace)
    score(engine, "r1", r1, passing)
    score(engine, "r2", r2[:1000], passing)  # the batch was drawn before the second half of r2 arrived
    (o,) = run_gates(engine, [gate()], "r2", baseline="r1", dry_run=True).outcomes
    assert o.decision == "insufficient_data"
    assert o.reason.startswith("the newest window (2026-11-20T00:25:00+00:00 on) holds 0 effective evaluations")


def test_gates_read_the_newest_done_batch_and_name_a_running_one(engine: Any, example_trace: dict[str, Any]) -> None:
    r1, r2 = two_releases(engine, example_trace)
    score(engine, "r1", r1, passing)
    done = score(engine, "r2", r2, passing)
    running = score(engine, "r2", r2, lambda i: ("scored", i % 5 != 0), done=False)  # 20% fail, half-scored
    (o,) = run_gates(engine, [gate()], "r2", baseline="r1", dry_run=True).outcomes
    assert o.decision == "pass" and o.current["failures"] == 40  # the done batch's 2%, not the running one's
    assert f"current arm read done batch {done}" in o.notes
    assert f"current arm: newer batch {running} (running) not read (not done)" in o.notes


@pytest.mark.parametrize("state", ["running", "failed"])
def test_an_arm_with_no_done_batch_names_the_batch_and_its_state(engine: Any, example_trace: dict[str, Any],
                                                                 state: str) -> None:  # fmt: skip
    r1, r2 = two_releases(engine, example_trace)
    score(engine, "r1", r1, passing)
    batch = score(engine, "r2", r2, passing, done=False)
    if state != "running":
        finish_batch(engine, batch, state=state, reason="1 chunk(s) failed")
    result = run_gates(engine, [gate()], "r2", baseline="r1", dry_run=True)
    (o,) = result.outcomes
    assert result.decision == "insufficient_data"
    assert o.reason == f"no done batch scored answer_correctness in the current arm r2 ({batch} ({state}) not done)"


@pytest.mark.parametrize("other", [{"model": "judge-b"}, {"base_url": "http://judge.example:9000/v1"},
                                   {"temperature": 0.7}])  # fmt: skip
def test_arms_judged_by_different_judges_are_inconclusive(engine: Any, example_trace: dict[str, Any],
                                                          other: dict[str, Any]) -> None:  # fmt: skip
    r1, r2 = two_releases(engine, example_trace)
    score(engine, "r1", r1, passing, config=judge_config())
    score(engine, "r2", r2, passing, config=judge_config(**other))
    (o,) = run_gates(engine, [gate()], "r2", baseline="r1", dry_run=True).outcomes
    assert o.decision == "inconclusive" and o.reason.startswith("the arms were judged by different judges")
    score(engine, "r2", r2, passing, config=judge_config())  # rescored by the same judge: decides again
    assert run_gates(engine, [gate()], "r2", baseline="r1", dry_run=True).outcomes[0].decision == "pass"


def test_judge_failures_in_the_baseline_arm_are_inconclusive(engine: Any, example_trace: dict[str, Any]) -> None:
    r1, r2 = two_releases(engine, example_trace)
    score(engine, "r1", r1, lambda i: ("judge_failed", None) if i % 10 == 0 else passing(i))
    score(engine, "r2", r2, passing)
    (o,) = run_gates(engine, [gate()], "r2", baseline="r1", dry_run=True).outcomes
    assert o.decision == "inconclusive"
    assert o.reason == "judge failures 10.0% (1/p-weighted) of the baseline arm exceed 5.0%"


def test_judge_failures_are_weighted_like_the_rate(engine: Any, example_trace: dict[str, Any]) -> None:
    """3% of the evaluations failed to judge, but on traces sampled at 1/8 the rate of the
    others: they stand for 20% of the traffic the sample represents."""
    r1, r2 = two_releases(engine, example_trace)
    score(engine, "r1", r1, passing)

    def verdict(i: int) -> tuple[str, bool | None]:
        return ("judge_failed", None) if i % 33 == 0 else passing(i)

    score(engine, "r2", r2, verdict, probability=lambda i: 0.1 if i % 33 == 0 else 0.8)
    (o,) = run_gates(engine, [gate()], "r2", baseline="r1", dry_run=True).outcomes
    assert o.decision == "inconclusive" and "of the current arm exceed 5.0%" in o.reason
    assert o.current["judgeFailed"] / (o.current["judgeFailed"] + o.current["n"]) < 0.05  # by count: under


def test_missing_evidence_past_tolerance_is_inconclusive(engine: Any, example_trace: dict[str, Any]) -> None:
    r1, r2 = two_releases(engine, example_trace)
    score(engine, "r1", r1, passing)
    score(engine, "r2", r2, lambda i: ("missing_evidence", None) if i % 8 == 0 else passing(i))
    (o,) = run_gates(engine, [gate()], "r2", baseline="r1", dry_run=True).outcomes
    assert o.decision == "inconclusive"
    assert o.reason == "missing_evidence 12.5% (1/p-weighted) of the current arm exceeds 5.0%"


def test_the_release_sample_decides_where_windows_of_traffic_could_not(engine: Any,
                                                                      example_trace: dict[str, Any]) -> None:  # fmt: skip
    """A 10% sample of 2,000 traces per release: 200 evaluations, 50 per window of 500."""
    r1, r2 = two_releases(engine, example_trace)
    score(engine, "r1", r1[::10], passing, probability=lambda i: 0.1)
    score(engine, "r2", r2[::10], lambda i: ("scored", i % 5 != 0), probability=lambda i: 0.1)  # 2% -> 20%
    result = run_gates(engine, [gate(min_samples=150)], "r2", baseline="r1", dry_run=True)
    (o,) = result.outcomes
    assert (result.decision, o.design) == ("block", "sample"), o.reason
    assert [round(w.rate, 2) for w in o.windows] == [0.2, 0.2] and o.family_size == 1


def test_an_unknown_evaluator_is_a_usage_error_naming_file_and_line(tmp_path: Path) -> None:
    spec = tmp_path / "typo.yaml"
    spec.write_text("id: typo\ndescription: a typo\nmetric:\n  evaluator: answer_corectness\n")
    with pytest.raises(ConfigError) as raised:
        load_gates(spec, None, {"answer_correctness", "tool_grounding"})
    assert str(raised.value).startswith(f"{spec}:4 metric.evaluator: unknown evaluator 'answer_corectness'")
    env = {**os.environ, "TRACEJURY_RUBRICS_DIR": str(ROOT / "rubrics"),
           "TRACEJURY_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}"}  # fmt: skip
    exe = str(Path(sys.executable).with_name("tracejury"))
    result = subprocess.run([exe, "gate", "run", "--release", "r2", "--gates", str(spec)], env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr  # one line
    assert f"{spec}:4 metric.evaluator: unknown evaluator 'answer_corectness'" in result.stderr


def test_sampled_and_scan_runs_replay_to_the_same_decisions(engine: Any, example_trace: dict[str, Any]) -> None:
    from tracejury.store.gates import load_run
    from workers.reducer import replay

    r1, r2 = two_releases(engine, example_trace)
    score(engine, "r1", r1[::4], passing, probability=lambda i: 0.25)
    score(engine, "r2", r2[::4], lambda i: ("scored", i % 5 != 0), probability=lambda i: 0.25)
    scan = gate(id="slices", scan={"pairs": True}, min_samples=100)
    result = run_gates(engine, [gate(min_samples=150), scan], "r2", baseline="r1", dimensions=("model", "rag"))
    assert [o.decision for o in result.outcomes] == ["block", "block"]
    assert result.outcomes[1].slice == "(all)"  # one model, RAG always on: every cell is (all)
    _, audits = load_run(engine, result.run_id)  # type: ignore[arg-type, misc]
    replayed = replay(audits)
    assert [o.as_dict() for o in replayed] == [o.as_dict() for o in result.outcomes]
