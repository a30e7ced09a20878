"""Human labels supersede judge verdicts in gates: where a reviewer labelled a (trace,
evaluator), the gate counts the newest label's verdict instead of the judge's — a judge
failure becomes a counted verdict — while the judge's evaluation stays stored as it was."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select

from tests.integration.gate_data import Verdict, ingest_release, label, score
from tracejury.core.gates import Arm, GateSpec, SegmentInputs, plain
from tracejury.store.gates import gate_inputs
from tracejury.store.tables import EvaluationRow
from workers.reducer import run_gates

GATE = GateSpec.model_validate({
    "id": "answer_correctness", "metric": {"evaluator": "answer_correctness"}, "min_samples": 500,
    "correction": "none", "judge_failure_tolerance": 0.05,
    "hysteresis": {"windows": 2, "window": {"traces": 1000}},
})  # fmt: skip


def _evaluations(engine: Any) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(select(EvaluationRow.__table__).order_by(EvaluationRow.__table__.c.id)).all()


def test_reviewers_relabelling_fails_turns_a_block_into_a_pass(engine: Any, example_trace: dict[str, Any]) -> None:
    r1 = ingest_release(engine, example_trace, "r1", 18, 2000, models=1, tie=1)
    r2 = ingest_release(engine, example_trace, "r2", 20, 2000, models=1, tie=1, seed=1)
    score(engine, "r1", r1, lambda i: ("scored", i % 50 != 0))  # 2% fail
    score(engine, "r2", r2, lambda i: ("scored", i % 20 != 0))  # 5% fail by the judge
    judged = run_gates(engine, [GATE], "r2", baseline="r1", dry_run=True)
    assert judged.decision == "block"
    # the outcome shows the release's whole sample (evaluator metrics decide on it)
    assert judged.outcomes[0].current == {**judged.outcomes[0].current, "failures": 100, "humanLabels": 0}
    stored = _evaluations(engine)

    wrong = [t for i, t in enumerate(r2) if i % 20 == 0 and i % 40 != 0]  # half the judge's fails: 25 per window
    for trace_id in wrong[::2]:
        label(engine, trace_id, False)  # agreed first, then corrected: the newest label counts
    for trace_id in wrong:
        label(engine, trace_id, True, reviewer="bo")
    reviewed = run_gates(engine, [GATE], "r2", baseline="r1", dry_run=True)
    (o,) = reviewed.outcomes
    assert reviewed.decision == "pass", o.reason
    assert (o.current["failures"], o.current["n"], o.current["humanLabels"]) == (50, 2000, 50)
    assert o.baseline["humanLabels"] == 0
    assert _evaluations(engine) == stored  # the judge's verdicts stay as they were

    for trace_id in wrong:
        label(engine, trace_id, False, reviewer="cy")  # a third opinion, appended: fails again
    (again,) = run_gates(engine, [GATE], "r2", baseline="r1", dry_run=True).outcomes
    assert again.decision == "block" and again.current["failures"] == 100 and again.current["humanLabels"] == 50


def test_a_label_turns_a_judge_failure_into_a_counted_verdict(engine: Any, example_trace: dict[str, Any]) -> None:
    r1 = ingest_release(engine, example_trace, "r1", 18, 1000, models=1, tie=1)
    r2 = ingest_release(engine, example_trace, "r2", 20, 1000, models=1, tie=1, seed=1)
    score(engine, "r1", r1, lambda i: ("scored", True))
    score(engine, "r2", r2, lambda i: ("judge_failed", None) if i < 100 else ("scored", True))
    spec = GateSpec.model_validate({**GATE.model_dump(), "hysteresis": {"windows": 1, "window": {"traces": 1000}}})
    (before,) = gate_inputs(engine, spec, "r2", "r1").segments
    assert (before.windows[0].arm.judge_failed, before.windows[0].arm.n) == (100, 900)
    for trace_id in r2[:60]:
        label(engine, trace_id, False)
    label(engine, r2[60], None)  # the newest label has no verdict: the judge's failure stands
    label(engine, r2[0], True, reviewer="bo")  # a relabel of the first
    (after,) = gate_inputs(engine, spec, "r2", "r1").segments
    arm = after.windows[0].arm
    assert (arm.judge_failed, arm.n, arm.failures, arm.human_labels) == (40, 960, 59, 60)
    assert after.baseline.human_labels == 0


@pytest.mark.parametrize("cluster", [None, "session"])
@pytest.mark.parametrize("plan", ["seek", "grouped"])
def test_labels_count_as_if_the_judge_had_said_them(
    engine: Any, example_trace: dict[str, Any], plan: str, cluster: str | None
) -> None:
    """The gate over judge verdicts + labels equals the gate over an evaluator that said
    the labels' verdicts itself ("truth"): same counts, weights, windows and sessions."""
    if plan == "seek" and cluster:
        pytest.skip("the seek plan serves gates without clustering")
    r1 = ingest_release(engine, example_trace, "r1", 18, 600)
    r2 = ingest_release(engine, example_trace, "r2", 20, 900, seed=1)
    statuses = ["scored", "scored", "judge_failed", "scored", "not_applicable", "scored"]
    final: dict[str, bool] = {}  # trace -> the newest label's verdict, where it has one
    for ids in (r1, r2):
        for i, trace_id in enumerate(ids):
            if i % 7 == 0:
                label(engine, trace_id, i % 2 == 0)
                final[trace_id] = i % 2 == 0
            if i % 21 == 0:
                label(engine, trace_id, i % 4 == 0, reviewer="bo")  # relabel: the newest counts
                final[trace_id] = i % 4 == 0
            if i % 49 == 0:
                label(engine, trace_id, None, reviewer="cy")  # newest without a verdict: the judge's
                final.pop(trace_id)

    for release, ids in (("r1", r1), ("r2", r2)):
        sampled = ids[: len(ids) * 5 // 6]  # the rest was not scored: their labels cannot count

        def judge(i: int, ids: list[str] = sampled) -> Verdict:
            status = statuses[i % len(statuses)]
            return status, (i % 5 != 0) if status == "scored" else None

        def truth(i: int, ids: list[str] = sampled) -> Verdict:
            status, passed = judge(i)
            if status in ("scored", "judge_failed") and ids[i] in final:
                return "scored", final[ids[i]]
            return status, passed

        weight = lambda i: (1.0, 0.5, 0.25)[i % 3]  # noqa: E731
        score(engine, release, sampled, truth, evaluator="truth", probability=weight)
        score(engine, release, sampled, judge, probability=weight)
        label(engine, sampled[1], False, evaluator="helpfulness")  # another evaluator's label: not this gate's

    def inputs(evaluator: str) -> list[SegmentInputs]:
        spec = GateSpec.model_validate(
            {
                **GATE.model_dump(),
                "metric": {"evaluator": evaluator},
                "cluster": cluster,
                "group_by": ["model"],
                "hysteresis": {"windows": 1, "window": {"traces": 200}},
            }
        )
        return gate_inputs(engine, spec, "r2", "r1", plan=plan).segments  # type: ignore[arg-type]

    def unlabelled(a: Arm | None) -> Any:
        return comparable(replace(a, human_labels=0)) if a else None

    def comparable(a: Arm | None) -> Any:  # the cluster n sums sessions in another order: last bits
        return plain(replace(a, cluster_n=round(a.cluster_n, 9) if a.cluster_n else None)) if a else None

    labelled, truth_inputs = inputs("answer_correctness"), inputs("truth")
    assert [(s.segment, unlabelled(s.baseline), [(unlabelled(w.arm), unlabelled(w.baseline)) for w in s.windows])
            for s in labelled] == [
           (s.segment, comparable(s.baseline), [(comparable(w.arm), comparable(w.baseline)) for w in s.windows])
            for s in truth_inputs]  # fmt: skip
    used = sum(s.baseline.human_labels for s in labelled) + sum(w.arm.human_labels for s in labelled for w in s.windows)
    assert used > 100
    if cluster:
        assert any(w.arm.cluster_n is not None for s in labelled for w in s.windows)
