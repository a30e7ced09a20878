"""The one dependency object of the scoring pipeline, built in one place.

``ScoringDeps`` holds every I/O the pipeline does (load traces, judge cache, save, judge
calls). ``production_deps`` wires the store and real HTTP judge clients; tests build a
``ScoringDeps`` directly with fakes, overriding one dependency per scenario.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy import Engine

from judges.evaluate import CacheKey
from judges.llm.client import JudgeClient
from judges.llm.profiles import JudgeProfile
from judges.llm.transport import make_http_client
from judges.llm.types import JudgeOutcome, JudgeRequest, JudgeVerdict
from tracejury.core.cost import Price
from tracejury.core.evaluation import Evaluation
from tracejury.settings import Settings
from tracejury.store import evaluations as store
from tracejury.store import judge_concurrency as concurrency_store
from workers.judge_concurrency import ConcurrencyPublisher
from workers.limits import RedisLimiter
from workers.spend import Ledger, RedisLedger, SpendGuard, StoreLedger

__all__ = ["ScoringDeps", "production_deps"]


@dataclass
class ScoringDeps:
    """Everything the scoring pipeline reads, writes or calls."""

    load_traces: Callable[[Sequence[str]], Mapping[str, tuple[dict[str, Any], str]]]
    """Trace ids → {id: (trace dict, segment key)}; unknown ids are absent."""
    cache_get: Callable[[Sequence[CacheKey]], Mapping[CacheKey, JudgeVerdict]]
    """Cached verdicts for the keys that have one."""
    cache_put: Callable[[Sequence[tuple[CacheKey, JudgeVerdict]]], None]
    """Remember fresh verdicts."""
    save: Callable[[str, Sequence[Evaluation]], None]
    """Store a batch's evaluations (idempotent)."""
    judge_call: Callable[[str, JudgeRequest], Awaitable[JudgeOutcome]]
    """Call the judge of a profile."""
    models: Mapping[str, str]
    """Profile name → model."""
    prices: Mapping[str, Price | None] = field(default_factory=dict)
    """Profile name → price (absent or None: spend in tokens only)."""
    ledger: Ledger | None = None
    """The cost caps' ledger (present when a profile has a price)."""
    settle: Callable[[], Awaitable[None]] | None = None
    """Give back shared resources held but idle (judge concurrency slots leased from Redis) and
    report the judge concurrency limits; called when a chunk ends, as nothing runs the worker's
    event loop between chunks."""


def _cache_get(engine: Engine, keys: Sequence[CacheKey]) -> dict[CacheKey, JudgeVerdict]:
    return {
        k: JudgeVerdict(
            label=v.label,
            rationale=v.rationale,
            confidence=v.confidence,
            prompt_tokens=v.prompt_tokens,
            completion_tokens=v.completion_tokens,
            attempts=0,
            latency_ms=0,
            model=k[0],
        )  # fmt: skip
        for k, v in store.cache_get(engine, keys).items()
    }


def _cache_put(engine: Engine, entries: Sequence[tuple[CacheKey, JudgeVerdict]]) -> None:
    store.cache_put(engine, [
        (k, store.CachedVerdict(v.label, v.rationale, v.confidence, v.prompt_tokens,
                                v.completion_tokens))
        for k, v in entries
    ])  # fmt: skip


@asynccontextmanager
async def production_deps(
    engine: Engine, settings: Settings, profiles: Mapping[str, JudgeProfile]
) -> AsyncIterator[ScoringDeps]:
    """Deps on the store and real judge clients (one HTTP client per profile), closed on exit.

    With a Redis broker, each profile's requests/min, tokens/min and concurrency are shared
    by every worker process through Redis; with the embedded broker they hold per process.
    Cost caps (a batch's, a profile's daily) hold across every process either way: their
    ledger is Redis with a Redis broker, else the store (``workers.spend``). Each client's
    concurrency limit is reported to the store about once a second (``/metrics``, ``batch
    status``)."""
    clients: dict[str, JudgeClient] = {}
    http_clients = []
    limiters: list[RedisLimiter] = []
    redis = _shared_redis(settings)
    publisher: ConcurrencyPublisher | None = None
    try:
        for name, profile in profiles.items():
            http = make_http_client(profile)
            http_clients.append(http)
            shared = (
                RedisLimiter(redis, name, requests_per_minute=profile.requests_per_minute,
                             tokens_per_minute=profile.tokens_per_minute, max_concurrency=profile.max_concurrency,
                             adaptive=profile.concurrency_settings())
                if redis is not None else None
            )  # fmt: skip
            if shared is not None:
                limiters.append(shared)
            clients[name] = JudgeClient(
                http, profile, base_url=settings.judge_base_url,
                api_key=settings.api_key(profile.api_key_env),
                limiter=shared, concurrency=shared,
            )  # fmt: skip

        publisher = ConcurrencyPublisher(clients, partial(concurrency_store.publish, engine),
                                         partial(concurrency_store.withdraw, engine))  # fmt: skip
        publisher.start()

        async def direct_call(profile: str, request: JudgeRequest) -> JudgeOutcome:
            return await clients[profile].judge(request)

        judge_call = direct_call
        ledger: Ledger | None = None
        if any(p.price is not None for p in profiles.values()):  # a cost cap may apply: guard
            ledger = RedisLedger(redis) if redis is not None else StoreLedger(engine)
            judge_call = SpendGuard(direct_call, profiles, ledger)

        async def settle() -> None:
            for limiter in limiters:
                await limiter.settle()
            assert publisher is not None
            await publisher.flush()

        yield ScoringDeps(
            load_traces=partial(store.load_traces, engine),
            cache_get=partial(_cache_get, engine),
            cache_put=partial(_cache_put, engine),
            save=partial(store.save_evaluations, engine),
            judge_call=judge_call,
            models={name: p.model for name, p in profiles.items()},
            prices={name: p.price for name, p in profiles.items()},
            ledger=ledger,
            settle=settle,
        )
    finally:
        if publisher is not None:
            await publisher.aclose()
        for limiter in limiters:
            await limiter.aclose()
        for http in http_clients:
            await http.aclose()
        if redis is not None:
            await redis.aclose()
            await redis.connection_pool.disconnect()


def _shared_redis(settings: Settings) -> Redis | None:
    """A Redis client for shared limits when the broker is Redis, else None."""
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        return None
    pool = BlockingConnectionPool.from_url(settings.broker_url, max_connections=32)
    return Redis(connection_pool=pool)
