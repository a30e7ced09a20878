"""Pure retry decisions for judge calls: which failures to retry, and how long to wait.

Nothing here does I/O or reads a clock: the client passes the status, the ``Retry-After``
header, the current time and a jitter draw, and tenacity (in ``client.py``) only executes
what these functions decide.

    status 408, 409, 425, 5xx, timeout, connection error → transient (exponential backoff)
    status 429                                          → rate limit (Retry-After, else backoff)
    any other status, or a reply that does not parse    → no retry
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

from judges.llm.profiles import JudgeProfile

__all__ = [
    "RetryDecision",
    "decision_for_status",
    "is_retryable_status",
    "next_wait",
    "parse_retry_after",
]

_RETRYABLE_4XX = frozenset({408, 409, 425, 429})


def is_retryable_status(code: int) -> bool:
    """Whether an HTTP status is worth another attempt: 408, 409, 425, 429 and every 5xx."""
    return code in _RETRYABLE_4XX or 500 <= code <= 599


@dataclass(frozen=True)
class RetryDecision:
    """Whether to try again, and whether the endpoint named a wait (``Retry-After``)."""

    kind: Literal["no", "transient", "rate_limit"]
    """``no``: give up now; ``transient``: back off and retry; ``rate_limit``: the endpoint
    throttled us (429)."""
    retry_after: float | None = None
    """Seconds the endpoint asked us to wait, when it said."""

    @property
    def retry(self) -> bool:
        """True unless the decision is ``no``."""
        return self.kind != "no"

    @classmethod
    def no(cls) -> RetryDecision:
        """Do not retry (a 4xx other than 408/409/425/429, a reply that does not parse)."""
        return cls("no")

    @classmethod
    def transient(cls, retry_after: float | None = None) -> RetryDecision:
        """Retry after a backoff (5xx, 408, timeouts, broken connections)."""
        return cls("transient", retry_after)

    @classmethod
    def rate_limit(cls, retry_after: float | None) -> RetryDecision:
        """Retry after ``retry_after`` seconds if the endpoint said, else after a backoff."""
        return cls("rate_limit", retry_after)


def parse_retry_after(header_value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP-date.

    ``now`` (timezone-aware) is the current time, for the date form. A date in the past gives
    0; a missing, negative or unreadable header gives None.
    """
    if header_value is None:
        return None
    text = header_value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def decision_for_status(code: int, retry_after: float | None = None) -> RetryDecision:
    """The decision for an HTTP error status, given its parsed ``Retry-After`` (if any)."""
    if code == 429:
        return RetryDecision.rate_limit(retry_after)
    if is_retryable_status(code):
        return RetryDecision.transient(retry_after)
    return RetryDecision.no()


def next_wait(decision: RetryDecision, attempt: int, profile: JudgeProfile, jitter: float) -> float:
    """Seconds to wait after attempt number ``attempt`` (1-based) failed with ``decision``.

    A ``Retry-After`` is honoured as given, capped at ``profile.backoff_max_s``. Otherwise it
    is exponential backoff with full jitter: ``jitter × min(max, initial × 2^(attempt-1))``,
    where ``jitter`` is a draw in [0, 1).
    """
    if not decision.retry:
        return 0.0
    if decision.retry_after is not None:
        return min(decision.retry_after, profile.backoff_max_s)
    exponent = min(attempt - 1, 62)  # keeps 2**exponent finite for absurd attempt counts
    cap = min(profile.backoff_max_s, profile.backoff_initial_s * 2.0**exponent)
    return min(max(jitter, 0.0), 1.0) * cap
