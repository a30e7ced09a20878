"""Single flight across worker processes, through the store: one judge call per question.

A process about to call the judge for a cache key claims it (``judge_claim``); a key another
live process holds is waited on — its verdict appears in ``judge_cache`` — and recorded as a
cache hit. A failed call releases its claim without a verdict: the next asker calls the judge
itself. A process that dies leaves claims that expire (``ttl_s``), and then anyone takes over.

A holder writes its verdict to the cache before it marks its claim done, and a done claim stays
a minute, so a process that asks just after reads the cache instead of calling again. The
store sees batches, not calls: the coroutines of a process queue their claims, releases and
verdicts, and one ticker writes them every ``tick_s`` (one claim statement, one cache write and
one release per tick) and polls the cache for the keys waited on. Within a process,
``judges.evaluate.SingleFlight`` already shares calls; this is the step between processes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from judges.evaluate import CacheKey
from judges.llm.types import JudgeVerdict
from workers.threads import finish_in_thread, submit

__all__ = ["StoreClaims"]

log = logging.getLogger(__name__)

MAX_FAILED_TICKS = 20
"""Store failures in a row (backing off to 1 s apart, ~15 s in all) before the ended calls'
writes are dropped."""


class StoreClaims:
    """``judges.evaluate.SharedClaims`` on the store, for one worker process (``owner``)."""

    def __init__(
        self,
        *,
        owner: str,
        claim: Callable[[Sequence[CacheKey], str, float], tuple[set[CacheKey], set[CacheKey]]],
        release: Callable[[Sequence[CacheKey], Sequence[CacheKey], str], None],
        renew: Callable[[str, float], None],
        cache_get: Callable[[Sequence[CacheKey]], Mapping[CacheKey, JudgeVerdict]],
        cache_put: Callable[[Sequence[tuple[CacheKey, JudgeVerdict]]], None],
        ttl_s: float = 30.0,
        tick_s: float = 0.02,
        poll_s: float = 0.1,
    ) -> None:
        self.owner = owner
        self._claim, self._release, self._renew = claim, release, renew
        self._cache_get, self._cache_put = cache_get, cache_put
        self.ttl_s, self.tick_s, self.poll_s = ttl_s, tick_s, poll_s
        self._asked: dict[CacheKey, list[asyncio.Future[JudgeVerdict | None]]] = {}
        self._waiting: dict[CacheKey, list[asyncio.Future[JudgeVerdict | None]]] = {}
        self._done: list[tuple[CacheKey, JudgeVerdict | None]] = []
        self._held = 0
        self._ticker: asyncio.Task[None] | None = None
        self._polled = self._renewed = 0.0
        # one thread for this process's claims: their rounds queue behind nothing else (the cost
        # ledger, chunk loads and saves use the loop's pool) and reach the store in order
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="judge-claims")
        self._writing = asyncio.Lock()
        self.shared = 0
        """Verdicts this process took from another's call (for tests and reports)."""

    async def acquire(self, key: CacheKey) -> JudgeVerdict | None:
        """None: ours to call (release it after); else another process's verdict."""
        future: asyncio.Future[JudgeVerdict | None] = asyncio.get_running_loop().create_future()
        self._asked.setdefault(key, []).append(future)
        self._wake()
        verdict = await future
        if verdict is None:
            self._held += 1
        else:
            self.shared += 1
        return verdict

    def release(self, key: CacheKey, verdict: JudgeVerdict | None) -> None:
        """Our call for ``key`` ended (``verdict`` None: it failed)."""
        self._held -= 1
        self._done.append((key, verdict))
        self._wake()

    async def flush(self) -> None:
        """Write the verdicts of ended calls to the cache and end their claims now (a chunk's
        end: nothing may wait for a tick of a loop that is about to stop; a write the ticker has
        under way is waited for). When the store fails, they stay queued for the next tick
        (their claims are still held: others wait)."""
        async with self._writing:
            if not self._done:
                return
            done, self._done = self._done, []
            write = submit(self._write, done, executor=self._pool)
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                await asyncio.wait([write])  # a thread cannot be stopped: see it through
                if write.exception() is not None:
                    self._done = done + self._done
                raise
            except Exception:
                self._done = done + self._done
                raise

    def _write(self, done: list[tuple[CacheKey, JudgeVerdict | None]]) -> None:
        """In a thread: the verdicts into the cache, then their claims released."""
        judged = [(k, v) for k, v in done if v is not None]
        self._cache_put(judged)
        self._release([k for k, _ in judged], [k for k, v in done if v is None], self.owner)

    def _wake(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick_while_busy())

    async def _tick_while_busy(self) -> None:
        failures = 0
        while self._asked or self._waiting or self._done or self._held:
            try:
                await self._tick()
                failures = 0
            except Exception as exc:  # the store failed: nobody waits on it forever
                failures += 1
                log.warning("judge claims: %s; calling the judge without them", exc, exc_info=failures == 1)
                self._fail_open(give_up=failures >= MAX_FAILED_TICKS)
            # after a failure, back off (to 1 s) before the ended calls' writes are tried again
            await asyncio.sleep(min(1.0, self.tick_s * 2**failures))

    async def _tick(self) -> None:
        """One round with the store, its statements in a thread: the event loop goes on serving
        the calls in flight while SQLite waits for another process's write."""
        now = time.monotonic()
        await self.flush()  # verdicts into the cache first, then the claims go
        renew = bool(self._held) and now - self._renewed > self.ttl_s / 3
        poll = bool(self._waiting) and now - self._polled >= self.poll_s
        pending, self._asked = self._asked, {}
        if poll:
            for key, futures in self._waiting.items():
                pending.setdefault(key, []).extend(futures)
            self._waiting = {}
        if not pending and not renew:
            return
        try:
            ours, found = await finish_in_thread(self._store_round, list(pending), renew, executor=self._pool)
        except BaseException:  # asked again on the next tick (or failed open)
            for key, futures in pending.items():
                self._asked.setdefault(key, []).extend(futures)
            raise
        if renew:
            self._renewed = now
        if poll:
            self._polled = now
        # the store answered: hand the futures out (nothing below raises)
        for key, futures in pending.items():
            futures = [f for f in futures if not f.done()]  # an asker cancelled meanwhile
            if not futures:
                continue
            if key in found:
                for f in futures:
                    f.set_result(found[key])
            elif key in ours:
                first, *others = futures
                first.set_result(None)  # one caller; any other asker here waits in SingleFlight
                if others:
                    self._waiting.setdefault(key, []).extend(others)
            else:
                self._waiting.setdefault(key, []).extend(futures)

    def _store_round(self, keys: list[CacheKey], renew: bool) -> tuple[set[CacheKey], dict[CacheKey, JudgeVerdict]]:
        """In a thread: renew this process's claims, claim ``keys`` and read the settled ones'
        verdicts. Returns the keys ours to call and the verdicts found."""
        if renew:
            self._renew(self.owner, self.ttl_s)
        if not keys:
            return set(), {}
        ours, settled = self._claim(keys, self.owner, self.ttl_s)
        found = dict(self._cache_get(list(settled))) if settled else {}
        return ours | (settled - set(found)), found  # settled, yet not in the cache (a failed write): ask

    def _fail_open(self, *, give_up: bool = False) -> None:
        """The store is unreachable: every asker calls the judge (a duplicate call at worst).
        The ended calls' cache writes and releases are tried again on the next ticks, until
        ``give_up`` (their claims then run out ``ttl_s`` after this process stops renewing)."""
        for futures in (*self._asked.values(), *self._waiting.values()):
            for f in futures:
                if not f.done():
                    f.set_result(None)
        self._asked, self._waiting = {}, {}
        if give_up and self._done:
            log.error("judge claims: dropping %d ended call(s) the store would not take", len(self._done))
            self._done = []
