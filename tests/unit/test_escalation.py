"""The escalation policy, reason by reason (pure: no store)."""

from __future__ import annotations

from judges.rubric import Escalation
from tracejury.core.escalation import REASONS, Judgment, audit_draw, escalate, priority

SCORED_PASS = Judgment(1, "scored", passed=True, confidence=0.9)


def _run(policy: Escalation, judgment: Judgment, checkers: dict[str, Judgment] | None = None, trace: str = "t1"):
    return escalate(policy, rubric_id="r", rubric_version="1", trace_id=trace, judgment=judgment, checkers=checkers)


def test_a_confident_agreeing_verdict_is_not_escalated() -> None:
    policy = Escalation(confidence_below=0.7, on_checker_disagreement=["tool_grounding"], high_risk=True)
    agree = {"tool_grounding": Judgment(2, "scored", passed=True)}
    assert _run(policy, SCORED_PASS, agree) is None


def test_low_confidence_below_the_threshold_only() -> None:
    policy = Escalation(confidence_below=0.7)
    low = _run(policy, Judgment(1, "scored", passed=True, confidence=0.55))
    assert low is not None and low.reasons == ("low_confidence",) and low.evaluation_ids == (1,)
    assert _run(policy, Judgment(1, "scored", passed=True, confidence=0.7)) is None  # not below
    assert _run(policy, Judgment(1, "scored", passed=True, confidence=None)) is None  # nothing to compare
    assert _run(Escalation(), Judgment(1, "scored", passed=True, confidence=0.1)) is None  # no threshold


def test_samples_disagree_when_enabled() -> None:
    split = Judgment(1, "scored", passed=False, confidence=0.67, sample_labels=("fail", "pass", "fail"))
    got = _run(Escalation(), split)
    assert got is not None and got.reasons == ("samples_disagree",)
    assert _run(Escalation(on_sample_disagreement=False), split) is None
    unanimous = Judgment(1, "scored", passed=False, sample_labels=("fail", "fail", "fail"))
    assert _run(Escalation(), unanimous) is None


def test_checker_disagrees_records_the_checker_evaluation() -> None:
    policy = Escalation(on_checker_disagreement=["tool_grounding", "json_valid"])
    checkers = {
        "tool_grounding": Judgment(7, "scored", passed=False),
        "json_valid": Judgment(8, "scored", passed=True),  # agrees
        "format": Judgment(9, "scored", passed=False),  # not named by the policy
    }
    got = _run(policy, SCORED_PASS, checkers)
    assert got is not None and got.reasons == ("checker_disagrees",) and got.evaluation_ids == (1, 7)
    # a checker that could not say (n/a, missing, absent) does not disagree
    quiet = {"tool_grounding": Judgment(7, "not_applicable"), "json_valid": Judgment(8, "scored", passed=True)}
    assert _run(policy, SCORED_PASS, quiet) is None
    assert _run(policy, SCORED_PASS, {}) is None


def test_judge_failed_only_on_high_risk_rubrics() -> None:
    failed = Judgment(1, "judge_failed")
    got = _run(Escalation(high_risk=True), failed)
    assert got is not None and got.reasons == ("judge_failed",)
    assert _run(Escalation(high_risk=False, confidence_below=0.9, audit_rate=1.0), failed) is None
    # n/a and missing evidence never escalate, whatever the policy
    for status in ("not_applicable", "missing_evidence"):
        assert _run(Escalation(high_risk=True, audit_rate=1.0, confidence_below=1.0), Judgment(1, status)) is None


def test_audit_is_a_deterministic_share_of_traces() -> None:
    policy = Escalation(audit_rate=0.1)
    ids = [f"tr_{i:05d}" for i in range(20000)]
    picked = [t for t in ids if _run(policy, SCORED_PASS, trace=t) is not None]
    assert 0.09 < len(picked) / len(ids) < 0.11
    again = [t for t in ids if _run(policy, SCORED_PASS, trace=t) is not None]
    assert picked == again  # reruns decide the same
    got = _run(policy, SCORED_PASS, trace=picked[0])
    assert got is not None and got.reasons == ("audit",)
    # another rubric version draws afresh
    assert audit_draw("r", "1", picked[0]) != audit_draw("r", "2", picked[0])
    assert all(0.0 <= audit_draw("r", "1", t) < 1.0 for t in ids[:100])


def test_priority_orders_reasons_by_value_and_counts_extra_ones() -> None:
    order = [priority([r]) for r in REASONS]
    assert order == sorted(order, reverse=True) and len(set(order)) == len(order)
    assert REASONS[0] == "audit"  # the audit share is worth most: it measures the judge
    assert priority(["audit"]) > priority(["judge_failed", "checker_disagrees", "low_confidence"])
    assert priority(["checker_disagrees"]) > priority(["samples_disagree", "low_confidence"])
    assert priority(["samples_disagree", "low_confidence"]) == priority(["samples_disagree"]) + 1
    assert priority([]) == 0
    policy = Escalation(confidence_below=0.7, on_checker_disagreement=["c"], audit_rate=1.0)
    judged = Judgment(1, "scored", passed=True, confidence=0.5, sample_labels=("pass", "fail", "pass"))
    got = _run(policy, judged, {"c": Judgment(2, "scored", passed=False)})
    assert got is not None
    assert got.reasons == ("audit", "checker_disagrees", "samples_disagree", "low_confidence")
    assert got.priority == 50 + 3
