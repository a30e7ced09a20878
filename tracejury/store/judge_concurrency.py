"""Judge concurrency limits as the processes that judge last reported them (``judge_concurrency``).

Each worker process (and ``tracejury score``) writes one row per judge profile about once a
second while it judges (:func:`publish`); ``/metrics`` and ``batch status`` read the fresh
rows (:func:`live`), summed per profile and endpoint: a limit shared through Redis counts
once, per-process limits add up (each process may have that many calls in flight).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, select

from tracejury.store.tables import JudgeConcurrency

__all__ = ["FRESH_S", "ConcurrencyReport", "EndpointConcurrency", "live", "publish", "withdraw"]

_T = JudgeConcurrency.__table__
FRESH_S = 30.0
"""A row older than this is a process that stopped judging (or died): not reported."""
_FORGET_S = 3600.0


@dataclass(frozen=True)
class ConcurrencyReport:
    """One process's view of one profile's limit."""

    holder: str
    """The process's limiter (unique per process and profile)."""
    profile: str
    endpoint: str
    shared: bool
    limit: int
    in_flight: int


@dataclass(frozen=True)
class EndpointConcurrency:
    """A profile's endpoint's limit across the processes that judge with it now."""

    profile: str
    endpoint: str
    limit: int
    """Calls that may be in flight to the endpoint: the shared limit, or the per-process limits summed."""
    in_flight: int
    """Calls in flight, every process's."""
    processes: int
    """Processes that reported in the last ``FRESH_S`` seconds."""
    shared: bool
    """Whether the limit is one for all processes (Redis) or each process's own."""

    def as_json(self) -> dict[str, object]:
        """camelCase, as ``batch status --json`` prints it."""
        return {"profile": self.profile, "endpoint": self.endpoint, "limit": self.limit, "inFlight": self.in_flight,
                "processes": self.processes, "shared": self.shared}  # fmt: skip


def publish(engine: Engine, reports: Sequence[ConcurrencyReport], now: datetime | None = None) -> None:
    """Replace these holders' rows (and forget rows an hour old: processes long gone)."""
    now = now or datetime.now(UTC)
    rows = [{"holder": r.holder, "profile": r.profile, "endpoint": r.endpoint[:512], "shared": r.shared,
             "concurrency_limit": r.limit, "in_flight": r.in_flight, "updated_at": now} for r in reports]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(delete(_T).where(_T.c.holder.in_([r.holder for r in reports])
                                      | (_T.c.updated_at < now - timedelta(seconds=_FORGET_S))))  # fmt: skip
        if rows:
            conn.execute(_T.insert(), rows)


def withdraw(engine: Engine, holders: Sequence[str]) -> None:
    """These holders stopped judging (their process closes its clients): drop their rows."""
    if holders:
        with engine.begin() as conn:
            conn.execute(delete(_T).where(_T.c.holder.in_(list(holders))))


def live(engine: Engine, now: datetime | None = None, fresh_s: float = FRESH_S) -> list[EndpointConcurrency]:
    """Each (profile, endpoint) some process reported in the last ``fresh_s`` seconds, by name."""
    since = (now or datetime.now(UTC)) - timedelta(seconds=fresh_s)
    with engine.connect() as conn:
        rows = conn.execute(select(_T).where(_T.c.updated_at >= since)).mappings().all()
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["profile"], row["endpoint"]), []).append(dict(row))
    out = []
    for (profile, endpoint), group in sorted(groups.items()):
        shared = all(r["shared"] for r in group)
        newest = max(group, key=lambda r: r["updated_at"])
        limit = newest["concurrency_limit"] if shared else sum(r["concurrency_limit"] for r in group)
        in_flight = sum(r["in_flight"] for r in group)
        out.append(EndpointConcurrency(profile, endpoint, limit, in_flight, len(group), shared))
    return out
