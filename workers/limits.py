"""Judge-profile limits shared by every worker process, through Redis.

``RedisLimiter`` gives a judge client two things that hold across processes and machines:

* ``acquire(tokens)`` — requests/min and tokens/min as token buckets kept in Redis and
  updated atomically by a Lua script on Redis's own clock. Like the in-process bucket, a
  call reserves and is told how long to wait, so waiters are served in order.
* ``slot()`` — a concurrency slot. The profile's concurrency limit is one budget in Redis,
  leased to holders (one per limiter: per process and profile) in blocks by one Lua script:
  a process takes as many free slots as its callers want in one round trip, hands them to
  its callers without Redis, and gives back idle ones in one call. Per judge call there is
  no round trip at all while a process holds slots; a 256-trace chunk costs a handful.
  Guarantees: the slots held by all holders never exceed the limit (but for slots in use
  when a cut lowers it: they are given back as they end, none handed out); a holder's
  lease (``lease_s``) is renewed while it holds slots, so a crashed process's slots free
  themselves after the lease; a process gives back slots idle for ``linger_s``, and while
  another process waits it keeps at most its fair share (the limit ÷ processes wanting
  slots, rounded up), so nobody hoards. Between chunks nothing runs a worker's event loop, so
  the pipeline calls ``settle()`` at the end of each chunk to give back idle slots.
* ``observe(latency_s, signal)`` — the limit adapts (:mod:`judges.llm.concurrency`), one
  limit for all processes: each process keeps its calls' outcomes and, on its next round trip
  (every ``check_s``, at once on an overload), applies them to the shared state in Redis
  (read, update with the pure :class:`~judges.llm.concurrency.AdaptiveLimit`, compare and
  swap). Every slot sync reads the shared limit, so a cut reaches all processes within one
  ``check_s``. Times are wall-clock seconds (the processes may be on different machines).

With the embedded broker (no Redis) the limits are per process (the client's own limiter
and adaptive slots) — say so in the docs, as this does. If Redis is unreachable for a moment (a
restart), the limiter falls back to per-process limits (logged once per outage) and tries
Redis again after ``retry_s``: a blip in the limiter must never fail a judgment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from judges.llm.concurrency import AdaptiveLimit, AdaptiveSettings, AdaptiveSlots, Signal
from judges.llm.limiter import RateLimiter

__all__ = ["RedisLimiter"]

log = logging.getLogger(__name__)

# KEYS[1] bucket; ARGV: capacity, refill per second, amount. Returns the wait in ms.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local cap, rate, amount = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local level = tonumber(redis.call('HGET', KEYS[1], 'level') or cap)
local at = tonumber(redis.call('HGET', KEYS[1], 'at') or now)
level = math.min(cap, level + (now - at) * rate) - amount
redis.call('HSET', KEYS[1], 'level', level, 'at', now)
redis.call('EXPIRE', KEYS[1], 3600)
if level >= 0 then return 0 end
return math.ceil(-level / rate * 1000)
"""


# The profile's concurrency slots, leased to holders (one per limiter, i.e. per process and
# profile) in blocks. KEYS: held hash (holder -> slots it holds), want hash (holder -> slots it
# wants: in use + waiting), lease zset (holder -> lease expiry), the shared adaptive limit.
# ARGV: holder, want, in use, cap, lease seconds, the limit while none is shared yet. The limit
# is the shared adaptive one (never above the cap). Expired holders are dropped first (a
# crashed process's slots free themselves). A holder is granted free slots up to what it
# wants; while another holder wants more than it holds, each holder may keep at most its fair
# share (limit ÷ active holders, rounded up) and gives back what it holds above that, but
# never slots in use; while all hold more than a cut limit, a holder gives back the excess it
# does not use. Returns {slots the holder now holds, slots it may keep, the limit, slots held
# by all holders}.
_SYNC_SLOTS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local me = ARGV[1]
local want, in_use = tonumber(ARGV[2]), tonumber(ARGV[3])
local limit, lease = tonumber(ARGV[4]), tonumber(ARGV[5])
limit = math.min(limit, tonumber(redis.call('GET', KEYS[4]) or ARGV[6]))
for _, h in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
  redis.call('HDEL', KEYS[1], h)
  redis.call('HDEL', KEYS[2], h)
  redis.call('ZREM', KEYS[3], h)
end
local held, total = {}, 0
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  held[flat[i]] = tonumber(flat[i + 1])
  total = total + held[flat[i]]
end
local cur = held[me] or 0
local active, others_short = 0, false
flat = redis.call('HGETALL', KEYS[2])
for i = 1, #flat, 2 do
  local w = tonumber(flat[i + 1])
  if flat[i] ~= me and w > 0 then
    active = active + 1
    if w > (held[flat[i]] or 0) then others_short = true end
  end
end
if want > 0 then active = active + 1 end
local keep = limit
if others_short then keep = math.ceil(limit / active) end
local target = math.min(want, keep)
local excess = math.max(0, total - limit)
local new
if target >= cur and excess == 0 then
  new = cur + math.max(0, math.min(target - cur, limit - total))
else
  new = math.max(math.min(target, cur - excess), math.min(in_use, cur))
end
total = total - cur + new
if new > 0 or want > 0 then
  redis.call('HSET', KEYS[1], me, new)
  redis.call('HSET', KEYS[2], me, want)
  redis.call('ZADD', KEYS[3], now + lease, me)
  for i = 1, 3 do redis.call('EXPIRE', KEYS[i], math.ceil(lease) + 60) end
else
  redis.call('HDEL', KEYS[1], me)
  redis.call('HDEL', KEYS[2], me)
  redis.call('ZREM', KEYS[3], me)
end
return {new, keep, limit, total}
"""

# The shared adaptive limit's state, replaced only if nobody replaced it since it was read.
# KEYS: state (JSON), limit. ARGV: the state read ('' = none), the new state, the new limit,
# seconds both live (an endpoint idle that long starts afresh). Returns 1 if replaced.
_SWAP_STATE = """
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[4]))
redis.call('SET', KEYS[2], ARGV[3], 'EX', tonumber(ARGV[4]))
return 1
"""

_MAX_SAMPLES = 100_000  # outcomes kept while Redis is slow to take them (oldest dropped)
_SWAP_TRIES = 3
_STATE_TTL_S = 600  # an endpoint idle this long starts afresh (slow start from the initial limit)

_SHARED, _LOCAL = True, False
"""What a waiting caller is handed: one of this process's shared slots, or "use the
per-process semaphore" (Redis is unreachable)."""


class RedisLimiter:
    """Requests/min, tokens/min and concurrency of one judge profile, shared via Redis.

    Concurrency slots are leased from Redis in blocks by this limiter (its holder id), handed
    to local callers without a round trip, and given back when idle; one maintenance task per
    limiter talks to Redis (at most one call in flight): it takes slots while callers wait
    (polling every ``poll_s`` while the limit is reached), and while it holds any it renews
    the lease and learns its fair share every ``check_s``, giving back slots idle for
    ``linger_s`` and those above its share while another holder waits.
    """

    def __init__(
        self,
        redis: Redis,
        profile: str,
        *,
        requests_per_minute: int | None,
        tokens_per_minute: int | None,
        max_concurrency: int,
        adaptive: AdaptiveSettings | None = None,
        burst_s: float = 5.0,
        lease_s: float = 30.0,
        poll_s: float = 0.01,
        check_s: float = 0.1,
        linger_s: float = 0.1,
        block: int = 8,
        retry_s: float = 1.0,
    ) -> None:
        self._redis = redis
        self._key = f"tracejury:limits:{profile}"
        self._rpm, self._tpm = requests_per_minute, tokens_per_minute
        self._max = max_concurrency
        self._adaptive = adaptive or AdaptiveSettings.fixed(max_concurrency)
        self._limit = self._adaptive.start  # the shared limit, as the last sync read it
        self._total = 0  # slots held by all holders, as the last sync read it
        self._samples: deque[tuple[float, float, Signal, int]] = deque(maxlen=_MAX_SAMPLES)
        self._overloaded = False  # an overload among the samples: apply them on the next round trip
        self._window_s = self._adaptive.min_window_s  # the shared limit's window, as last applied
        self._adapted = 0.0  # loop time the samples were last applied
        self._burst, self._lease, self._poll = burst_s, lease_s, poll_s
        self._check = min(check_s, lease_s / 3)  # renewals well inside the lease
        self._linger, self._block, self._retry = linger_s, block, retry_s
        self._reserve = redis.register_script(_RESERVE)
        self._sync_slots = redis.register_script(_SYNC_SLOTS)
        self._swap_state = redis.register_script(_SWAP_STATE)
        self._state_keys = [f"{self._key}:adaptive:state", f"{self._key}:adaptive:limit"]
        self._slot_keys = [f"{self._key}:slots:{k}" for k in ("held", "want", "lease")] + self._state_keys[1:]
        self._holder = uuid.uuid4().hex
        self._local = RateLimiter(requests_per_minute, tokens_per_minute)
        self._local_slots = AdaptiveSlots(self._adaptive)
        # this process's side of the shared slots
        self._held = 0  # granted by Redis to this holder
        self._keep = max_concurrency  # most it may use while another holder waits
        self._in_use = 0  # handed to callers
        self._ceiling: int | None = None  # while a sync is in flight: hand out no more
        self._waiters: deque[asyncio.Future[bool]] = deque()
        self._short = False  # the last sync granted less than was wanted
        self._last_take = 0.0  # loop time of the last hand-out
        self._down = False  # Redis unreachable: callers use per-process slots ...
        self._down_until = 0.0  # ... until this loop time
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    async def _wait_for(self, bucket: str, per_minute: int, amount: int) -> float:
        rate = per_minute / 60.0
        ms = await self._reserve(keys=[f"{self._key}:{bucket}"],
                                 args=[rate * self._burst, rate, amount])  # fmt: skip
        return int(ms) / 1000.0

    async def acquire(self, tokens: int) -> None:
        """Wait until one request of ``tokens`` tokens fits the shared budgets."""
        wait = 0.0
        try:
            if self._rpm:
                wait = await self._wait_for("requests", self._rpm, 1)
            if self._tpm:
                wait = max(wait, await self._wait_for("tokens", self._tpm, tokens))
        except (RedisError, OSError) as exc:
            log.warning("shared rate limit unavailable (%s); limiting in this process", exc)
            await self._local.acquire(tokens)
            return
        if wait > 0:
            await asyncio.sleep(wait)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the profile's ``max_concurrency`` slots, across all processes."""
        loop = asyncio.get_running_loop()
        shared = loop.time() >= self._down_until
        if shared:
            if not self._waiters and self._in_use < self._usable():
                self._in_use += 1
                self._last_take = loop.time()
            else:
                shared = await self._wait(loop)
        if not shared:
            async with self._local_slots.slot():
                yield
            return
        try:
            yield
        finally:
            self._in_use -= 1
            self._serve(loop)

    @property
    def holder(self) -> str:
        """This limiter's id in Redis (one per process and profile)."""
        return self._holder

    @property
    def limit(self) -> int:
        """The concurrency limit now: the shared one (the per-process one while Redis is down)."""
        return self._local_slots.limit if self._down else self._limit

    @property
    def in_flight(self) -> int:
        """Calls of this process holding a slot now."""
        return self._in_use + self._local_slots.in_flight

    def observe(self, latency_s: float, signal: Signal) -> None:
        """An attempt made in a slot ended: its outcome goes to the shared limit on the next
        round trip (at once for an overload, whose slot stays taken one window)."""
        if self._adaptive.floor == self._adaptive.cap:
            return
        if self._down:
            self._local_slots.observe(latency_s, signal)
            return
        self._samples.append((time.time(), latency_s, signal, self._in_use))
        if signal != "overload":
            return
        # the slot stays taken one window (see AdaptiveSlots.observe: a queue of callers would
        # cycle through the slots above the endpoint's capacity, a 429 each, within milliseconds)
        loop = asyncio.get_running_loop()
        self._in_use += 1
        loop.call_later(self._window_s, self._release, loop)
        if not self._overloaded:
            self._overloaded = True
            self._wake.set()

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        self._in_use -= 1
        self._serve(loop)

    async def settle(self) -> None:
        """Give back at once the slots this process holds but does not use (a chunk ended:
        between chunks nothing runs this process's event loop, so nothing would give them back)."""
        if self._task is None or self._task.done():
            return
        loop = asyncio.get_running_loop()
        if loop.time() >= self._down_until:
            await self._sync(loop, linger=False)
        if not (self._held or self._in_use or self._waiters):
            self._wake.set()  # the maintenance task has nothing left to do: let it end
            await asyncio.wait({self._task}, timeout=self._check)

    async def aclose(self) -> None:
        """Stop the maintenance task and give back every slot this limiter holds."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._held or self._in_use:
            try:
                args = [self._holder, 0, 0, self._max, self._lease, self._adaptive.start]
                await self._sync_slots(keys=self._slot_keys, args=args)
            except (RedisError, OSError):
                log.warning("could not give back shared slots; their lease will free them")
            self._held = 0

    # ------------------------------------------------------------------ this process's side

    def _usable(self) -> int:
        cap = min(self._held, self._keep)
        return cap if self._ceiling is None else min(cap, self._ceiling)

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand free slots to waiting callers, first come first served."""
        while self._waiters and self._in_use < self._usable():
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(_SHARED)
                self._in_use += 1
                self._last_take = loop.time()

    async def _wait(self, loop: asyncio.AbstractEventLoop) -> bool:
        fut: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(fut)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._maintain())
        elif len(self._waiters) == 1 or not self._short:
            self._wake.set()  # ask Redis now; while short, the task polls anyway
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.result() is _SHARED:
                self._in_use -= 1  # granted as it was cancelled
                self._serve(loop)
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            raise

    async def _maintain(self) -> None:
        """Talk to Redis while this process holds, uses or waits for shared slots."""
        loop = asyncio.get_running_loop()
        try:
            while self._held or self._in_use or self._waiters:
                self._wake.clear()
                await self._sync(loop, linger=True)
                delay = self._poll if self._waiters and not self._down else self._check
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
        except Exception:  # a bug here must not stall judgments: forget the slots (leases free them)
            log.exception("shared concurrency limiter failed; limiting in this process")
            self._held = 0
            self._go_local(loop)

    async def _sync(self, loop: asyncio.AbstractEventLoop, *, linger: bool) -> None:
        """One round trip: tell Redis what this process wants, learn what it holds."""
        async with self._lock:
            want = self._in_use + len(self._waiters)
            if want > self._held:
                want = max(want, self._held + self._block)  # a block: later callers need no round trip
            elif linger and loop.time() - self._last_take < self._linger:
                want = self._held  # idle slots linger a moment for the next caller
            want = min(want, self._max)
            self._ceiling = in_use = self._in_use  # Redis may take back any slot not in use now
            try:
                if self._samples and (self._overloaded or loop.time() - self._adapted >= self._check):
                    self._adapted, self._overloaded = loop.time(), False  # at most every check_s, but overloads at once
                    await self._adapt()
                held, keep, limit, total = await self._sync_slots(
                    keys=self._slot_keys,
                    args=[self._holder, want, in_use, self._max, self._lease, self._adaptive.start],
                )
            except (RedisError, OSError) as exc:
                if not self._down:
                    log.warning("shared concurrency limit unavailable (%s); limiting in this process", exc)
                self._go_local(loop)
                return
            finally:
                self._ceiling = None
            if self._down:
                log.warning("shared concurrency limit reachable again")
                self._down, self._down_until = False, 0.0
            self._held, self._keep, self._limit, self._total = int(held), int(keep), int(limit), int(total)
            self._short = self._held < want
            self._serve(loop)

    async def _adapt(self) -> None:
        """Apply this process's outcomes to the shared limit (compare and swap: retried on a
        race with another process; outcomes not applied wait for the next round trip)."""
        for _ in range(_SWAP_TRIES):
            raw = await self._redis.get(self._state_keys[0])
            old = raw.decode() if isinstance(raw, bytes) else (raw or "")
            limit = (AdaptiveLimit.from_dict(self._adaptive, orjson.loads(old)) if old
                     else AdaptiveLimit.start(self._adaptive))  # fmt: skip
            samples = list(self._samples)
            for at, latency_s, signal, in_use in samples:
                limit.observe(at, latency_s, signal, max(in_use, self._total))
            new = orjson.dumps(limit.as_dict()).decode()
            if await self._swap_state(keys=self._state_keys, args=[old, new, limit.current, _STATE_TTL_S]):
                for _ in samples:
                    self._samples.popleft()
                self._limit, self._window_s = limit.current, limit.window_s
                return

    def _go_local(self, loop: asyncio.AbstractEventLoop) -> None:
        """Redis failed: callers use per-process slots for ``retry_s`` (and those waiting now)."""
        self._down, self._down_until = True, loop.time() + self._retry
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(_LOCAL)
