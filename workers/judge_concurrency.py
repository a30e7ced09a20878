"""Each judge client's concurrency limit, reported to the store for ``/metrics`` and ``batch status``.

The limit lives in the worker process (the embedded broker) or in Redis (shared); the API and
the CLI read neither, so each process that judges writes what its clients see about once a
second (``tracejury.store.judge_concurrency``), as every other count ``/metrics`` shows is read
from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence

from judges.llm.client import JudgeClient
from tracejury.store.judge_concurrency import ConcurrencyReport
from workers.limits import RedisLimiter

__all__ = ["ConcurrencyPublisher"]

log = logging.getLogger(__name__)


class ConcurrencyPublisher:
    """Reports each judge client's concurrency limit and calls in flight about every
    ``interval_s`` while this process's event loop runs (during chunks), through ``publish``
    (the store, off the loop); ``flush()`` reports at once, ``aclose()`` stops and ``withdraw``s
    this process's rows. A failed write is logged and tried again next time: metrics must never
    fail a judgment."""

    def __init__(
        self,
        clients: dict[str, JudgeClient],
        publish: Callable[[Sequence[ConcurrencyReport]], None],
        withdraw: Callable[[Sequence[str]], None],
        *,
        interval_s: float = 1.0,
    ) -> None:
        self._clients = clients
        self._publish, self._withdraw = publish, withdraw
        self._interval = interval_s
        self._ids = {name: getattr(c.concurrency, "holder", None) or uuid.uuid4().hex for name, c in clients.items()}
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._writing = asyncio.Lock()

    def reports(self) -> list[ConcurrencyReport]:
        """What each client's concurrency says now."""
        out = []
        for name, client in self._clients.items():
            c = client.concurrency
            if c is None:
                continue
            limit, in_flight = int(getattr(c, "limit", 0)), int(getattr(c, "in_flight", 0))
            out.append(
                ConcurrencyReport(self._ids[name], name, client.url, isinstance(c, RedisLimiter), limit, in_flight)
            )
        return out

    def start(self) -> None:
        """Report every ``interval_s`` from now on (while the loop runs)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def flush(self) -> None:
        """Report now (after a report being written, never before it: writes run in a
        thread, and a late one would put an older state back)."""
        async with self._writing:
            await self._flush()

    async def _flush(self) -> None:
        reports = self.reports()
        if not reports:
            return
        try:
            await asyncio.to_thread(self._publish, reports)
        except Exception as exc:  # the store is busy or down: the next report will say it
            if not self._failing:
                log.warning("could not report judge concurrency (%s); trying again", one_line_error(exc))
            self._failing = True
        else:
            self._failing = False

    async def aclose(self) -> None:
        """Stop reporting and drop this process's rows (once no report is being written: a
        cancelled write's thread would still land after the withdrawal)."""
        async with self._writing:
            task, self._task = self._task, None
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            try:
                await asyncio.to_thread(self._withdraw, list(self._ids.values()))
            except Exception as exc:  # stale rows stop being reported after FRESH_S anyway
                log.warning("could not withdraw judge concurrency reports (%s)", one_line_error(exc))

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()


def one_line_error(exc: BaseException) -> str:
    """``Type: message`` on one line, for a log."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
