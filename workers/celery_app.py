"""The Celery app, built by a function (nothing at import time) from settings.

Error policy of the queue, in one place:

    task score_chunk(batch, chunk) ──► claim chunk (compare-and-set; lease) ──no──► ack, no-op
                                          │ yes                                   (done, or held
                                          ▼                                        by a live worker)
                           heartbeat renews the lease ─ score (per-trace failures are
                                          │              evaluations, never exceptions)
                                          ▼
                          DB error ──► retry (backoff, 5x) ──► still failing ──► chunk failed
                                          │                                      → batch failed
                                          ▼
                                   chunk done ──► last chunk? ──► batch done ──► finalisers

    worker killed (kill -9): the broker redelivers (acks_late + reject_on_worker_lost), and
    every worker's sweeper re-enqueues chunks whose lease expired: redone within
    lease + sweep interval (30 s + 5 s by default), whatever the broker's visibility timeout.

A task also chains (``workers.batches.run_chunk``): while its chunk's calls are in flight it
claims the batch's next pending chunk itself, so a worker keeps its judge busy across chunk
boundaries; the messages of chunks taken that way are no-ops when they arrive. The embedded
broker (``sqla+`` URLs) is ``workers.embedded_broker``: it polls as work flows, not once a
second between chunks.
"""

from __future__ import annotations

from celery import Celery

from tracejury.settings import Settings

__all__ = ["QUEUE", "create_app"]

QUEUE = "tracejury"


def create_app(settings: Settings | None = None) -> Celery:
    """A Celery app on the configured broker, with the tracejury tasks registered."""
    settings = settings or Settings()
    broker, transport = settings.broker_url, None
    if broker.startswith("sqla+"):  # the embedded broker: kombu's SQLAlchemy transport, polling as work flows
        broker, transport = broker.removeprefix("sqla+"), "workers.embedded_broker:Transport"
    app = Celery("tracejury", broker=broker, include=["workers.tasks"])
    if transport is not None:
        app.conf.broker_transport = transport
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=QUEUE,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    if settings.broker_url.startswith(("redis://", "rediss://")):
        # longer than any chunk: a live worker's task must never be redelivered; a dead
        # worker's chunk is redone through its lease, well before this
        app.conf.broker_transport_options = {"visibility_timeout": 3600}
    return app
