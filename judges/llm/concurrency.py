"""Adaptive judge concurrency: how many calls an endpoint may have in flight, learned from it.

:class:`AdaptiveLimit` is the pure core (no clock, no I/O: times are passed in). It is AIMD
with a latency guard, as TCP congestion control and Netflix's concurrency-limits do it:

    every call's outcome ──► overload (429, 503, 504, timeout) ──► cut: limit × backoff
                         │       (at most one cut per window: one burst of 429s is one signal)
                         └─► a reply: its latency joins the window
    a window closes after one round trip (the smoothed latency, at least ``min_window_s``):
        mean latency > tolerance × baseline ──► cut (the endpoint is queueing our calls)
        else, if the window's calls filled the limit (demand wanted more):
            slow start (no cut yet) ──► limit × 2
            afterwards              ──► limit + step, the step growing by one every
                                        ``probe_every`` calm windows (a recovered endpoint
                                        is found again in seconds, not minutes)

The limit stays between ``floor`` and ``cap`` (the profile's ``min_concurrency`` and
``max_concurrency``). Its state is a plain dict (:meth:`AdaptiveLimit.as_dict`), so workers
can share one through Redis (``workers.limits``).

:class:`AdaptiveSlots` holds calls to an :class:`AdaptiveLimit` in one process (the embedded
broker, ``score``, and the fallback while Redis is unreachable): first come, first served.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

__all__ = [
    "OVERLOAD_STATUSES",
    "AdaptiveLimit",
    "AdaptiveSettings",
    "AdaptiveSlots",
    "Concurrency",
    "Signal",
    "signal_for",
]

Signal = Literal["ok", "overload", "none"]
"""What one HTTP attempt says about the endpoint's load: ``ok`` (it answered; its latency
counts), ``overload`` (it pushed back) or ``none`` (nothing either way: a refused request, a
broken connection)."""

OVERLOAD_STATUSES = frozenset({429, 503, 504})
"""Statuses that say "too much": rate limited, unavailable, gateway timeout."""


def signal_for(status: int | None, timed_out: bool) -> Signal:
    """The load signal of one attempt: its HTTP status (None: no reply) and whether it timed out."""
    if timed_out or status in OVERLOAD_STATUSES:
        return "overload"
    if status is None or status >= 300:
        return "none"
    return "ok"


@dataclass(frozen=True)
class AdaptiveSettings:
    """How an :class:`AdaptiveLimit` moves; ``floor == cap`` is a fixed limit."""

    initial: int = 32
    """The limit before anything is known (clamped into [floor, cap])."""
    floor: int = 4
    """The limit never goes below this."""
    cap: int = 1024
    """The limit never goes above this (the profile's ``max_concurrency``)."""
    backoff: float = 0.9
    """A cut multiplies the limit by this."""
    tolerance: float = 3.0
    """A window whose mean latency exceeds this many times the baseline is an overload. Three,
    not the two of Netflix's gradient limiter: an LLM's latency swings with its reply length,
    and at 2 a client whose own CPU is saturated (its loop delays replies) cut a fast endpoint
    from 1,024 to ~650 in flight for ~10% fewer calls/s (BENCHMARKS.md); 429s, 503s and
    timeouts remain the signals that act first."""
    min_window_s: float = 0.05
    """The shortest window (a very fast endpoint still gets a few calls per window)."""
    probe_every: int = 10
    """After a cut, the additive step grows by one every this many calm windows."""
    drift: float = 0.05
    """How fast the latency baseline follows a slower endpoint (fraction per window)."""

    def __post_init__(self) -> None:
        if not 1 <= self.floor <= self.cap:
            raise ValueError(f"adaptive concurrency needs 1 <= floor <= cap, got {self.floor} and {self.cap}")
        if not 0 < self.backoff < 1:
            raise ValueError(f"backoff must be in (0, 1), got {self.backoff}")
        if self.tolerance <= 1:
            raise ValueError(f"tolerance must be > 1, got {self.tolerance}")

    @classmethod
    def fixed(cls, limit: int) -> AdaptiveSettings:
        """A limit that never moves."""
        return cls(initial=limit, floor=limit, cap=limit)

    @property
    def start(self) -> int:
        """The initial limit, clamped into [floor, cap]."""
        return min(self.cap, max(self.floor, self.initial))


@dataclass
class AdaptiveLimit:
    """The state of one endpoint's limit; feed it every attempt's outcome with :meth:`observe`."""

    settings: AdaptiveSettings
    limit: float
    """Calls that may be in flight now (use ``int(limit)``)."""
    slow_start: bool = True
    """No overload seen yet: the limit doubles every window."""
    window_start: float | None = None
    window_n: int = 0
    window_latency_s: float = 0.0
    window_peak: int = 0
    """Most calls seen in flight during the window."""
    rtt_s: float | None = None
    """Smoothed mean latency of recent windows (a window's length)."""
    baseline_s: float | None = None
    """The latency the endpoint gives when it is not loaded (lowest window mean, drifting)."""
    last_cut: float | None = None
    calm: int = 0
    """Windows since the last cut."""
    cuts: int = 0
    """Cuts so far (overloads and latency)."""

    @classmethod
    def start(cls, settings: AdaptiveSettings) -> AdaptiveLimit:
        """A fresh limit at ``settings.start``."""
        return cls(settings, float(settings.start), slow_start=settings.floor < settings.cap)

    @property
    def current(self) -> int:
        """The limit as a whole number of calls."""
        return int(self.limit)

    def observe(self, now: float, latency_s: float, signal: Signal, in_flight: int) -> None:
        """One attempt ended at ``now``, ``latency_s`` after it was sent, with ``signal``,
        while ``in_flight`` calls (itself included) were in flight."""
        s = self.settings
        if s.floor == s.cap:
            return
        if self.window_start is None:
            self.window_start = now
        if signal == "overload":
            self._cut(now)
            return
        if signal == "ok":
            self.window_n += 1
            self.window_latency_s += max(0.0, latency_s)
        self.window_peak = max(self.window_peak, in_flight)
        if self.window_n and now - self.window_start >= self.window_s:
            self._close(now)

    @property
    def window_s(self) -> float:
        """How long a window lasts: one round trip (the smoothed latency), at least ``min_window_s``."""
        return max(self.settings.min_window_s, self.rtt_s or 0.0)

    def _close(self, now: float) -> None:
        s = self.settings
        mean = self.window_latency_s / self.window_n
        self.rtt_s = mean if self.rtt_s is None else 0.5 * self.rtt_s + 0.5 * mean
        baseline = self.baseline_s
        if baseline is None or mean < baseline:
            self.baseline_s = mean
        else:
            self.baseline_s = baseline + (mean - baseline) * s.drift
        if baseline is not None and mean > s.tolerance * baseline:
            self._cut(now)
            return
        if self.window_peak >= self.current:  # the calls filled the limit: demand wants more room
            if self.slow_start:
                self.limit = min(float(s.cap), self.limit * 2)
            else:
                self.calm += 1
                self.limit = min(float(s.cap), self.limit + 1 + self.calm // s.probe_every)
        self._new_window(now)

    def _cut(self, now: float) -> None:
        if self.last_cut is not None and now - self.last_cut < self.window_s:
            return  # the same burst: one cut per window
        s = self.settings
        self.limit = max(float(s.floor), math.floor(self.limit * s.backoff))
        self.slow_start = False
        self.last_cut = now
        self.calm = 0
        self.cuts += 1
        self._new_window(now)

    def _new_window(self, now: float) -> None:
        self.window_start, self.window_n, self.window_latency_s, self.window_peak = now, 0, 0.0, 0

    def as_dict(self) -> dict[str, Any]:
        """The state without its settings (JSON-ready), for :meth:`from_dict`."""
        state = asdict(self)
        del state["settings"]
        return state

    @classmethod
    def from_dict(cls, settings: AdaptiveSettings, state: dict[str, Any]) -> AdaptiveLimit:
        """The limit ``as_dict`` gave, under ``settings`` (its limit clamped into them)."""
        known = {k: v for k, v in state.items() if k in cls.__dataclass_fields__ and k != "settings"}
        limit = cls(settings, **known)
        limit.limit = min(float(settings.cap), max(float(settings.floor), float(limit.limit)))
        return limit


class Concurrency(Protocol):
    """Anything that bounds a judge client's calls in flight and learns from their outcomes."""

    def slot(self) -> AbstractAsyncContextManager[object]:
        """Hold one call's place while it is in flight."""
        ...

    def observe(self, latency_s: float, signal: Signal) -> None:
        """An attempt made in a held slot ended (called before the slot is given back)."""
        ...


class AdaptiveSlots:
    """Calls in flight bounded by an :class:`AdaptiveLimit`, in this process."""

    def __init__(self, settings: AdaptiveSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.adaptive = AdaptiveLimit.start(settings)
        """The limit and what it has learnt."""
        self._clock = clock
        self._in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int:
        """Calls that may be in flight now."""
        return self.adaptive.current

    @property
    def in_flight(self) -> int:
        """Calls holding a slot now."""
        return self._in_use

    @property
    def waiting(self) -> int:
        """Calls waiting for a slot now."""
        return len(self._waiters)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a slot (first come, first served), hold it, give it back."""
        if self._waiters or self._in_use >= self.limit:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._in_use -= 1  # granted as it was cancelled
                    self._serve()
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(fut)
                raise
        else:
            self._in_use += 1
        try:
            yield
        finally:
            self._in_use -= 1
            self._serve()

    def observe(self, latency_s: float, signal: Signal) -> None:
        """Feed one attempt's outcome to the limit (a grown limit lets waiters in at once).

        An overload keeps its slot taken for one window after it ends: a 429 comes back at
        once and frees its slot for the next waiter, which would get a 429 too — a whole queue
        of callers cycles through the slots above the endpoint's capacity within milliseconds.
        Held, those slots pass at most one 429 each per round trip while the cuts come down."""
        self.adaptive.observe(self._clock(), latency_s, signal, self._in_use)
        if signal == "overload" and self.adaptive.settings.floor < self.adaptive.settings.cap:
            self._in_use += 1
            asyncio.get_running_loop().call_later(self.adaptive.window_s, self._release)
        self._serve()

    def _release(self) -> None:
        self._in_use -= 1
        self._serve()

    def _serve(self) -> None:
        while self._waiters and self._in_use < self.limit:
            fut = self._waiters.popleft()
            if not fut.done():
                self._in_use += 1
                fut.set_result(None)
