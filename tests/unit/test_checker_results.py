"""A checker that returns something that is not a valid result is a ``checker_error`` for that
trace: never a fail verdict, and never an exception that fails the whole chunk."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from judges.checks import CHECKERS, CheckResult, checker
from judges.rubric import Rubric
from tests.unit.test_evaluate import FakeStore, _traces

BAD = "test_bad_result"

RETURNS: dict[str, Any] = {
    "none": None,
    "scored_without_passed": CheckResult("scored"),
    "scored_with_non_bool": CheckResult("scored", "yes"),  # type: ignore[arg-type]
    "unknown_status": CheckResult("maybe", True),  # type: ignore[arg-type]
    "wrong_type": {"status": "scored", "passed": True},
    "a_bool": False,
}


@pytest.fixture
def bad_checker() -> Iterator[dict[str, Any]]:
    """Registers ``test_bad_result`` for the test only; it returns ``box["value"]`` for
    trace ``tr_1`` and a pass for every other trace."""
    box: dict[str, Any] = {}

    @checker(BAD, "1")
    def bad(ev: Any, params: Any) -> Any:
        """Returns whatever the test put in the box for tr_1."""
        return box["value"] if ev.trace_id == "tr_1" else CheckResult.ok("fine")

    try:
        yield box
    finally:
        CHECKERS.pop(BAD, None)


@pytest.mark.parametrize("returned", sorted(RETURNS))
def test_an_invalid_checker_result_is_a_checker_error(
    example_trace: dict[str, Any], bad_checker: dict[str, Any], returned: str
) -> None:
    from workers.pipeline import score_chunk

    bad_checker["value"] = RETURNS[returned]
    rubric = Rubric.from_yaml(f"id: bad\nversion: '1'\ndescription: a bad checker\nchecker: {BAD}\n")
    store = FakeStore(_traces(example_trace, 3), [])
    evaluations = asyncio.run(score_chunk(store.deps(), "b1", list(store.traces), [rubric]))
    by_trace = {e.trace_id: e for e in evaluations}
    bad = by_trace["tr_1"]
    assert (bad.status, bad.failure_kind, bad.label, bad.passed) == ("judge_failed", "checker_error", None, None)
    assert bad.error and "invalid result" in bad.error
    assert [by_trace[t].passed for t in ("tr_0", "tr_2")] == [True, True]  # the chunk is not lost
    assert len(store.saved) == 3


def test_the_registration_was_cleaned_up() -> None:
    assert BAD not in CHECKERS
