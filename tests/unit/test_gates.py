"""Gate decisions on aggregated counts: the worked example, margins, min samples, judge
failures, Holm across segments, critical tier, versions, replay."""

from __future__ import annotations

import pytest

from tracejury.core.errors import ConfigError
from tracejury.core.gates import (
    Arm,
    GateSpec,
    SegmentInputs,
    WindowArm,
    add_arms,
    decide_family,
    run_decision,
)

SPEC = GateSpec.from_yaml("""
id: format_validity
metric: {signal: format_invalid}
min_samples: 2000
hysteresis: {windows: 2, window: {traces: 9000}}
""")


def arm(failures: int, n: int, *, judge_failed: int = 0, versions: tuple[str, ...] = ()) -> Arm:
    """Unweighted counts (every weight 1)."""
    return Arm(failures, n, float(failures), float(n), float(n), judge_failed, versions,
               weight_sq_failed=float(failures), weight_judge_failed=float(judge_failed))  # fmt: skip


def seg(base: Arm, *windows: Arm, name: str = "") -> SegmentInputs:
    return SegmentInputs(name, base, tuple(WindowArm(i, f"w{i}", f"w{i + 1}", a) for i, a in enumerate(windows)))


def sampled(base: Arm, *windows: Arm, name: str = "") -> SegmentInputs:
    """An evaluator metric's inputs: the windows' evaluations, and their sum as the sample."""
    current = None
    for a in windows:
        current = add_arms(current, a)
    wins = tuple(WindowArm(i, f"w{i}", f"w{i + 1}", a) for i, a in enumerate(windows))
    return SegmentInputs(name, base, wins, current or arm(0, 0))


def decide(spec: GateSpec, *segments: SegmentInputs):  # noqa: ANN201
    return decide_family(spec, list(segments))


def test_worked_example_blocks_after_two_windows_not_one() -> None:
    base = arm(18, 9000)
    (one,) = decide(SPEC, seg(base, arm(41, 9000)))
    assert (one.decision, one.streak) == ("pass", 1)
    assert one.reason == "streak 1 of 2"
    (two,) = decide(SPEC, seg(base, arm(41, 9000), arm(41, 9000)))
    assert (two.decision, two.streak) == ("block", 2)
    assert two.interval[0] > 0 and two.p_value < 0.05
    (broken,) = decide(SPEC, seg(base, arm(41, 9000), arm(18, 9000), arm(41, 9000)))
    assert (broken.decision, broken.streak) == ("pass", 1)  # consecutive, not cumulative


def test_equal_rates_never_block() -> None:
    (o,) = decide(SPEC, seg(arm(18, 9000), *[arm(18, 9000)] * 10))
    assert (o.decision, o.streak) == ("pass", 0)


def test_significant_but_tiny_effect_under_the_margin_passes() -> None:
    spec = GateSpec.model_validate({**SPEC.model_dump(), "margin": {"absolute": 0.01}})
    base = arm(100_000, 1_000_000)  # 10%
    tiny = arm(103_000, 1_000_000)  # 10.3%: highly significant, 0.3 points < 1 point margin
    (o,) = decide(spec, seg(base, tiny, tiny, tiny))
    assert o.decision == "pass"
    spec0 = GateSpec.model_validate({**SPEC.model_dump()})
    assert decide(spec0, seg(base, tiny, tiny))[0].decision == "block"


def test_tiny_samples_are_insufficient_data() -> None:
    spec = GateSpec.model_validate({**SPEC.model_dump(), "min_samples": 100})
    (o,) = decide(spec, seg(arm(1, 20), arm(5, 20), arm(5, 20)))
    assert o.decision == "insufficient_data"
    assert "the newest window (w1 on) cannot be evaluated: needs 100 per arm" in o.reason


def test_min_samples_from_mde_and_power() -> None:
    spec = GateSpec.model_validate({**SPEC.model_dump(),
                                    "min_samples": {"mde": 0.00255, "power": 0.8, "baseline_rate": 0.002}})  # fmt: skip
    assert 5000 < spec.required_samples() < 9000


def test_judge_failures_past_tolerance_are_inconclusive() -> None:
    spec = GateSpec.model_validate({**SPEC.model_dump(), "metric": {"evaluator": "answer_correctness"}})
    ok = arm(18, 9000, judge_failed=100)
    bad = arm(18, 9000, judge_failed=2000)  # 10% of the release's evaluations failed to judge
    assert decide(spec, sampled(ok, ok, ok))[0].decision == "pass"
    (o,) = decide(spec, sampled(ok, ok, bad))
    assert o.decision == "inconclusive" and "judge failures" in o.reason and "current arm" in o.reason


def test_judge_failures_in_the_baseline_arm_count_too() -> None:
    spec = GateSpec.model_validate({**SPEC.model_dump(), "metric": {"evaluator": "answer_correctness"}})
    ok = arm(18, 9000)
    (o,) = decide(spec, sampled(arm(36, 18000, judge_failed=2000), ok, ok))
    assert o.decision == "inconclusive" and "baseline arm" in o.reason


def test_different_rubric_versions_are_inconclusive() -> None:
    spec = GateSpec.model_validate({**SPEC.model_dump(), "metric": {"evaluator": "answer_correctness"}})
    (o,) = decide(
        spec,
        sampled(
            arm(18, 9000, versions=("1",)),
            arm(41, 9000, versions=("2",)),
            arm(41, 9000, versions=("2",)),
        ),
    )
    assert o.decision == "inconclusive" and "versions differ" in o.reason


def test_holm_across_20_segments_changes_a_borderline_decision() -> None:
    spec1 = GateSpec.model_validate({**SPEC.model_dump(), "hysteresis": {"windows": 1, "window": {"traces": 9000}}})
    base = arm(18, 9000)
    borderline = arm(38, 9000)  # one-sided p ≈ 0.005: below 0.05, above 0.05/20
    clean = [seg(base, base, name=f"s{i}") for i in range(19)]
    alone = decide(spec1, seg(base, borderline, name="b"))
    assert alone[0].decision == "block"
    outcomes = decide(spec1, seg(base, borderline, name="b"), *clean)
    assert outcomes[0].decision == "pass" and outcomes[0].family_size == 20
    uncorrected = GateSpec.model_validate({**spec1.model_dump(), "correction": "none"})
    assert decide(uncorrected, seg(base, borderline, name="b"), *clean)[0].decision == "block"


def test_critical_blocks_at_once() -> None:
    spec = GateSpec.model_validate({**SPEC.model_dump(), "critical": {"absolute": 0.01}})
    (o,) = decide(spec, seg(arm(18, 9000), arm(300, 9000)))
    assert o.decision == "block" and o.reason.startswith("critical")
    (o,) = decide(spec, seg(arm(18, 9000), arm(41, 9000)))
    assert o.decision == "pass"  # regressed, but under the critical margin and one window only


def test_decrease_direction_and_threshold_baseline() -> None:
    down = GateSpec.model_validate({**SPEC.model_dump(), "direction": "decrease"})
    assert decide(down, seg(arm(41, 9000), arm(18, 9000), arm(18, 9000)))[0].decision == "block"
    assert decide(down, seg(arm(18, 9000), arm(41, 9000), arm(41, 9000)))[0].decision == "pass"
    single = GateSpec.model_validate({**SPEC.model_dump(), "interval": "wilson",
                                      "baseline": {"kind": "threshold", "value": 0.002}})  # fmt: skip
    # a single-rate gate: 41/9000 (0.46%) against a fixed 0.2%; the baseline arm is unused
    assert decide(single, seg(arm(0, 0), arm(41, 9000), arm(41, 9000)))[0].decision == "block"
    assert decide(single, seg(arm(0, 0), arm(18, 9000), arm(18, 9000)))[0].decision == "pass"


def test_a_huge_regression_blocks_instead_of_crashing() -> None:
    # p-values below ~1e-150 once crashed both p-value inversions (see test_stats)
    single = GateSpec.model_validate({**SPEC.model_dump(), "interval": "wilson",
                                      "baseline": {"kind": "threshold", "value": 0.002}})  # fmt: skip
    for spec, base in ((SPEC, arm(18, 9000)), (single, arm(0, 0))):
        (o,) = decide(spec, seg(base, arm(855, 9000), arm(855, 9000)))
        assert o.decision == "block" and 0 < o.p_value < 1e-100


def test_run_decision_order() -> None:
    base = arm(18, 9000)
    outcomes = decide(SPEC, seg(base, arm(41, 9000), arm(41, 9000), name="a"), seg(base, base, name="b"))
    assert run_decision(outcomes) == "block"
    assert run_decision(outcomes[1:]) == "pass"


def test_replay_from_json_audits_reproduces_decisions() -> None:
    import json
    from dataclasses import asdict

    from workers.reducer import replay

    windows = (WindowArm(0, "", "", arm(41, 9000), arm(18, 9000)), WindowArm(1, "", "", arm(41, 9000), arm(17, 9000)))
    segments = [SegmentInputs("a", arm(35, 18000), windows), seg(arm(18, 9000), arm(20, 9000), name="b")]
    outcomes = decide(SPEC, *segments)
    audits = [json.loads(json.dumps({"spec": SPEC.model_dump(mode="json"), "inputs": asdict(s)})) for s in segments]
    assert [o.as_dict() for o in replay(audits)] == [o.as_dict() for o in outcomes]
    assert [o.decision for o in outcomes] == ["block", "pass"]


def test_audit_dicts_equal_dataclasses_asdict() -> None:
    from dataclasses import asdict

    from tracejury.core.gates import plain

    windows = (WindowArm(0, "a", "b", arm(41, 9000, versions=("1",)), arm(18, 9000)), WindowArm(1, "b", "", arm(3, 9)))
    inputs = SegmentInputs("rag=on", arm(35, 18000, judge_failed=2, versions=("1", "2")), windows)
    (outcome,) = decide(SPEC, inputs)
    assert plain(inputs) == asdict(inputs) and plain(outcome) == asdict(outcome)
    assert plain(outcome)["baseline"] is not outcome.baseline  # a copy, as asdict's


def test_spec_errors() -> None:
    with pytest.raises(ConfigError, match="exactly one of evaluator"):
        GateSpec.from_yaml("id: g\nmetric: {}\n")
    with pytest.raises(ConfigError, match="bound_ms goes with"):
        GateSpec.from_yaml("id: g\nmetric: {signal: latency_over}\n")
    with pytest.raises(ConfigError, match="baseline kind release needs 'release'"):
        GateSpec.from_yaml("id: g\nmetric: {signal: truncation}\nbaseline: {kind: release}\n")
