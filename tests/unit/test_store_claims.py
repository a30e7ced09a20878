"""``workers.flight.StoreClaims`` over an in-memory store: an ended call's verdict reaches the
cache and its claim is released even when the store fails for a while."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from judges.evaluate import CacheKey
from judges.llm.types import JudgeVerdict
from workers.flight import StoreClaims

KEY: CacheKey = ("model", "rubric", "evidence", 0)


class _Store:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.claims: dict[CacheKey, tuple[str, bool]] = {}
        self.cache: dict[CacheKey, JudgeVerdict] = {}

    def claim(self, keys: Sequence[CacheKey], owner: str, ttl: float) -> tuple[set[CacheKey], set[CacheKey]]:
        for k in keys:
            self.claims.setdefault(k, (owner, False))
        return {k for k in keys if self.claims[k] == (owner, False)}, {k for k in keys if self.claims[k][1]}

    def put(self, items: Sequence[tuple[CacheKey, JudgeVerdict]]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database is locked")
        self.cache.update(items)

    def release(self, judged: Sequence[CacheKey], failed: Sequence[CacheKey], owner: str) -> None:
        for k in judged:
            self.claims[k] = (owner, True)
        for k in failed:
            self.claims.pop(k, None)

    def get(self, keys: Sequence[CacheKey]) -> Mapping[CacheKey, JudgeVerdict]:
        return {k: self.cache[k] for k in keys if k in self.cache}


def _claims(store: _Store) -> StoreClaims:
    return StoreClaims(owner="w1", claim=store.claim, release=store.release, renew=lambda owner, ttl: None,
                       cache_get=store.get, cache_put=store.put, tick_s=0.001)  # fmt: skip


def test_a_failed_cache_write_is_tried_again_and_the_claim_released() -> None:
    store = _Store(failures=3)
    verdict = JudgeVerdict("pass", "ok", 0.9, 10, 2, 1, 5, "mock-judge")

    async def run() -> None:
        claims = _claims(store)
        assert await claims.acquire(KEY) is None  # ours to call
        claims.release(KEY, verdict)
        for _ in range(200):
            await asyncio.sleep(0.01)
            if store.claims.get(KEY) == ("w1", True):
                break

    asyncio.run(run())
    assert store.cache == {KEY: verdict}
    assert store.claims[KEY] == ("w1", True)  # done: another process reads the cache
