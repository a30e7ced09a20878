"""``rank_moves`` weighs sampled verdicts by 1/p (Horvitz–Thompson, Kish's effective n), as
gates do; rates over every trace (weight 1) rank exactly as counts."""

from __future__ import annotations

from tracejury.core.diff import rank_moves, unweighted
from tracejury.core.gates import Arm
from tracejury.core.stats import newcombe_diff, one_sided_p


def test_unweighted_rates_rank_by_their_counts() -> None:
    (move,) = rank_moves([("format_invalid_rate", "rag=off", unweighted(18, 9000), unweighted(41, 9000))])
    assert move.p_value == one_sided_p(41, 9000, 18, 9000, 0.0)
    assert move.interval == newcombe_diff(41, 9000, 18, 9000, 0.05)
    assert (move.direction, move.baseline, move.current) == ("up", (18, 9000), (41, 9000))
    assert move.delta == 41 / 9000 - 18 / 9000


def test_oversampled_failures_are_not_a_move() -> None:
    # 5% fail in both releases; the current one scored every failure (p = 1) but only a
    # quarter of the passes (p = 0.25, weight 4): 100 failed of 575 verdicts
    base = unweighted(100, 2000)
    cur = Arm(100, 575, 100.0, 100 + 475 * 4.0, 100 + 475 * 16.0)
    (move,) = rank_moves([("answer_correctness fail rate", "", base, cur)])
    assert abs(move.delta) < 1e-12 and move.p_value > 0.3
    assert (move.baseline_rate, move.current_rate) == (0.05, 0.05)
    (naive,) = rank_moves([("answer_correctness fail rate", "", base, unweighted(100, 575))])
    assert naive.direction == "up" and naive.p_value < 1e-10  # what counting verdicts said


def test_weights_cost_evidence_kish() -> None:
    # the same rates, but the current arm's weights vary: fewer effective observations
    base = unweighted(100, 2000)
    even = Arm(200, 2000, 200.0, 2000.0, 2000.0)
    uneven = Arm(200, 2000, 200.0, 2000.0, 2000.0 * 4)  # Kish n = 500
    (a,) = rank_moves([("x", "", base, even)])
    (b,) = rank_moves([("x", "", base, uneven)])
    assert a.delta == b.delta and a.p_value < b.p_value
