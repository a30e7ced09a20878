"""The OTLP sweeper: assembles staged OTLP traces (``tracejury.store.otlp_staging.sweep``) in
``tracejury serve`` (``TRACEJURY_OTLP_SWEEPERS`` processes beside the server's, so assembly and
request handling use every core) and in every worker (a thread) — whichever runs; several at once are safe (each
trace is taken by exactly one sweep)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable

from sqlalchemy import Engine

from tracejury.core.redaction import load_policy
from tracejury.core.validation import TraceValidator
from tracejury.runtime import collect_rarely
from tracejury.settings import Settings
from tracejury.store.otlp_staging import SweepCounts, sweep
from workers.service import segmentation

__all__ = ["OtlpSweeper", "start_sweeper_processes", "sweep_once"]

log = logging.getLogger("tracejury.otlp")


def sweep_once(engine: Engine, settings: Settings, now: float | None = None) -> SweepCounts:
    """One sweep with the settings' idle, max-wait and keep times."""
    redaction = load_policy(settings.redaction_path, hmac_key=settings.redaction_hmac_key)
    return sweep(engine, segmentation=segmentation(settings), validator=_validator(),
                 idle_s=settings.otlp_trace_idle_s, max_wait_s=settings.otlp_trace_max_wait_s,
                 keep_s=settings.otlp_assembled_keep_s, now=now, redaction=redaction)  # fmt: skip


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
        failing = False
        while not self._stop.wait(self._settings.otlp_sweep_interval_s):
            try:
                counts = sweep_once(self._engine(), self._settings)
            except Exception as exc:  # the store is down or busy: the fragments wait for the next sweep
                # the first failure with its traceback, then one line a sweep until it recovers
                log.warning("OTLP sweep failed; staged spans are kept for the next one: %s",
                            " ".join(str(exc).split())[:300], exc_info=not failing)  # fmt: skip
                failing = True
                continue
            failing = False
            if counts.busy:
                log.info("OTLP sweep: %d trace(s) assembled, %d unmapped, %d expired, %d late span(s), "
                         "%d duplicate span(s)", counts.assembled, counts.unmapped, counts.expired,
                         counts.late_spans, counts.duplicate_spans)  # fmt: skip


def _sweeper_main() -> None:
    """A sweeper process: sweeps until SIGTERM or SIGINT (then finishes the sweep in progress),
    or until its parent is gone."""
    from tracejury.store.engine import make_engine

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # a round allocates ~100 objects per span and frees them all: collecting the young generation
    # every 700 allocations took ~20% of the sweeper's CPU (bench/otlp_ingest.py, py-spy)
    collect_rarely()
    settings = Settings()
    engine = make_engine(settings.database_url)  # the parent migrated the store
    sweeper = OtlpSweeper(lambda: engine, settings)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    sweeper.start()
    parent = os.getppid()
    while not done.wait(1.0):
        if os.getppid() != parent:  # the server was killed outright: do not sweep on as an orphan
            break
    sweeper.stop()


def start_sweeper_processes(n: int) -> list[multiprocessing.process.BaseProcess]:
    """Start ``n`` sweepers, each in its own process (spawned: they read the same environment);
    daemons, so they never outlive their parent."""
    processes = [multiprocessing.get_context("spawn").Process(target=_sweeper_main, name=f"tracejury-otlp-sweeper-{i}",
                                                              daemon=True) for i in range(n)]  # fmt: skip
    for process in processes:
        process.start()
    return processes
