"""Retention on schedule: each worker's sweeper prunes the traces older than
``TRACEJURY_RETENTION_DAYS`` (``tracejury.store.prune``), at most once an hour per process.
Several workers may prune at once: a batch of traces is pruned in one transaction and a pruned
trace is never counted twice, so they only share the work."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine

from tracejury.core.retention import SWEEP_EVERY_S, PruneCounts, Selection, cutoff_for, retention_due
from tracejury.settings import Settings
from tracejury.store.prune import prune

__all__ = ["RetentionSweeper", "apply_retention"]

log = logging.getLogger(__name__)


def apply_retention(engine: Engine, settings: Settings, now: datetime | None = None) -> PruneCounts | None:
    """Prune the traces older than ``retention_days`` (None when the setting is unset)."""
    if settings.retention_days is None:
        return None
    cutoff = cutoff_for(settings.retention_days, now or datetime.now(UTC))
    return prune(engine, Selection(before=cutoff))


class RetentionSweeper:
    """Applies retention when due: called on every lease sweep, prunes at most every
    ``every_s`` seconds of ``clock`` (monotonic); ``wall_clock`` dates the cutoff. Both clocks
    are injectable for tests."""

    def __init__(
        self,
        every_s: float = SWEEP_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.every_s, self.clock, self.wall_clock = every_s, clock, wall_clock
        self.last_run: float | None = None

    def maybe_apply(self, engine: Engine, settings: Settings) -> PruneCounts | None:
        """Apply retention if it is set and due; what was pruned, or None."""
        if settings.retention_days is None or not retention_due(self.last_run, self.clock(), self.every_s):
            return None
        self.last_run = self.clock()  # a failed prune waits for the next hour too, not the next sweep
        counts = apply_retention(engine, settings, now=self.wall_clock())
        if counts is not None and counts.traces:
            log.info("retention: pruned %d trace(s) older than %d day(s)", counts.traces, settings.retention_days)
        return counts
