"""Celery tasks: thin. They take ids, build nothing at import time, and call ``batches``.

Per worker process, the engine and settings are built once, on first use. The sweeper
thread starts when the worker is ready (in the main process, which survives a pool child's
death) and re-enqueues chunks whose lease expired; the OTLP sweeper assembles staged traces.
"""

from __future__ import annotations

import logging
import threading
from functools import cache
from typing import TYPE_CHECKING

from celery import current_app, shared_task
from celery.signals import worker_process_init, worker_ready, worker_shutting_down
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from judges.catalog import load_plugins
from tracejury.runtime import collect_rarely
from tracejury.settings import Settings
from tracejury.store.batches import fail_chunk, release_claim
from tracejury.store.engine import open_engine
from workers.batches import finish, run_chunk, sweep_expired, worker_id

if TYPE_CHECKING:  # imported when a worker starts it: ``batch create`` sends tasks and never sweeps
    from workers.otlp import OtlpSweeper

__all__ = ["enqueue_chunk", "score_chunk_task"]

log = logging.getLogger(__name__)
TASK_NAME = "tracejury.score_chunk"


@cache
def _runtime() -> tuple[Engine, Settings]:
    settings = Settings()
    load_plugins(settings.plugin_modules)
    return open_engine(settings.database_url), settings


@shared_task(
    name=TASK_NAME,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_jitter=True,
    max_retries=5,
)
def score_chunk_task(self, batch_id: str, chunk_no: int) -> str:  # noqa: ANN001 - Celery's Task
    """Score one chunk of a batch (idempotent: a redelivered or duplicate message is a no-op)."""
    engine, settings = _runtime()
    try:
        return run_chunk(engine, settings, batch_id, chunk_no, requeue=enqueue_chunk)
    except (OperationalError, InterfaceError):  # transient: give the chunk back, then retry
        if self.request.retries >= self.max_retries:
            _give_up(engine, batch_id, chunk_no, "database unavailable after retries")
        else:
            _quietly(release_claim, engine, batch_id, chunk_no, worker_id())
        raise
    except Exception as exc:  # not retryable: the chunk fails, and with it the batch
        _give_up(engine, batch_id, chunk_no, f"{type(exc).__name__}: {exc}")
        raise


def _quietly(fn, *args: object) -> None:  # noqa: ANN001
    try:
        fn(*args)
    except Exception:  # the database is what failed: the lease expiry covers this
        log.warning("could not update chunk state", exc_info=True)


def _give_up(engine: Engine, batch_id: str, chunk_no: int, error: str) -> None:
    log.error("chunk %s/%s failed: %s", batch_id, chunk_no, error)
    if fail_chunk(engine, batch_id, chunk_no, error, worker_id()):  # only if we hold it
        finish(engine, batch_id)


def enqueue_chunk(batch_id: str, chunk_no: int) -> None:
    """Send one chunk task on the current app."""
    current_app.send_task(TASK_NAME, args=[batch_id, chunk_no])


_stop_sweeping = threading.Event()


def _sweep_forever() -> None:
    from workers.retention import RetentionSweeper

    engine, settings = _runtime()
    retention = RetentionSweeper()
    while not _stop_sweeping.wait(settings.sweep_interval_s):
        try:
            n = sweep_expired(engine, enqueue_chunk, stale_pending_s=settings.stale_pending_s)
            if n:
                log.warning("re-enqueued %d chunk(s) whose worker died", n)
        except Exception:  # the store or broker is down: try again next sweep
            log.warning("lease sweep failed", exc_info=True)
        try:
            retention.maybe_apply(engine, settings)  # TRACEJURY_RETENTION_DAYS, at most hourly
        except Exception:  # the store is down: the next hour's sweep prunes what this one left
            log.warning("retention sweep failed", exc_info=True)


@cache
def _otlp_sweeper() -> OtlpSweeper:
    from workers.otlp import OtlpSweeper

    return OtlpSweeper(lambda: _runtime()[0], _runtime()[1])


@worker_process_init.connect
def _scoring_process(**_kwargs: object) -> None:
    """A pool child starts: ~40% of a scoring process's CPU was the garbage collector's."""
    collect_rarely()


@worker_ready.connect
def _start_sweeper(**_kwargs: object) -> None:
    threading.Thread(target=_sweep_forever, name="tracejury-sweeper", daemon=True).start()
    _otlp_sweeper().start()  # OTLP traces are assembled wherever a worker or the API runs


@worker_shutting_down.connect
def _stop_sweeper(**_kwargs: object) -> None:
    _stop_sweeping.set()
    _otlp_sweeper().stop()
