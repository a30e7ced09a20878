"""In-process request and token budgets for judge calls (requests/min, tokens/min).

:class:`TokenBucket` is the pure core: a bucket that refills continuously and hands out
*reservations* — taking always succeeds and says how long the caller must wait before using
what it took, so waiting callers are served first come, first served, and a request larger
than the bucket still gets through (after the wait its size implies). The time is passed in,
so tests drive it with a fake clock.

:class:`RateLimiter` wires two buckets to a clock and a sleep. It is the seam for
cross-process limits: anything with ``async acquire(tokens)`` (the :class:`Limiter`
protocol) can replace it — a Redis-backed limiter shared by all workers is a later issue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from judges.llm.profiles import JudgeProfile
from judges.llm.types import JudgeRequest

__all__ = ["BURST_S", "Limiter", "RateLimiter", "TokenBucket", "estimate_tokens"]

BURST_S = 5.0
"""A bucket holds this many seconds of its per-minute budget (the largest burst)."""
COMPLETION_ALLOWANCE = 200
"""Tokens reserved for a judge's reply (a label and a sentence or two)."""


def estimate_tokens(request: JudgeRequest) -> int:
    """Tokens a call will use, estimated before sending: prompt chars ÷ 4 plus a reply."""
    chars = 0
    for message in request.messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(
                len(str(part.get("text", ""))) for part in content if isinstance(part, dict)
            )
    return chars // 4 + 4 * len(request.messages) + COMPLETION_ALLOWANCE


class TokenBucket:
    """A continuously refilling bucket of ``capacity`` units at ``rate`` units per second."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("a token bucket needs a positive rate and capacity")
        self.rate = rate
        """Units added per second."""
        self.capacity = capacity
        """Most units the bucket holds (the largest burst)."""
        self.level = capacity
        """Units available now; negative while reservations are outstanding."""
        self._last = now

    @classmethod
    def per_minute(cls, budget: int, now: float, burst_s: float = BURST_S) -> TokenBucket:
        """A bucket for ``budget`` units per minute holding ``burst_s`` seconds of it."""
        rate = budget / 60.0
        return cls(rate, max(1.0, rate * burst_s), now)

    def reserve(self, amount: float, now: float) -> float:
        """Take ``amount`` units at time ``now``; return the seconds to wait before using them."""
        if now > self._last:
            self.level = min(self.capacity, self.level + (now - self._last) * self.rate)
            self._last = now
        self.level -= amount
        return 0.0 if self.level >= 0 else -self.level / self.rate


class Limiter(Protocol):
    """Anything that can hold a judge call back until its budget allows it."""

    async def acquire(self, tokens: int) -> None:
        """Wait until one request of about ``tokens`` tokens may be sent."""
        ...


class RateLimiter:
    """An in-process requests/min and tokens/min limiter (either may be None = unlimited)."""

    def __init__(
        self,
        requests_per_minute: int | None,
        tokens_per_minute: int | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        now = clock()
        self._requests = (
            TokenBucket.per_minute(requests_per_minute, now) if requests_per_minute else None
        )
        self._tokens = TokenBucket.per_minute(tokens_per_minute, now) if tokens_per_minute else None
        self._clock = clock
        self._sleep = sleep

    @classmethod
    def for_profile(
        cls,
        profile: JudgeProfile,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> RateLimiter:
        """The limiter a profile's ``requests_per_minute`` and ``tokens_per_minute`` ask for."""
        return cls(profile.requests_per_minute, profile.tokens_per_minute, clock=clock, sleep=sleep)

    async def acquire(self, tokens: int) -> None:
        """Reserve one request and ``tokens`` tokens, then sleep until both are available."""
        if self._requests is None and self._tokens is None:
            return
        now = self._clock()
        wait = 0.0
        if self._requests is not None:
            wait = self._requests.reserve(1, now)
        if self._tokens is not None:
            wait = max(wait, self._tokens.reserve(tokens, now))
        if wait > 0:
            await self._sleep(wait)
