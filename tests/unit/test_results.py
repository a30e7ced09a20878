"""Per-segment batch results: weighting by 1/p, and failures kept out of the rate."""

from __future__ import annotations

import pytest

from tracejury.core.results import summarise

K1 = "model=m@1|rag=on|tool=none|trunc=no|ret=high|turns=1|guard=allow"
K2 = "model=m@1|rag=off|tool=none|trunc=no|ret=none|turns=1|guard=allow"


def test_weighted_fail_rate_and_counts() -> None:
    rows = [
        ("ac", K1, "scored", True, 8, 80.0),  # 8 passes, each p = 0.1
        ("ac", K1, "scored", False, 2, 4.0),  # 2 fails, oversampled: p = 0.5
        ("ac", K1, "judge_failed", None, 3, 30.0),
        ("ac", K2, "scored", False, 1, 1.0),
        ("ac", K2, "not_applicable", None, 5, 5.0),
        ("ac", K2, "missing_evidence", None, 2, 2.0),
    ]
    by_rag = {r.segment: r for r in summarise(rows, ["rag"])}
    on = by_rag["rag=on"]
    assert (on.scored, on.failed, on.judge_failed) == (10, 2, 3)
    assert on.fail_rate == pytest.approx(0.2)
    assert on.weighted_fail_rate == pytest.approx(4 / 84)  # far below the naive 20%
    off = by_rag["rag=off"]
    assert (off.scored, off.failed, off.not_applicable, off.missing_evidence) == (1, 1, 5, 2)
    (everything,) = summarise(rows, [])
    assert (everything.segment, everything.scored, everything.judge_failed) == ("", 11, 3)


def test_no_verdicts_no_rate() -> None:
    (r,) = summarise([("ac", K1, "judge_failed", None, 4, 4.0)], [])
    assert r.fail_rate is None and r.weighted_fail_rate is None
