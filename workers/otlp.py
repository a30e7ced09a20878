"""The OTLP sweeper: assembles staged OTLP traces (``tracejury.store.otlp_staging.sweep``) on a
thread, in ``tracejury serve`` and in every worker — whichever runs; several at once are safe
(each trace is taken by exactly one sweep)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine

from tracejury.core.validation import TraceValidator
from tracejury.settings import Settings
from tracejury.store.otlp_staging import SweepCounts, sweep
from workers.service import segmentation

__all__ = ["OtlpSweeper", "sweep_once"]

log = logging.getLogger("tracejury.otlp")


def sweep_once(engine: Engine, settings: Settings, now: float | None = None) -> SweepCounts:
    """One sweep with the settings' idle, max-wait and keep times."""
    return sweep(engine, segmentation=segmentation(settings), validator=_validator(),
                 idle_s=settings.otlp_trace_idle_s, max_wait_s=settings.otlp_trace_max_wait_s,
                 keep_s=settings.otlp_assembled_keep_s, now=now)  # fmt: skip


_validators = threading.local()


def _validator() -> TraceValidator:
    """A compiled trace schema per thread."""
    if not hasattr(_validators, "v"):
        _validators.v = TraceValidator()
    return _validators.v


class OtlpSweeper:
    """Sweeps every ``otlp_sweep_interval_s`` on a daemon thread until ``stop()``."""

    def __init__(self, engine: Callable[[], Engine], settings: Settings) -> None:
        self._engine, self._settings = engine, settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tracejury-otlp-sweeper", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the sweep in progress (its transaction commits or rolls back whole)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._settings.otlp_sweep_interval_s):
            try:
                counts = sweep_once(self._engine(), self._settings)
            except Exception:  # the store is down or busy: the fragments wait for the next sweep
                log.warning("OTLP sweep failed; staged spans are kept for the next one", exc_info=True)
                continue
            if counts.busy:
                log.info("OTLP sweep: %d trace(s) assembled, %d unmapped, %d expired, %d late span(s), "
                         "%d duplicate span(s)", counts.assembled, counts.unmapped, counts.expired,
                         counts.late_spans, counts.duplicate_spans)  # fmt: skip
