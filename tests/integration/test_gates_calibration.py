"""Calibrated gates in a real store: escalation draws the audit and stores its inclusion
probabilities, people label the audit items, and the gate's rate is the judge's corrected
by them — a lenient judge no longer hides a regression; a judge below its agreement floor
makes its rubric's gates inconclusive."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from tests.integration.gate_data import ingest_release, label, score
from tracejury.core.calibration import AuditCells, JudgeSums, ppi
from tracejury.core.gates import GateSpec
from tracejury.store.review import escalate_batch
from tracejury.store.tables import ReviewItem
from workers.reducer import replay, run_gates

BASE = {
    "id": "answer_correctness", "metric": {"evaluator": "answer_correctness"}, "min_samples": 200,
    "margin": {"absolute": 0.01, "relative": 0.2}, "hysteresis": {"windows": 1, "window": {"traces": 3000}},
}  # fmt: skip
JUDGE_ONLY = GateSpec.model_validate(BASE)
CALIBRATED = GateSpec.model_validate({**BASE, "id": "answer_correctness_ppi",
                                      "calibration": {"method": "ppi", "min_labels": 30}})  # fmt: skip
AGREEMENT = GateSpec.model_validate({"id": "answer_correctness_judge", "metric": {"judge_agreement": "answer_correctness"},
                                     "floor": {"kappa": 0.5}, "min_samples": 30})  # fmt: skip


@dataclass(frozen=True)
class Policy:
    confidence_below: float | None = None
    on_sample_disagreement: bool = False
    on_checker_disagreement: tuple[str, ...] = ()
    high_risk: bool = False
    audit_rate: float = 0.1
    max_items_per_batch: int | None = None
    max_items_per_day: int | None = None


@dataclass(frozen=True)
class Rubric:
    id: str = "answer_correctness"
    version: str = "1"
    escalation: Policy = Policy()


def _release(engine: Any, example: dict[str, Any], name: str, day: int, true_fail: int) -> list[Any]:
    """3,000 traces; truly failing: i % 100 < true_fail; the judge fails only i % 100 < 3 (a
    lenient judge: it misses every failure beyond those). Escalation audits 10%, and a
    person labels every audit item with the truth. Returns the audit items."""
    ids = ingest_release(engine, example, name, day, 3000, models=1, tie=1, seed=day)
    batch = score(engine, name, ids, lambda i: ("scored", i % 100 >= 3))
    escalate_batch(engine, batch, [Rubric()])
    with engine.connect() as conn:
        items = conn.execute(select(ReviewItem.__table__).where(ReviewItem.__table__.c.release_id == name)).all()
    index = {t: i for i, t in enumerate(ids)}
    for item in items:
        label(engine, item.trace_id, index[item.trace_id] % 100 >= true_fail, item_id=item.id)
    return items


@pytest.fixture()
def releases(engine: Any, example_trace: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    return _release(engine, example_trace, "r1", 10, 6), _release(engine, example_trace, "r2", 20, 12)


def test_audit_items_carry_their_inclusion_probability(releases: tuple[list[Any], list[Any]]) -> None:
    items = releases[1]
    assert 240 <= len(items) <= 360  # ~10% of 3,000, drawn by hash
    assert all(i.reasons == '["audit"]' and i.audit_rate == 0.1 for i in items)
    assert all(i.inclusion_p == pytest.approx(0.1) for i in items)  # every trace judged: batch p 1


def test_a_lenient_judge_no_longer_hides_the_regression(engine: Any, releases: tuple[list[Any], list[Any]]) -> None:
    run = run_gates(engine, [JUDGE_ONLY, CALIBRATED], "r2", baseline="r1", dry_run=True)
    plain, calibrated = sorted(run.outcomes, key=lambda o: o.gate)
    assert plain.decision == "pass"  # the judge sees 3% in both releases
    assert calibrated.decision == "block", calibrated.reason
    cur = calibrated.current
    assert cur["judgeRate"] == pytest.approx(0.03)
    assert cur["calibration"]["method"] == "ppi" and cur["calibration"]["labelled"] == len(releases[1])
    assert cur["calibration"]["strata"] == "group"
    # the stored cells give the same estimate as the PPI of the labels by hand
    truth_fail = [int(i.trace_id.split("_")[1]) % 100 < 12 for i in releases[1]]
    judge_fail = [int(i.trace_id.split("_")[1]) % 100 < 3 for i in releases[1]]
    cells = AuditCells.of([(g, h, 10.0) for g, h in zip(judge_fail, truth_fail, strict=True)])
    expected = ppi(JudgeSums(3000, 3000.0, 90.0, 3000.0, 90.0), cells)
    assert cur["rate"] == pytest.approx(expected.rate)
    assert abs(cur["rate"] - 0.12) < 0.04


def test_judge_below_its_agreement_floor_makes_its_gates_inconclusive(
    engine: Any, releases: tuple[list[Any], list[Any]]
) -> None:
    run = run_gates(engine, [AGREEMENT, CALIBRATED, JUDGE_ONLY], "r2", baseline="r1")
    by_gate = {o.gate: o for o in run.outcomes}
    agreement = by_gate["answer_correctness_judge"]
    assert agreement.decision == "inconclusive" and "kappa" in agreement.reason
    assert agreement.current["kappa"] < 0.5 and agreement.current["n"] == len(releases[1])
    assert by_gate["answer_correctness"].decision == "inconclusive", by_gate["answer_correctness"].reason
    assert "below its agreement floor" in by_gate["answer_correctness"].reason
    # the calibrated gate's rate was corrected by people: its decision stands, with a note
    calibrated = by_gate["answer_correctness_ppi"]
    assert calibrated.decision == "block" and any("decision stands" in n for n in calibrated.notes)
    assert run.decision == "block"  # the calibrated gate blocks; the judge-only one cannot say
    # the baseline release's judge is above the floor: its run stands
    (base,) = run_gates(engine, [AGREEMENT], "r1", dry_run=True).outcomes
    assert base.decision == "pass" and base.current["kappa"] >= 0.5
    from tracejury.store.gates import load_run

    _, audits = load_run(engine, run.run_id)
    key = lambda o: (o.gate, o.segment)  # noqa: E731
    assert [o.as_dict() for o in sorted(replay(audits), key=key)] == [o.as_dict() for o in sorted(run.outcomes, key=key)]


def test_audit_labels_measure_the_judge_and_do_not_replace_its_verdicts(
    engine: Any, releases: tuple[list[Any], list[Any]]
) -> None:
    (o,) = run_gates(engine, [JUDGE_ONLY], "r2", baseline="r1", dry_run=True).outcomes
    assert o.current["humanLabels"] == 0 and o.current["failures"] == 90


def test_review_plan_says_how_many_audit_labels_a_width_needs(
    engine: Any, releases: tuple[list[Any], list[Any]]
) -> None:
    from workers.planning import audit_plan

    plan = audit_plan(engine, "answer_correctness", "r2", width=0.04, disagreement=0.05, audit_rate=0.1)
    assert plan["source"] == "labels" and plan["labelled"] == len(releases[1]) and plan["scored"] == 3000
    # the labels measured: the judge misses 9 of 100 traces, so ~0.08 variance per label;
    # a 4-point 95% interval needs (0.04 / 3.92)² ≈ 1.04e-4 of variance: ~800 labels
    assert 600 <= plan["labelsNeeded"] <= 1000
    assert plan["auditRate"] == pytest.approx(plan["labelsNeeded"] / 3000)
    # and with the labels it has, the calibrated interval is about as wide as the plan says
    wide = audit_plan(engine, "answer_correctness", "r2", width=0.08, disagreement=0.05)
    assert wide["labelsNeeded"] < plan["labelsNeeded"] / 3
    assert audit_plan(engine, "answer_correctness", "r2", width=0.001, disagreement=0.05)["labelsNeeded"] is None


def test_audit_agreement_per_window_and_weighted(engine: Any, releases: tuple[list[Any], list[Any]]) -> None:
    from tracejury.core.agreement import agreement
    from tracejury.store.agreement import labelled_pairs

    (report,) = agreement(labelled_pairs(engine, rubric="answer_correctness"), window="day")
    audit = report["audit"]
    assert audit["n"] == len(releases[0]) + len(releases[1])
    # the judge passed every failure past the first 3 of each 100: r1 misses half, r2 three quarters
    assert 0.55 < audit["failToPass"] < 0.8 and audit["passToFail"] == 0.0
    assert len(audit["windows"]) == 1  # both batches judged today
