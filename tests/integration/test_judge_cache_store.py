"""The judge cache and the judge claims in the store, on SQLite and PostgreSQL: what a chunk
reads before judging, and who may call the judge for a question."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from tracejury.store.evaluations import CachedVerdict, cache_get, cache_put, claim_keys, release_keys
from tracejury.store.tables import JudgeClaim


def _key(i: int, fingerprint: str = "fp", sample: int = 0, model: str = "m") -> tuple[str, str, str, int]:
    return (model, fingerprint, f"ev{i:05d}", sample)


def test_cache_get_finds_every_cached_key_across_groups_and_long_lists(engine: Any) -> None:
    """Keys of several (model, fingerprint, sample) groups, one group longer than a statement
    takes: every cached one comes back with its own verdict, nothing else does."""
    cached = [_key(i) for i in range(0, 4500, 2)]  # 2,250 in one group: more than one statement
    cached += [_key(i, "fp2") for i in range(10)] + [_key(i, sample=1) for i in range(10)]
    cached += [_key(i, model="m2") for i in range(10)]
    cache_put(engine, [(k, CachedVerdict(f"label-{k[0]}-{k[1]}-{k[3]}", k[2], 0.5, 7, 3)) for k in cached])
    asked = [_key(i) for i in range(4500)] + [_key(i, "fp2") for i in range(20)] + [_key(3, "fp3")]
    asked += [_key(i, sample=1) for i in range(20)] + [_key(i, model="m2") for i in range(20)]
    found = cache_get(engine, asked)
    assert set(found) == set(cached)
    for k, v in found.items():
        assert (v.label, v.rationale, v.confidence, v.prompt_tokens, v.completion_tokens) == (
            f"label-{k[0]}-{k[1]}-{k[3]}", k[2], 0.5, 7, 3)
    assert cache_get(engine, []) == {}


def test_claims_new_held_expired_own_and_settled_keys(engine: Any) -> None:
    """claim_keys: a key no one holds is ours; one another live process holds is not; one whose
    holder stopped renewing it is taken over; our own earlier claim stays ours; a key whose call
    ended with a verdict is settled (read it from the cache); a failed call's key is free again."""
    new, held, expired, own, settled, failed = (_key(i) for i in range(6))
    assert claim_keys(engine, [held, settled, failed], "alive", 30) == ({held, settled, failed}, set())
    assert claim_keys(engine, [expired], "dead", 30) == ({expired}, set())
    assert claim_keys(engine, [own], "me", 30) == ({own}, set())
    with engine.begin() as conn:  # the dead process stopped renewing: its claim ran out
        conn.execute(update(JudgeClaim).where(JudgeClaim.owner == "dead")
                     .values(expires_at=datetime.now(UTC) - timedelta(seconds=5)))  # fmt: skip
    release_keys(engine, [settled], [failed], "alive")  # one call ended with a verdict, one failed
    ours, done = claim_keys(engine, [new, held, expired, own, settled, failed], "me", 30)
    assert (ours, done) == ({new, expired, own, failed}, {settled})
    with engine.connect() as conn:
        owners = dict(conn.execute(select(JudgeClaim.owner, func.count()).group_by(JudgeClaim.owner)).all())
    assert owners == {"alive": 2, "me": 4}  # held and settled stay the live process's
    assert claim_keys(engine, [held], "alive", 30) == ({held}, set())  # still its own
    assert claim_keys(engine, [], "me", 30) == (set(), set())


def test_renewing_extends_only_the_owners_calls_in_flight_and_drops_expired_claims(engine: Any) -> None:
    """renew_claims: the owner's calls in flight get a new expiry; its finished calls, other
    owners' claims and claims expired a minute ago are not extended; the long-expired go."""
    from tracejury.store.evaluations import renew_claims

    mine, mine_done, theirs, stale = (_key(i) for i in range(4))
    claim_keys(engine, [mine, mine_done], "me", 1)
    claim_keys(engine, [theirs], "alive", 1)
    claim_keys(engine, [stale], "dead", 1)
    release_keys(engine, [mine_done], [], "me")
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    with engine.begin() as conn:
        conn.execute(update(JudgeClaim).where(JudgeClaim.owner == "dead").values(expires_at=long_ago))
    renew_claims(engine, "me", 600)
    with engine.connect() as conn:
        rows = {r.owner + ("/done" if r.done else ""): r.expires_at for r in conn.execute(select(JudgeClaim))}

    def left(owner: str) -> float:
        at = rows[owner] if rows[owner].tzinfo else rows[owner].replace(tzinfo=UTC)
        return (at - datetime.now(UTC)).total_seconds()

    assert set(rows) == {"me", "me/done", "alive"}  # the dead process's claim is gone
    assert 590 < left("me") <= 600
    assert left("me/done") <= 60 and left("alive") <= 1
