"""Calibrated rates (PPI++ for a nested audit): a hand computation, the ppi-python
reference implementation on fixed vectors, weights, and gates that use them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tracejury.core.calibration import AuditCells, JudgeSums, ppi
from tracejury.core.errors import ConfigError
from tracejury.core.gates import Arm, GateSpec, SegmentInputs, WindowArm, add_arms, decide_family, plain


def judge(g: np.ndarray, w: np.ndarray | None = None) -> JudgeSums:
    w = np.ones(len(g)) if w is None else w
    return JudgeSums(len(g), float(w.sum()), float((w * g).sum()), float((w * w).sum()), float((w * w * g).sum()))


def test_hand_computed_example() -> None:
    # S: 10 verdicts, 2 failed; A: 4 labels (g, h) = (1,1), (0,1), (0,0), (0,0); λ = 1 (plain PPI)
    cells = AuditCells.of([(True, True, 1.0), (False, True, 1.0), (False, False, 1.0), (False, False, 1.0)])
    c = ppi(JudgeSums(10, 10.0, 2.0, 10.0, 2.0), cells, lam=1.0, pseudo=0)
    assert c.judge_rate == 0.2 and c.human_rate == 0.5
    assert c.estimate == pytest.approx(0.2 + 0.25)  # G + mean(h − g)
    # V = V_S[g] + 2C + V_A[r] = 0.2·0.8/10 + 2·(0.4 · −0.0625/4) + 0.25·0.75/4
    assert c.variance == pytest.approx(0.016 - 0.0125 + 0.046875)
    assert c.labelled == 4 and c.sample_n == 10


def test_lambda_zero_is_the_human_only_estimate() -> None:
    cells = AuditCells.of([(True, True, 1.0), (False, True, 1.0), (False, False, 1.0), (False, False, 1.0)])
    c = ppi(JudgeSums(10, 10.0, 2.0, 10.0, 2.0), cells, lam=0.0, pseudo=0)
    assert c.estimate == pytest.approx(0.5)
    assert c.variance == pytest.approx(0.5 * 0.5 / 4)


def _vectors(seed: int = 3, n: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A judge that misses half the failures (true rate 10%) and an audit of about a quarter."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.1
    g = (truth & (rng.random(n) < 0.5)) | (~truth & (rng.random(n) < 0.02))
    audited = rng.random(n) < 0.25
    return truth.astype(float), g.astype(float), audited


@pytest.mark.parametrize("lam", [1.0, 0.3])
def test_point_estimate_matches_ppi_python(lam: float) -> None:
    import ppi_py
    truth, g, audited = _vectors()
    h, g_a = truth[audited], g[audited]
    cells = AuditCells.of([(bool(a), bool(b), 1.0) for a, b in zip(g_a, h, strict=True)])
    ours = ppi(judge(g), cells, lam=lam)
    ref = ppi_py.ppi_mean_pointestimate(h, g_a, g, lam=lam)
    assert ours.estimate == pytest.approx(float(np.ravel(ref)[0]), abs=1e-12)


def test_interval_matches_ppi_python_where_the_designs_agree() -> None:
    """ppi-python treats the labelled set as independent of the unlabelled one; ours is nested
    in it, which adds the covariance term 2λC. At λ = the audit's regression slope C is 0 and
    both intervals are the same."""
    import ppi_py
    truth, g, audited = _vectors(seed=11)
    h, g_a = truth[audited], g[audited]
    cells = AuditCells.of([(bool(a), bool(b), 1.0) for a, b in zip(g_a, h, strict=True)])
    slope = float(np.cov(g_a, h, ddof=0)[0, 1] / np.var(g_a))
    ours = ppi(judge(g), cells, lam=slope, pseudo=0)
    lo, hi = ppi_py.ppi_mean_ci(h, g_a, g, alpha=0.05, lam=slope)
    assert ours.interval() == pytest.approx((float(np.ravel(lo)[0]), float(np.ravel(hi)[0])), abs=1e-9)


def test_power_tuning_never_worse_than_plain_ppi_or_labels_alone() -> None:
    truth, g, audited = _vectors(seed=5)
    cells = AuditCells.of([(bool(a), bool(b), 1.0) for a, b in zip(g[audited], truth[audited], strict=True)])
    tuned = ppi(judge(g), cells)
    assert 0.0 <= tuned.lam <= 1.0
    assert tuned.variance <= ppi(judge(g), cells, lam=1.0).variance + 1e-15
    assert tuned.variance <= ppi(judge(g), cells, lam=0.0).variance + 1e-15


def test_weights_are_honoured() -> None:
    """Each labelled item weighs 1/(batch p × audit p); the estimate is the weighted one."""
    rng = np.random.default_rng(2)
    n = 300
    truth = (rng.random(n) < 0.2).astype(float)
    g = truth * (rng.random(n) < 0.6)
    w = np.where(truth > 0, 1.0, 4.0)  # failures oversampled: weight 1, passes 4
    audited = rng.random(n) < 0.3
    v = w[audited] / 0.3
    cells = AuditCells.of([(bool(a), bool(b), float(x)) for a, b, x in zip(g[audited], truth[audited], v, strict=True)])
    c = ppi(judge(g, w), cells, lam=1.0)
    expected = (w * g).sum() / w.sum() + (v * (truth[audited] - g[audited])).sum() / v.sum()
    assert c.estimate == pytest.approx(expected)
    # a constant audit probability cancels: the same labels at another audit rate, same estimate
    scaled = AuditCells(cells.n, tuple(x * 3 for x in cells.w), tuple(x * 9 for x in cells.w2))  # type: ignore[arg-type]
    assert ppi(judge(g, w), scaled, lam=1.0).estimate == pytest.approx(c.estimate)
    # the unweighted estimate differs: the weights matter
    assert abs(ppi(judge(g), cells, lam=1.0).estimate - c.estimate) > 0.01


def test_labels_without_disagreement_still_carry_their_uncertainty() -> None:
    """41 labels, none disagreeing with a judge that failed nothing among them: without the
    continuity correction the label variance is 0 and the rate looks known exactly."""
    cells = AuditCells.of([(False, False, 1.0)] * 41)
    bare = ppi(JudgeSums(869, 869.0, 5.0, 869.0, 5.0), cells, pseudo=0)
    padded = ppi(JudgeSums(869, 869.0, 5.0, 869.0, 5.0), cells)
    assert padded.estimate == bare.estimate
    assert padded.variance > 10 * bare.variance
    assert padded.effective_n < 200  # of the order of the 41 labels, not the 869 verdicts
    # as wide as about 40 labels can say: the upper bound near the rule of three's 3/41
    assert 0.02 < padded.interval()[1] < 0.12


def test_no_label_is_an_error_not_a_rate() -> None:
    with pytest.raises(ValueError, match="at least one audit label"):
        ppi(JudgeSums(10, 10.0, 2.0, 10.0, 2.0), AuditCells())


# --- gates ---------------------------------------------------------------------------------

GATE = """
id: answer_correctness
metric: {evaluator: answer_correctness}
group_by: [rag]
min_samples: 300
margin: {absolute: 0.01, relative: 0.2}
hysteresis: {windows: 1, window: {traces: 5000}}
"""
CALIBRATED = GateSpec.from_yaml(GATE + "calibration: {method: ppi, min_labels: 30}\n")
JUDGE_ONLY = GateSpec.from_yaml(GATE)
LOW = GateSpec.model_validate({**CALIBRATED.model_dump(), "min_samples": 50})
"""Calibrated, with a need 150 labels reach (300 is out of their reach at these rates)."""


def arm(failures: int, n: int, audit: list[tuple[bool, bool, float]] = ()) -> Arm:  # type: ignore[assignment]
    return Arm(failures, n, float(failures), float(n), float(n), weight_sq_failed=float(failures),
               audit=AuditCells.of(audit))  # fmt: skip


def audit_of(judge_fails: int, missed: int, passes: int) -> list[tuple[bool, bool, float]]:
    """Labels: the judge and the person both fail ``judge_fails``; the judge passed ``missed``
    the person failed; both pass ``passes``."""
    return [(True, True, 1.0)] * judge_fails + [(False, True, 1.0)] * missed + [(False, False, 1.0)] * passes


def sample(name: str, base: Arm, cur: Arm) -> SegmentInputs:
    return SegmentInputs(name, base, (WindowArm(0, "w0", "", cur),), cur)


def test_lenient_judge_hides_a_regression_that_calibration_finds() -> None:
    # truth: 6% → 12% on 3,000 each; the judge catches half the baseline's failures (3%) and misses
    # the new kind in the current release (3.3%), and each arm's 300 audit labels say so
    base = arm(90, 3000, audit_of(8, 10, 282))
    cur = arm(100, 3000, audit_of(10, 26, 264))  # the judge's 3.3%: within the margin of 3% + 1 pt
    (plain_out,) = decide_family(JUDGE_ONLY, [sample("rag=on", base, cur)])
    assert plain_out.decision == "pass"
    (cal,) = decide_family(CALIBRATED, [sample("rag=on", base, cur)])
    assert cal.decision == "block", cal.reason
    assert cal.current["calibration"]["method"] == "ppi" and cal.current["calibration"]["labelled"] == 300
    assert cal.current["rate"] > cal.current["judgeRate"]
    assert any(n.startswith("calibration: ppi") for n in cal.notes)


def test_group_without_labels_borrows_the_arm_pooled_correction() -> None:
    labelled = sample("rag=on", arm(90, 3000, audit_of(4, 5, 141)), arm(90, 3000, audit_of(4, 5, 141)))
    bare = sample("rag=off", arm(60, 2000), arm(60, 2000))
    on, off = decide_family(LOW, [labelled, bare])
    assert on.current["calibration"]["strata"] == "group"
    assert off.current["calibration"]["strata"] == "pooled"
    assert off.current["calibration"]["labelled"] == 150 and off.current["rate"] > off.current["judgeRate"]


def test_too_few_labels_is_judge_only_with_a_note_for_both_arms() -> None:
    base = arm(90, 3000, audit_of(4, 5, 141))
    cur = arm(90, 3000, audit_of(1, 1, 10))  # 12 labels < 30
    (out,) = decide_family(CALIBRATED, [sample("rag=on", base, cur)])
    assert out.current["calibration"] == {"method": "none", "labelled": 12}
    assert out.baseline["calibration"]["method"] == "none"  # never one arm calibrated against one not
    assert out.current["rate"] == out.current["judgeRate"]
    assert any("calibration: none" in n and "current 12" in n for n in out.notes)


def test_labels_too_few_to_decide_leave_the_gate_judge_only_with_a_note() -> None:
    """Calibrated arms that cannot reach the gate's need would make it undecidable forever:
    both arms stay judge-only (the judge's rate does decide), and the note says why."""
    strict = GateSpec.model_validate({**CALIBRATED.model_dump(), "min_samples": 1000})
    base, cur = arm(90, 3000, audit_of(8, 10, 282)), arm(100, 3000, audit_of(10, 26, 264))
    (out,) = decide_family(strict, [sample("rag=on", base, cur)])
    assert out.current["calibration"]["method"] == "none" and out.current["rate"] == out.current["judgeRate"]
    assert any(n.startswith("calibration: none — the audit labels give an effective n of current") for n in out.notes)
    assert out.decision == "pass"  # on the judge's 3% against 3.3%: what a judge-only gate says


def test_a_relabel_changes_the_calibrated_rate() -> None:
    base = arm(90, 3000, audit_of(4, 5, 141))
    before = decide_family(LOW, [sample("x", base, arm(90, 3000, audit_of(4, 5, 141)))])[0]
    after = decide_family(LOW, [sample("x", base, arm(90, 3000, audit_of(4, 6, 140)))])[0]
    assert after.current["rate"] > before.current["rate"]
    assert after.current["judgeRate"] == before.current["judgeRate"]


def test_audit_cells_add_across_windows_and_replay() -> None:
    from workers.reducer import replay

    a, b = arm(40, 1500, audit_of(2, 3, 70)), arm(50, 1500, audit_of(2, 2, 71))
    assert add_arms(a, b).audit.labelled == 150
    cur = add_arms(a, b)
    inputs = SegmentInputs("rag=on", arm(90, 3000, audit_of(4, 5, 141)),
                           (WindowArm(0, "w0", "w1", a), WindowArm(1, "w1", "", b)), cur)  # fmt: skip
    outcomes = decide_family(CALIBRATED, [inputs])
    audits = [json.loads(json.dumps({"spec": CALIBRATED.model_dump(mode="json"), "inputs": plain(inputs)}))]
    assert [o.as_dict() for o in replay(audits)] == [o.as_dict() for o in outcomes]


def test_calibration_spec() -> None:
    assert GateSpec.from_yaml(GATE + "calibration: ppi\n").calibration.method == "ppi"
    assert JUDGE_ONLY.calibration.method == "none"
    with pytest.raises(ConfigError, match="calibration: ppi goes with metric: evaluator"):
        GateSpec.from_yaml("id: g\nmetric: {signal: format_invalid}\ncalibration: ppi\n")
