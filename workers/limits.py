"""Judge-profile limits shared by every worker process, through Redis.

``RedisLimiter`` gives a judge client two things that hold across processes and machines:

* ``acquire(tokens)`` — requests/min and tokens/min as token buckets kept in Redis and
  updated atomically by a Lua script on Redis's own clock. Like the in-process bucket, a
  call reserves and is told how long to wait, so waiters are served in order.
* ``slot()`` — a concurrency slot: a sorted set of holders scored by lease expiry, so a
  crashed holder's slot frees itself after ``lease_s``.

With the embedded broker (no Redis) the limits are per process (the client's own limiter
and semaphore) — say so in the docs, as this does. If Redis is unreachable for a moment (a
restart), the limiter falls back to per-process limits for that call and logs it: a blip in
the limiter must never fail a judgment.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.exceptions import RedisError

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

# KEYS[1] holders zset; ARGV: limit, holder id, lease seconds. Returns 1 if taken.
_TAKE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
  redis.call('EXPIRE', KEYS[1], 3600)
  return 1
end
return 0
"""


class RedisLimiter:
    """Requests/min, tokens/min and concurrency of one judge profile, shared via Redis."""

    def __init__(
        self,
        redis: Redis,
        profile: str,
        *,
        requests_per_minute: int | None,
        tokens_per_minute: int | None,
        max_concurrency: int,
        burst_s: float = 5.0,
        lease_s: float = 120.0,
        poll_s: float = 0.01,
    ) -> None:
        self._redis = redis
        self._key = f"tracejury:limits:{profile}"
        self._rpm, self._tpm = requests_per_minute, tokens_per_minute
        self._max = max_concurrency
        self._burst, self._lease, self._poll = burst_s, lease_s, poll_s
        self._reserve = redis.register_script(_RESERVE)
        self._take = redis.register_script(_TAKE_SLOT)
        self._local = RateLimiter(requests_per_minute, tokens_per_minute)
        self._local_slots = asyncio.Semaphore(max_concurrency)

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
        holder = uuid.uuid4().hex
        key = f"{self._key}:slots"
        try:
            while not int(await self._take(keys=[key], args=[self._max, holder, self._lease])):
                await asyncio.sleep(self._poll)
        except (RedisError, OSError) as exc:
            log.warning("shared concurrency limit unavailable (%s); limiting in this process", exc)
            async with self._local_slots:
                yield
            return
        try:
            yield
        finally:
            try:
                await self._redis.zrem(key, holder)
            except (RedisError, OSError):  # the slot's lease frees it anyway
                log.warning("could not release a shared slot; its lease will free it")
