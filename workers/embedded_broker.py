"""The embedded broker: kombu's SQLAlchemy transport on a SQLite file, polling as work flows.

kombu's virtual transports sleep ``polling_interval`` (1 s) whenever nothing was delivered:
both when the queue is empty and when the worker may not take a message yet (its prefetch
limit is reached while its child runs a chunk). The second case cost up to a second at every
chunk boundary — the worker's child sat idle between chunks with the next message waiting.
This transport tells the two apart: while the prefetch limit holds it checks again every
``BUSY_S`` (an in-memory check, no query), and while the queue is empty it backs off from
``MIN_S`` to ``polling_interval`` (0.25 s, not kombu's 1 s: a batch created while the worker
idles starts within a quarter of a second), starting over after each delivery. An idle worker
queries the broker file four times a second: ~15 ms of CPU a second for the worker's
processes, against ~7 at kombu's 1 s (measured with an idle ``tracejury worker``, 20 s).

``workers.celery_app`` selects it for ``sqla+`` broker URLs (``TRACEJURY_BROKER_URL``).
"""

from __future__ import annotations

from time import monotonic, sleep

from kombu.transport import sqlalchemy
from sqlalchemy.exc import IntegrityError

__all__ = ["Channel", "Transport"]

BUSY_S = 0.005
"""Re-check interval while the prefetch limit holds (no query is made)."""
MIN_S = 0.01
"""First poll interval after a delivery; doubles on every empty poll up to ``polling_interval``."""


class Channel(sqlalchemy.Channel):
    """kombu's channel; creating the queue row tolerates another worker creating it at the same
    moment (two workers started together on a fresh broker file: kombu lets the unique-name
    error through and the worker never consumes)."""

    def _get_or_create(self, queue: str) -> object:
        try:
            return super()._get_or_create(queue)
        except IntegrityError:
            self.session.rollback()
            return super()._get_or_create(queue)


class Transport(sqlalchemy.Transport):
    """kombu's SQLAlchemy transport, with the polling described above."""

    Channel = Channel
    polling_interval = 0.25

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._backoff = MIN_S

    def drain_events(self, connection: object, timeout: float | None = None) -> None:
        """Deliver one message, or raise ``socket.timeout`` after ``timeout`` seconds."""
        start = monotonic()
        while True:
            try:
                self.cycle.get(self._deliver, timeout=timeout)
            except sqlalchemy.Empty:
                waited = monotonic() - start
                if timeout is not None and waited >= timeout:
                    raise TimeoutError from None
                if self._blocked():
                    pause = BUSY_S
                else:
                    pause, self._backoff = self._backoff, min(self._backoff * 2, self.polling_interval)
                sleep(pause if timeout is None else max(0.0, min(pause, timeout - waited)))
            else:
                self._backoff = MIN_S
                return

    def _blocked(self) -> bool:
        """True when no channel may take a message now (prefetch limit reached)."""
        consuming = [c for c in self.channels if c._consumers]
        return bool(consuming) and not any(c.qos.can_consume() for c in consuming)
