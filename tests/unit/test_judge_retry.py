"""The pure retry decisions: which statuses retry, Retry-After parsing, backoff waits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from judges.llm import (
    JudgeProfile,
    RetryDecision,
    decision_for_status,
    is_retryable_status,
    next_wait,
    parse_retry_after,
)

NOW = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
PROFILE = JudgeProfile(name="p", model="m", backoff_initial_s=0.5, backoff_max_s=20)


@pytest.mark.parametrize("code", [408, 409, 425, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses(code: int) -> None:
    assert is_retryable_status(code)


@pytest.mark.parametrize("code", [200, 301, 400, 401, 403, 404, 413, 422, 600])
def test_statuses_not_retried(code: int) -> None:
    assert not is_retryable_status(code)


def test_decision_constructors() -> None:
    assert RetryDecision.no() == RetryDecision("no", None)
    assert not RetryDecision.no().retry
    assert RetryDecision.transient().retry
    assert RetryDecision.transient().kind == "transient"
    limited = RetryDecision.rate_limit(3.0)
    assert limited.retry and limited.kind == "rate_limit" and limited.retry_after == 3.0


def test_decision_for_status() -> None:
    assert decision_for_status(429, 2.0) == RetryDecision.rate_limit(2.0)
    assert decision_for_status(429) == RetryDecision.rate_limit(None)
    assert decision_for_status(503, 1.0) == RetryDecision.transient(1.0)
    assert decision_for_status(500) == RetryDecision.transient()
    assert decision_for_status(400) == RetryDecision.no()
    assert decision_for_status(401, 5.0) == RetryDecision.no()


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1", 1.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("Fri, 20 Nov 2026 12:00:30 GMT", 30.0),
        ("Fri, 20 Nov 2026 11:59:00 GMT", 0.0),  # in the past
        (None, None),
        ("", None),
        ("-3", None),
        ("soon", None),
        ("nan", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


def test_parse_retry_after_uses_the_given_clock() -> None:
    later = NOW + timedelta(seconds=10)
    assert parse_retry_after("Fri, 20 Nov 2026 12:00:30 GMT", later) == 20.0


def test_no_retry_waits_nothing() -> None:
    assert next_wait(RetryDecision.no(), 1, PROFILE, 0.9) == 0.0


def test_backoff_is_exponential_with_full_jitter() -> None:
    caps = [next_wait(RetryDecision.transient(), a, PROFILE, 0.999999) for a in range(1, 6)]
    assert caps == pytest.approx([0.5, 1.0, 2.0, 4.0, 8.0], rel=1e-5)
    assert next_wait(RetryDecision.transient(), 3, PROFILE, 0.0) == 0.0
    assert next_wait(RetryDecision.transient(), 3, PROFILE, 0.5) == pytest.approx(1.0)


def test_backoff_is_capped() -> None:
    assert next_wait(RetryDecision.transient(), 10, PROFILE, 0.999999) == pytest.approx(20.0)
    assert next_wait(RetryDecision.rate_limit(None), 500, PROFILE, 0.5) == pytest.approx(10.0)


def test_retry_after_is_honoured_and_capped() -> None:
    assert next_wait(RetryDecision.rate_limit(3.0), 1, PROFILE, 0.0) == 3.0
    assert next_wait(RetryDecision.rate_limit(3.0), 4, PROFILE, 0.9) == 3.0
    assert next_wait(RetryDecision.rate_limit(3600.0), 1, PROFILE, 0.0) == 20.0
    assert next_wait(RetryDecision.transient(1.5), 2, PROFILE, 0.0) == 1.5


def test_rate_limit_without_retry_after_backs_off() -> None:
    assert next_wait(RetryDecision.rate_limit(None), 2, PROFILE, 0.5) == pytest.approx(0.5)
