"""The review budget (pure): caps filled in order of value, the audit first and still a
probability sample, what the caps left out counted, gate margins ordering each class."""

from __future__ import annotations

import random

import pytest

from judges.rubric import Escalation, Rubric
from tracejury.core.escalation import (
    Budget,
    Candidate,
    Caps,
    GateMargin,
    margin_distance,
    nearest_margin,
    rank_key,
    select_within_budget,
)


def _mixed(n: int, seed: int = 1) -> list[Candidate]:
    """n candidates of two rubrics with every reason, shuffled."""
    rng = random.Random(seed)
    reasons = [("audit",), ("judge_failed",), ("checker_disagrees", "low_confidence"), ("samples_disagree",),
               ("low_confidence",), ("audit", "low_confidence")]  # fmt: skip
    out = []
    for i in range(n):
        r = reasons[i % len(reasons)]
        out.append(Candidate(i, "ac" if i % 2 else "tg", r, audit_key=rng.random() if r[0] == "audit" else None,
                             weight=rng.uniform(1, 20), tiebreak=rng.random()))  # fmt: skip
    rng.shuffle(out)
    return out


def test_the_cap_keeps_audit_items_first_and_counts_what_it_left_out() -> None:
    candidates = _mixed(600)
    audits = [c for c in candidates if c.reasons[0] == "audit"]
    got = select_within_budget(candidates, Budget(overall=Caps(max_items_per_batch=250)))
    assert len(got.chosen) == 250
    assert set(audits) <= set(got.chosen)  # 200 audits fit: every one kept
    classes = [c.reasons[0] for c in got.chosen]
    assert classes[: len(audits)] == ["audit"] * len(audits)  # and filled first
    # then judge failures, then checker disagreement (50 of the 100 left for them)
    assert classes[len(audits) :] == ["judge_failed"] * 50
    # nothing silently dropped: chosen + left out = every candidate, by rubric and reason
    assert len(got.chosen) + sum(got.left_out.values()) == len(candidates)
    assert got.left_out == {("ac", "judge_failed"): 50, ("tg", "checker_disagrees"): 100,
                            ("ac", "samples_disagree"): 100, ("tg", "low_confidence"): 100}  # fmt: skip
    assert got.audit_kept == {"ac": 1.0, "tg": 1.0}  # the whole audit kept


def test_a_cap_smaller_than_the_audit_keeps_a_random_share_of_it() -> None:
    candidates = _mixed(600)
    got = select_within_budget(candidates, Budget(overall=Caps(max_items_per_batch=80)))
    assert {c.reasons[0] for c in got.chosen} == {"audit"}
    # the audit's own random order, across rubrics: the lowest keys, whatever the segment
    for r in ("ac", "tg"):
        kept = [c.audit_key for c in got.chosen if c.rubric_id == r]
        left = [c.audit_key for c in candidates if c.rubric_id == r and c.reasons[0] == "audit" and c not in got.chosen]
        assert max(kept) < min(left) == got.audit_kept[r]  # the threshold: audit_rate × kept is the rate applied
    assert sum(n for (_, reason), n in got.left_out.items() if reason == "audit") == 200 - 80


def test_per_rubric_caps_and_the_overall_cap_both_hold() -> None:
    candidates = _mixed(600)
    budget = Budget(overall=Caps(max_items_per_batch=150), rubrics={"tg": Caps(max_items_per_batch=20)})
    got = select_within_budget(candidates, budget)
    tg = [c for c in got.chosen if c.rubric_id == "tg"]
    assert len(tg) == 20 and len(got.chosen) == 150
    assert all(c.reasons[0] == "audit" for c in tg)
    # a rubric at 0 sends nothing; no caps at all: everything
    assert select_within_budget(candidates, Budget(rubrics={"ac": Caps(0), "tg": Caps(0)})).chosen == ()
    assert len(select_within_budget(candidates, Budget()).chosen) == 600


def test_what_the_batch_and_the_day_already_used_counts() -> None:
    candidates = _mixed(60)
    # a rerun: the batch already enqueued 30 of its 40
    got = select_within_budget(candidates, Budget(overall=Caps(max_items_per_batch=40), batch_used={"ac": 30}))
    assert len(got.chosen) == 10
    # the day: 90 of 100 used by other batches, 5 of them of tg, whose own day cap is 6
    budget = Budget(overall=Caps(max_items_per_day=100), rubrics={"tg": Caps(max_items_per_day=6)},
                    day_used={"ac": 85, "tg": 5})  # fmt: skip
    got = select_within_budget(candidates, budget)
    assert len(got.chosen) == 10 and sum(c.rubric_id == "tg" for c in got.chosen) == 1
    assert sum(got.left_out.values()) == 50


def test_within_a_class_the_segment_nearest_a_gate_margin_comes_first() -> None:
    far = Candidate(1, "ac", ("low_confidence",), gate_distance=0.05, weight=50.0, tiebreak=0.1)
    near = Candidate(2, "ac", ("low_confidence",), gate_distance=0.0, weight=1.0, tiebreak=0.9)
    unknown = Candidate(3, "ac", ("low_confidence",), gate_distance=None, weight=99.0, tiebreak=0.0)
    heavier = Candidate(4, "ac", ("low_confidence",), gate_distance=0.0, weight=5.0, tiebreak=0.95)
    failed = Candidate(5, "ac", ("judge_failed",), gate_distance=None)
    assert sorted([far, near, unknown, heavier, failed], key=rank_key) == [failed, heavier, near, far, unknown]
    got = select_within_budget([far, near, unknown, heavier], Budget(overall=Caps(2)))
    assert got.chosen == (heavier, near) and got.left_out == {("ac", "low_confidence"): 2}


def test_margin_distance_and_the_groups_a_trace_is_in() -> None:
    assert margin_distance((0.0, 0.03), 0.01) == 0.0  # the margin inside: a label can tip it
    assert margin_distance((0.031, 0.058), 0.01) == pytest.approx(0.021)
    assert margin_distance((-0.02, -0.005), 0.01) == pytest.approx(0.015)
    margins = [GateMargin("ac", {"rag": "off"}, 0.02), GateMargin("ac", {}, 0.05),
               GateMargin("ac", {"rag": "on", "tool": "none"}, 0.001), GateMargin("tg", {}, 0.0)]  # fmt: skip
    assert nearest_margin("ac", "model=m|rag=off|tool=none", margins) == 0.02
    assert nearest_margin("ac", "model=m|rag=on|tool=none", margins) == 0.001
    assert nearest_margin("ac", "model=m|rag=on|tool=lookup", margins) == 0.05
    assert nearest_margin("other", "rag=on", margins) is None


def test_caps_are_validated_and_left_out_of_the_fingerprint() -> None:
    base = {"id": "r", "version": "1", "checker": "json_valid", "escalation": {"audit_rate": 0.1}}
    capped = {**base, "escalation": {"audit_rate": 0.1, "max_items_per_batch": 10, "max_items_per_day": 30}}
    one, two = Rubric.model_validate(base), Rubric.model_validate(capped)
    assert two.escalation.max_items_per_batch == 10 and two.escalation.max_items_per_day == 30
    assert one.fingerprint == two.fingerprint  # a cap is how many people review, not what a verdict means
    changed = Rubric.model_validate({**base, "escalation": {"audit_rate": 0.2}})
    assert changed.fingerprint != one.fingerprint
    with pytest.raises(ValueError, match="max_items_per_batch"):
        Escalation(max_items_per_batch=-1)
    assert Caps.from_dict(Caps(3, None).as_dict()) == Caps(3, None)
