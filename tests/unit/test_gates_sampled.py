"""The decision on a release's sample (evaluator metrics), the stricter window rules of
signal gates, family sizes, and scan gates — on aggregated counts, no store."""

from __future__ import annotations

from tracejury.core.gate_plan import needed_n, rate_for_needs
from tracejury.core.gate_scan import decide_scan
from tracejury.core.gates import Arm, GateSpec, SegmentInputs, WindowArm, add_arms, decide_family, run_decision

SIGNAL = GateSpec.model_validate({"id": "fmt", "metric": {"signal": "format_invalid"}, "min_samples": 2000,
                                  "hysteresis": {"windows": 2, "window": {"traces": 9000}}})  # fmt: skip
SAMPLE = GateSpec.model_validate({"id": "ac", "metric": {"evaluator": "answer_correctness"}, "min_samples": 300,
                                  "margin": {"absolute": 0.01},
                                  "hysteresis": {"windows": 2, "window": {"traces": 5000}}})  # fmt: skip


def arm(failures: int, n: int) -> Arm:
    return Arm(failures, n, float(failures), float(n), float(n), weight_sq_failed=float(failures))


def windows(base: Arm, *wins: Arm, name: str = "") -> SegmentInputs:
    return SegmentInputs(name, base, tuple(WindowArm(i, f"w{i}", "", a) for i, a in enumerate(wins)))


def sample(base: Arm, *wins: Arm, name: str = "") -> SegmentInputs:
    total = None
    for a in wins:
        total = add_arms(total, a)
    return SegmentInputs(name, base, tuple(WindowArm(i, f"w{i}", "", a) for i, a in enumerate(wins)), total)


def test_an_unevaluated_window_breaks_a_streak() -> None:
    base, bad, thin = arm(18, 9000), arm(60, 9000), arm(1, 500)
    (o,) = decide_family(SIGNAL, [windows(base, bad, thin, bad)])
    assert (o.decision, o.streak) == ("pass", 1)  # not 2: the thin window sits between the two


def test_the_newest_window_must_be_evaluable() -> None:
    base, bad, thin = arm(18, 9000), arm(60, 9000), arm(1, 500)
    (o,) = decide_family(SIGNAL, [windows(base, arm(18, 9000), arm(18, 9000), thin)])
    assert o.decision == "insufficient_data" and o.reason.startswith("the newest window (w2 on) cannot be evaluated")
    (o,) = decide_family(SIGNAL, [windows(base, bad, bad, thin)])  # no block resting on older windows either
    assert o.decision == "insufficient_data"
    (o,) = decide_family(SIGNAL, [windows(base, bad, arm(0, 0), bad)])  # a gap (hours without traffic)
    assert (o.decision, o.streak) == ("pass", 1)


def test_family_size_counts_the_comparisons_corrected() -> None:
    base = arm(18, 9000)
    outs = decide_family(SIGNAL, [windows(base, base, name="a"), windows(base, base, name="b"),
                                  windows(arm(0, 10), arm(0, 10), name="tiny")])  # fmt: skip
    assert [o.family_size for o in outs] == [2, 2, 0]
    outs = decide_family(SAMPLE, [sample(base, base, base, name="a"), sample(arm(0, 10), arm(0, 5), arm(0, 5))])
    assert [o.family_size for o in outs] == [1, 0]


def test_a_gate_with_nothing_to_decide_is_one_insufficient_outcome_and_no_outcome_is_no_pass() -> None:
    (o,) = decide_family(SAMPLE, [], empty_reason="no evaluations of answer_correctness in r2")
    assert (o.decision, o.reason) == ("insufficient_data", "no evaluations of answer_correctness in r2")
    assert run_decision([]) == "insufficient_data"


def test_one_bad_part_of_the_sample_does_not_block_two_do() -> None:
    base = arm(60, 2000)  # 3%
    ok, bad = arm(15, 500), arm(60, 500)  # 3%, 12%
    (one,) = decide_family(SAMPLE, [sample(base, bad, ok, ok, ok)])
    assert one.decision == "pass" and "not persistent" in one.reason
    assert [w.regression for w in one.windows] == [True, False]
    (two,) = decide_family(SAMPLE, [sample(base, ok, bad, ok, bad)])
    assert two.decision == "block" and len(two.windows) == 2 and all(w.regression for w in two.windows)


def test_the_sample_decides_where_each_window_is_below_min_samples() -> None:
    base = arm(30, 1000)  # 3%
    wins = [arm(18, 200)] * 5  # 9% in windows of 200 evaluations: each below min_samples 300
    (o,) = decide_family(SAMPLE, [sample(base, *wins)])
    assert o.decision == "block" and o.min_samples == 300 and o.current["n"] == 1000


def test_linearization_credits_oversampled_failures() -> None:
    # failures sit on oversampled traces (weight 1), passes on traces of weight 10
    a = Arm(100, 1100, 100.0, 1100.0, 10_100.0, weight_sq_failed=100.0)
    kish = a.weight_sum**2 / a.weight_sq
    assert a.effective_n > 2 * kish and a.effective_n <= a.n


def test_needed_n_matches_the_worked_figure_and_rates_reach_needs() -> None:
    spec = GateSpec.model_validate({**SAMPLE.model_dump(), "margin": {"absolute": 0.01}})
    assert needed_n(spec, 0.03, 0.03, 0.9, family=4) == 2653  # the issue's ~2,600
    rate = rate_for_needs({"a": [1.0] * 900 + [5.0] * 100}, {"a": 300})
    assert rate is not None and 0.2 < rate < 0.3
    assert rate_for_needs({"a": [1.0] * 100}, {"a": 300}) is None


SCAN = GateSpec.model_validate({"id": "s", "metric": {"evaluator": "ac"}, "scan": {"pairs": True}, "min_samples": 100,
                                "margin": {"absolute": 0.01}, "hysteresis": {"windows": 2, "window": {"traces": 10}}})  # fmt: skip


def _keys(rates: dict[str, float]) -> dict[str, SegmentInputs]:
    out = {}
    for key, rate in rates.items():
        base = arm(round(0.02 * 2000), 2000)
        half = arm(round(rate * 1000), 1000)
        out[key] = sample(base, half, half, name=key)
    return out


def test_a_scan_names_the_slice_no_gate_groups_by() -> None:
    rates = {f"rag={r}|trunc={t}|ret={q}": (0.2 if t == "yes" else 0.02)
             for r in ("on", "off") for t in ("yes", "no") for q in ("low", "high")}  # fmt: skip
    outs = decide_scan(SCAN, _keys(rates), ("rag", "trunc", "ret"))
    assert [(o.decision, o.slice) for o in outs] == [("block", "trunc=yes")]
    assert outs[0].family_size == 1 + 6 + 12  # (all), single values, pairs


def test_a_scan_names_a_pair_and_passes_an_unchanged_release() -> None:
    rates = {f"rag={r}|trunc={t}": (0.2 if (r, t) == ("off", "yes") else 0.02) for r in ("on", "off") for t in ("yes", "no")}
    (o,) = decide_scan(SCAN, _keys(rates), ("rag", "trunc"))
    assert (o.decision, o.slice) == ("block", "rag=off|trunc=yes")
    (o,) = decide_scan(SCAN, _keys(dict.fromkeys(rates, 0.02)), ("rag", "trunc"))
    assert o.decision == "pass" and o.slice is None and o.family_size == 9


def test_a_rise_everywhere_is_named_all() -> None:
    rates = {f"rag={r}|trunc={t}": 0.2 for r in ("on", "off") for t in ("yes", "no")}
    (o,) = decide_scan(SCAN, _keys(rates), ("rag", "trunc"))
    assert (o.decision, o.slice) == ("block", "(all)")


def test_a_scan_never_passes_over_a_slice_that_rose_but_cannot_be_decided() -> None:
    rates = {f"rag={r}|trunc={t}": (0.2 if t == "yes" else 0.02) for r in ("on", "off") for t in ("yes", "no")}
    by_key = _keys(rates)
    for key in ("rag=on|trunc=yes", "rag=off|trunc=yes"):  # the slice that rose: its newest window unscored
        s = by_key[key]
        first = s.windows[0].arm
        by_key[key] = sample(s.baseline, first, arm(0, 0), name=key)
    (o,) = decide_scan(SCAN, by_key, ("rag", "trunc"))
    assert (o.decision, o.slice) == ("insufficient_data", "trunc=yes")
    assert o.reason.startswith("trunc=yes rose (p ") and "the newest window (w1 on) holds 0" in o.reason


def test_cells_holding_the_same_traces_are_one_test() -> None:
    rates = {f"rag=on|trunc={t}": 0.02 for t in ("yes", "no")}  # rag is always on: rag=on is (all)
    (o,) = decide_scan(SCAN, _keys(rates), ("rag", "trunc"))
    assert o.decision == "pass" and o.family_size == 3  # (all), trunc=yes, trunc=no


def test_judges_differ_only_in_what_both_arms_recorded() -> None:
    from tracejury.core.gates import _judges_differ

    new = "model=m; endpoint=127.0.0.1:8100; temperature=0.0; samples=1; reported=m-2024"
    old = "model=m; endpoint=?; temperature=0.0; samples=1; reported=?"
    assert not _judges_differ([new], [old])
    assert _judges_differ([new], [new.replace("temperature=0.0", "temperature=0.7")])
    assert _judges_differ([new], [old.replace("model=m", "model=n")])


def test_scan_specs_that_cannot_work_are_refused() -> None:
    import pytest

    from tracejury.core.errors import ConfigError

    for extra in ("cluster: session\n", "interval: wilson\nbaseline: {kind: threshold, value: 0.02}\n"):
        with pytest.raises(ConfigError, match="scan compares slices"):
            GateSpec.from_yaml("id: s\nmetric: {evaluator: ac}\nscan: {pairs: true}\n" + extra)


def test_reused_baseline_windows_are_stated() -> None:
    base, cur = arm(18, 9000), arm(18, 9000)
    wins = tuple(WindowArm(i, f"w{i}", "", cur, base, i % 2) for i in range(4))
    (o,) = decide_family(SIGNAL, [SegmentInputs("", arm(36, 18000), wins)])
    assert "4 current windows reuse 2 baseline window(s) (window k meets baseline window k mod B)" in o.notes
    fresh = tuple(WindowArm(i, f"w{i}", "", cur, arm(18, 9000), i) for i in range(4))
    (o,) = decide_family(SIGNAL, [SegmentInputs("", arm(72, 36000), fresh)])
    assert not any("reuse" in n for n in o.notes)
