"""Failed-authentication throttle: a client address that sends too many bad tokens is locked
out for a while (429 with ``Retry-After``), before its token is even looked up.

Per source address, a fixed window counts failures; the ``max_failures``-th failure within
``window_s`` locks the address for ``lockout_s``. Memory is bounded: at most ``max_sources``
addresses are tracked, the least recently failing one is forgotten first (an attacker who
rotates through more addresses than that gains nothing a real botnet would not have).
Successes do not reset the count. Thread-safe: sync dependencies run on a thread pool.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FailedAuth"]


@dataclass
class _Source:
    window_start: float
    failures: int = 0
    locked_until: float = 0.0


class FailedAuth:
    """Failed token checks per client address (see the module docstring)."""

    def __init__(
        self,
        *,
        max_failures: int = 50,
        window_s: float = 60.0,
        lockout_s: float = 300.0,
        max_sources: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.max_sources = max_sources
        self._clock = clock
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sources)

    def retry_after(self, source: str) -> int | None:
        """Whole seconds until ``source`` may try again, or None when it is not locked out."""
        with self._lock:
            entry = self._sources.get(source)
            left = 0.0 if entry is None else entry.locked_until - self._clock()
        return math.ceil(left) if left > 0 else None

    def failed(self, source: str) -> None:
        """Count one failed token check from ``source`` (locks it at the limit)."""
        now = self._clock()
        with self._lock:
            entry = self._sources.pop(source, None)
            if entry is None or now - entry.window_start >= self.window_s:
                entry = _Source(window_start=now, locked_until=entry.locked_until if entry else 0.0)
            entry.failures += 1
            if entry.failures >= self.max_failures:
                entry.locked_until = now + self.lockout_s
                entry.failures, entry.window_start = 0, now
            self._sources[source] = entry  # most recent last
            while len(self._sources) > self.max_sources:
                self._sources.popitem(last=False)
