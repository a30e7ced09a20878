"""Cost caps that hold across every worker: a ledger of reservations and spend, and the guard
that makes each judge call reserve its worst case before it is sent.

Two caps: a batch's ``--max-cost`` (key ``batch:<id>``) and a profile's ``max_cost_per_day``
(key ``profile:<name>:<UTC date>``). A call reserves its worst-case cost
(:func:`tracejury.core.cost.worst_case_cost`) against every cap that applies. While the calls
in flight hold the room it waits for them to settle (their worst cases settle lower); once
even the settled spend leaves no room, the call is not sent and its outcome is a
``budget_exhausted`` judge failure (recorded, never a score). When the reply comes back the
reservation is settled to what the call cost by the usage the endpoint reported. So at every
moment ``spent + reserved ≤ cap``, whatever the number of workers — the cap is hard. A call
whose cost is unknown (the endpoint reported no usage) is settled at its worst case if a reply
may have been billed (a verdict, an invalid reply, a timeout), at 0 if the endpoint refused
it (HTTP error, rate limit).

The ledger is Redis (one Lua script per reservation, atomic) when the broker is Redis, else
the store (one conditional ``UPDATE``, atomic on SQLite and PostgreSQL). Amounts are integer
nano-dollars, so no float drift accumulates over millions of calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import orjson
from sqlalchemy import Engine

from judges.llm.profiles import JudgeProfile
from judges.llm.types import JudgeFailure, JudgeOutcome, JudgeRequest, JudgeVerdict
from tracejury.core.cost import call_cost, worst_case_cost
from tracejury.store import spend as spend_store

if TYPE_CHECKING:  # the store ledger's users (batch create, the embedded broker) never load redis
    from redis.asyncio import Redis

__all__ = [
    "BATCH_CAP",
    "BatchCap",
    "Ledger",
    "RedisLedger",
    "SpendGuard",
    "StoreLedger",
    "batch_key",
    "nano",
    "prompt_bytes",
]

@dataclass
class BatchCap:
    """The cost cap of the batch whose chunk is being scored, and whether it refused a call."""

    batch_id: str
    max_cost: float
    """USD."""
    refused: bool = False
    """Set when a call of the chunk was refused for this cap: the chunk is then cut as a whole."""


BATCH_CAP: ContextVar[BatchCap | None] = ContextVar("tracejury_batch_cap", default=None)
"""The batch cap of the chunk being scored, set by the worker around a chunk."""

_WAIT_S, _MAX_WAIT_S = 0.01, 0.5  # polling for room while calls in flight settle
_REPLIED = frozenset({"invalid_output", "rubric_mismatch", "refused"})  # a reply came, maybe without usage


def nano(usd: float) -> int:
    """USD as integer nano-dollars, rounded up (a reservation never falls short)."""
    return int(-(-usd * 1_000_000_000 // 1))


def batch_key(batch_id: str) -> str:
    """The ledger key of a batch's cost cap."""
    return f"batch:{batch_id}"


def _day_key(profile: str, now: datetime) -> str:
    return f"profile:{profile}:{now.astimezone(UTC):%Y-%m-%d}"


_INSTRUCTION_BYTES = 1024
"""Room for what the client adds to the prompt (the JSON instruction of the formats below
json_schema: a sentence and the schema, counted apart)."""


def prompt_bytes(request: JudgeRequest) -> int:
    """UTF-8 bytes of the request's message texts, of its reply schema (providers that
    constrain the reply to a schema bill it as prompt, and the lower formats write it into the
    prompt) and of the client's instruction: the worst case's prompt size."""
    total = len(orjson.dumps(request.output_schema)) + _INSTRUCTION_BYTES
    for message in request.messages:
        content = message.get("content")
        if isinstance(content, str):
            total += len(content.encode())
        elif isinstance(content, list):
            total += sum(len(str(p.get("text", "")).encode()) for p in content if isinstance(p, dict))
    return total


class Ledger(Protocol):
    """Reservations and spend against caps, shared by every worker."""

    async def reserve(self, key: str, amount: int, cap: int) -> int:
        """Reserve ``amount`` under ``key`` if spent + reserved + amount ≤ ``cap``: 1 if it did,
        0 if it would fit once reservations in flight settle, -1 if it cannot fit."""
        ...

    async def settle(self, key: str, reserved: int, spent: int) -> None:
        """Release ``reserved`` and add ``spent``."""
        ...

    async def admit(self, key: str, amount: int, cap: int) -> bool:
        """Admit a chunk expected to cost ``amount`` if spent + admitted + amount ≤ ``cap``."""
        ...

    async def dismiss(self, key: str, amount: int) -> None:
        """A chunk admitted with ``amount`` has ended."""
        ...


class StoreLedger:
    """The ledger in the store's ``spend_ledger`` table (the embedded broker's)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def reserve(self, key: str, amount: int, cap: int) -> int:
        """One conditional UPDATE in a worker thread."""
        return await asyncio.to_thread(spend_store.reserve, self._engine, key, amount, cap)

    async def settle(self, key: str, reserved: int, spent: int) -> None:
        """One UPDATE in a worker thread."""
        await asyncio.to_thread(spend_store.settle, self._engine, key, reserved, spent)

    async def admit(self, key: str, amount: int, cap: int) -> bool:
        """One conditional UPDATE in a worker thread."""
        return await asyncio.to_thread(spend_store.admit, self._engine, key, amount, cap)

    async def dismiss(self, key: str, amount: int) -> None:
        """One UPDATE in a worker thread."""
        await asyncio.to_thread(spend_store.dismiss, self._engine, key, amount)


# KEYS[1] ledger hash; ARGV: amount, cap, ttl seconds. 1 = reserved, 0 = no room until calls
# in flight settle, -1 = no room whatever they settle to.
_RESERVE = """
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or 0)
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or 0)
local amount, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
if spent + amount > cap then return -1 end
if spent + reserved + amount > cap then return 0 end
redis.call('HINCRBY', KEYS[1], 'reserved', amount)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""
# KEYS[1] ledger hash; ARGV: reserved to release, spent to add, ttl seconds.
_SETTLE = """
redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(ARGV[1]))
redis.call('HINCRBY', KEYS[1], 'spent', tonumber(ARGV[2]))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""
# KEYS[1] ledger hash; ARGV: amount, cap, ttl seconds. 1 = admitted.
_ADMIT = """
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or 0)
local admitted = tonumber(redis.call('HGET', KEYS[1], 'admitted') or 0)
if spent + admitted + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], 'admitted', tonumber(ARGV[1]))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""
_TTL_S = 8 * 86400  # a day's ledger outlives its day; a batch's its run


class RedisLedger:
    """The ledger in Redis hashes ``tracejury:spend:<key>`` (the Redis broker's)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)
        self._admit = redis.register_script(_ADMIT)

    async def reserve(self, key: str, amount: int, cap: int) -> int:
        """One Lua script: check and reserve atomically."""
        return int(await self._reserve(keys=[f"tracejury:spend:{key}"], args=[amount, cap, _TTL_S]))

    async def settle(self, key: str, reserved: int, spent: int) -> None:
        """One Lua script."""
        await self._settle(keys=[f"tracejury:spend:{key}"], args=[reserved, spent, _TTL_S])

    async def admit(self, key: str, amount: int, cap: int) -> bool:
        """One Lua script: check and admit atomically."""
        return bool(await self._admit(keys=[f"tracejury:spend:{key}"], args=[amount, cap, _TTL_S]))

    async def dismiss(self, key: str, amount: int) -> None:
        """One HINCRBY."""
        await self._redis.hincrby(f"tracejury:spend:{key}", "admitted", -amount)


class SpendGuard:
    """Wraps a judge call: reserve the worst case under every cap that applies, call, settle.

    Without a cap in play (no batch cap, no daily cap), a call goes straight through.
    """

    def __init__(
        self,
        call: Callable[[str, JudgeRequest], Awaitable[JudgeOutcome]],
        profiles: Mapping[str, JudgeProfile],
        ledger: Ledger,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._call = call
        self._profiles = profiles
        self._ledger = ledger
        self._now = now

    def _caps(self, name: str, profile: JudgeProfile) -> list[tuple[str, int, str, BatchCap | None]]:
        caps: list[tuple[str, int, str, BatchCap | None]] = []
        batch = BATCH_CAP.get()
        if batch is not None:
            caps.append((batch_key(batch.batch_id), nano(batch.max_cost),
                         f"batch {batch.batch_id}'s cost cap of ${batch.max_cost:g}", batch))  # fmt: skip
        if profile.max_cost_per_day is not None:
            caps.append((_day_key(name, self._now()), nano(profile.max_cost_per_day),
                         f"profile {name!r}'s daily cap of ${profile.max_cost_per_day:g}", None))  # fmt: skip
        return caps

    async def __call__(self, name: str, request: JudgeRequest) -> JudgeOutcome:
        """Call profile ``name``'s judge within its caps."""
        profile = self._profiles.get(name)
        if profile is None or profile.price is None:
            return await self._call(name, request)
        caps = self._caps(name, profile)
        if not caps:
            return await self._call(name, request)
        worst = nano(worst_case_cost(profile.price, prompt_bytes(request), len(request.messages),
                                     profile.max_output_tokens))  # fmt: skip
        hold = worst * profile.max_attempts  # every attempt may time out after being billed
        patience = profile.timeout_s * profile.max_attempts + profile.backoff_max_s * (profile.max_attempts - 1)
        taken: list[str] = []
        sent = False
        try:
            for key, cap, what, batch in caps:
                problem = await self._reserve(key, hold, cap, patience)
                if problem is not None:
                    if batch is not None:
                        batch.refused = True
                    return JudgeFailure(
                        "budget_exhausted",
                        f"not sent: its worst case (${hold / 1e9:.6f}) {problem} {what}", None, 0, 0,
                    )  # fmt: skip
                taken.append(key)
            sent = True
        finally:
            if not sent:  # refused, or the ledger failed: give back what was taken
                for k in taken:
                    await self._ledger.settle(k, hold, 0)
        spent = hold  # if the call dies, count its worst case: it may have been billed
        try:
            outcome = await self._call(name, request)
            spent = self._spent(outcome, profile, worst)
            return outcome
        finally:
            for key in taken:
                await self._ledger.settle(key, hold, spent)

    async def _reserve(self, key: str, amount: int, cap: int, patience: float) -> str | None:
        """Reserve, waiting while the calls in flight hold the room (their reservations are
        worst cases and settle lower), for at most ``patience`` seconds (the longest a call in
        flight can take); None once reserved, else why not."""
        wait, deadline = _WAIT_S, time.monotonic() + patience
        while True:
            got = await self._ledger.reserve(key, amount, cap)
            if got == 1:
                return None
            if got < 0:
                return "does not fit in what is left of"
            if time.monotonic() >= deadline:
                return f"found no room within {patience:g} s (reservations that did not settle) in"
            await asyncio.sleep(wait)
            wait = min(wait * 2, _MAX_WAIT_S)

    @staticmethod
    def _spent(outcome: JudgeOutcome, profile: JudgeProfile, worst: int) -> int:
        """What to settle a call at: its reported cost, plus the worst case of every attempt
        that timed out (it may have been billed, its usage unknown); a reply without usage is
        settled at its worst case; a refusal (HTTP error, 429) at nothing."""
        unknown = outcome.timeouts * worst
        cost = call_cost(profile.price, outcome.prompt_tokens, outcome.completion_tokens)
        if cost is not None:
            return nano(cost) + unknown
        if outcome.attempts == 0:
            return 0
        if isinstance(outcome, JudgeVerdict) or outcome.kind in _REPLIED:
            return worst + unknown
        return unknown
