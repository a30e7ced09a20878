"""Calibrated rates in batch results and diff: which labels a group uses (its own, its
evaluator's pool, none), both arms of a move or neither, and a calibrated move's evidence."""

from __future__ import annotations

import pytest

from tracejury.core.calibration import AuditCells, ppi
from tracejury.core.diff import calibrate_pair, rank_moves
from tracejury.core.gates import Arm
from tracejury.core.results import MIN_LABELS, group_arms, label_source, pooled_labels, summarise, with_calibration

K_ON = "model=m@1|rag=on|tool=none|trunc=no|ret=high|turns=1|guard=allow"
K_OFF = "model=m@1|rag=off|tool=none|trunc=no|ret=none|turns=1|guard=allow"


def _audit(agree: int, missed: int, v: float = 4.0) -> AuditCells:
    """``agree`` labels equal to a passing judge's (alternating pass and fail agreement) and
    ``missed`` failures the judge passed."""
    items = [(i % 2 == 0, i % 2 == 0, v) for i in range(agree)] + [(False, True, v)] * missed
    return AuditCells.of(items)


def _arm(failures: int, n: int, audit: AuditCells) -> Arm:
    return Arm(failures, n, float(failures), float(n), float(n), weight_sq_failed=float(failures), audit=audit)


def test_min_labels_is_the_gate_default() -> None:
    from tracejury.core.gate_spec import Calibration

    assert MIN_LABELS == Calibration().min_labels == 30


def test_a_group_uses_its_own_labels_else_the_pool_else_none() -> None:
    own = _arm(10, 100, _audit(30, 5))
    few = _arm(10, 100, _audit(4, 1))
    pool = (own.audit + few.audit, 200)
    assert label_source(own, pool) == (own.audit, 100, "group")
    assert label_source(few, pool) == (pool[0], 200, "pooled")
    assert label_source(few, (few.audit, 100)) is None
    assert label_source(_arm(0, 0, _audit(40, 0)), pool) is None  # no verdicts: nothing to calibrate
    # enough labels, but people failed fewer than MIN_FAILED_LABELS of them: the pool's
    assert label_source(few, pool, min_labels=5) == (pool[0], 200, "pooled")
    rare = _arm(10, 100, AuditCells.of([(False, False, 1.0)] * 36 + [(False, True, 1.0)] * 4))
    assert label_source(rare, (rare.audit + own.audit, 200)) == (rare.audit + own.audit, 200, "pooled")


def test_batch_results_carry_the_labels_and_the_calibrated_rate() -> None:
    rows = [("ac", K_ON, "scored", True, 90, 90.0), ("ac", K_ON, "scored", False, 10, 10.0),
            ("ac", K_OFF, "scored", True, 95, 95.0), ("ac", K_OFF, "scored", False, 5, 5.0),
            ("cx", K_ON, "scored", True, 10, 10.0)]  # fmt: skip
    on, off = _arm(10, 100, _audit(40, 8)), _arm(5, 100, _audit(3, 2))
    rates = [("ac", K_ON, on), ("ac", K_OFF, off), ("cx", K_ON, _arm(0, 10, AuditCells()))]
    by_group = {(r.evaluator, r.segment): r for r in with_calibration(summarise(rows, ["rag"]), rates, ["rag"])}
    r_on, r_off, r_cx = by_group[("ac", "rag=on")], by_group[("ac", "rag=off")], by_group[("cx", "rag=on")]
    assert (r_on.labelled, r_on.strata) == (48, "group")
    assert r_on.calibrated == ppi(on.judge_sums(), on.audit)
    assert r_on.calibrated.rate > r_on.weighted_fail_rate  # type: ignore[operator]  # the judge missed 8 of 48
    assert (r_off.labelled, r_off.strata) == (5, "pooled")
    assert r_off.calibrated == ppi(off.judge_sums(), on.audit + off.audit, drawn_from=200)
    assert r_cx.calibrated is None and r_cx.labelled == 0
    shape = r_off.as_dict()
    assert shape["labelled"] == 5 and shape["weightedFailRate"] == pytest.approx(0.05)
    cal = shape["calibrated"]
    assert isinstance(cal, dict) and set(cal) == {"rate", "interval95", "labelled", "lambda", "humanRate",
                                                  "judgeRate", "strata"}  # fmt: skip
    assert cal["labelled"] == 53 and cal["strata"] == "pooled" and len(cal["interval95"]) == 2
    assert r_cx.as_dict()["calibrated"] is None


def test_grouping_sums_weights_and_audit_labels() -> None:
    a, b = _arm(10, 100, _audit(4, 1)), _arm(5, 50, _audit(2, 0))
    (whole,) = group_arms([("ac", K_ON, a), ("ac", K_OFF, b)], []).values()
    assert (whole.failures, whole.n, whole.weight_sum, whole.weight_sq_failed) == (15, 150, 150.0, 15.0)
    assert whole.audit == a.audit + b.audit
    assert pooled_labels([("ac", K_ON, a), ("ac", K_OFF, b)]) == {"ac": (a.audit + b.audit, 150)}


def test_a_move_is_calibrated_on_both_arms_or_neither() -> None:
    base, cur = _arm(10, 400, _audit(40, 8)), _arm(12, 400, _audit(40, 16))
    short = _arm(12, 400, _audit(4, 1))
    b, c = calibrate_pair(base, cur, (base.audit, 400), (cur.audit, 400))
    assert b.calibrated is not None and c.calibrated is not None
    assert calibrate_pair(base, short, (base.audit, 400), (short.audit, 400)) == (base, short)
    (move,) = rank_moves([("ac fail rate", "", b, c)])
    assert move.calibrated and move.baseline_rate == b.calibrated.rate and move.current_rate == c.calibrated.rate
    assert (move.judge_baseline_rate, move.judge_current_rate) == (0.025, 0.03)
    # the calibrated move is the bigger one, and its evidence is the calibrated arms' — not
    # the unit-weight counts the judge's arms would give
    (judge_move,) = rank_moves([("ac fail rate", "", base, cur)])
    assert not judge_move.calibrated and judge_move.judge_current_rate == judge_move.current_rate == 0.03
    assert move.delta > judge_move.delta and move.p_value < judge_move.p_value


def test_diff_calibrates_both_arms_from_the_same_kind_of_source() -> None:
    from tracejury.core.diff import calibrate_pair

    own = _arm(10, 100, _audit(30, 5))  # qualifies for its own labels
    few = _arm(10, 100, _audit(4, 1))  # borrows the pool
    pool_base, pool_cur = (own.audit + _audit(30, 5), 200), (few.audit + _audit(30, 5), 200)
    base, cur = calibrate_pair(own, few, pool_base, pool_cur)
    assert (base.strata, cur.strata) == ("pooled", "pooled")
    assert base.calibrated is not None and base.calibrated.labelled == pool_base[0].labelled
    both_own = calibrate_pair(own, own, pool_base, pool_base)
    assert (both_own[0].strata, both_own[1].strata) == ("group", "group")
