"""Judge spend in the store: the cap ledger (embedded broker) and spend reports.

The ledger's amounts are integer nano-dollars. ``reserve`` is one conditional ``UPDATE``
(``spent + reserved + amount <= cap``), atomic on SQLite and PostgreSQL alike, so any number
of worker processes share a cap without a lock of their own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Integer, bindparam, cast, delete, func, select, update

from tracejury.store.engine import insert_ignoring_conflicts
from tracejury.store.tables import Batch, EvaluationRow, SpendLedger

__all__ = [
    "GROUPS", "admit", "dismiss", "drop_evaluations", "reserve", "settle", "spend_report",
    "tokens_per_evaluation", "usage", "used",
]  # fmt: skip

_L = SpendLedger.__table__
_E = EvaluationRow.__table__
_B = Batch.__table__
_JUDGED = (_E.c.evaluator_kind == "rubric", _E.c.status.in_(("scored", "judge_failed")))
"""Judge evaluations that got as far as a verdict or a failure (not n/a, not missing evidence)."""


def _ensure(conn: Connection, engine: Engine, key: str, now: datetime) -> None:
    row = {"key": key, "reserved_nusd": 0, "spent_nusd": 0, "admitted_nusd": 0, "updated_at": now}
    conn.execute(insert_ignoring_conflicts(_L, engine.dialect), [row])


def reserve(engine: Engine, key: str, amount: int, cap: int) -> int:
    """Reserve ``amount`` under ``key`` if spent + reserved + amount ≤ ``cap``: 1 if it did;
    0 if it would fit once calls in flight settle (their reservations are worst cases); -1 if
    it cannot fit whatever they settle to."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        _ensure(conn, engine, key, now)
        done = conn.execute(
            update(_L)
            .where(_L.c.key == key, _L.c.spent_nusd + _L.c.reserved_nusd + amount <= cap)
            .values(reserved_nusd=_L.c.reserved_nusd + amount, updated_at=now)
        ).rowcount
        if done == 1:
            return 1
        spent = conn.execute(select(_L.c.spent_nusd).where(_L.c.key == key)).scalar_one()
    return -1 if spent + amount > cap else 0


def settle(engine: Engine, key: str, reserved: int, spent: int) -> None:
    """Release ``reserved`` and add ``spent`` under ``key``."""
    with engine.begin() as conn:
        conn.execute(
            update(_L)
            .where(_L.c.key == key)
            .values(reserved_nusd=_L.c.reserved_nusd - reserved, spent_nusd=_L.c.spent_nusd + spent,
                    updated_at=datetime.now(UTC))  # fmt: skip
        )


def admit(engine: Engine, key: str, amount: int, cap: int) -> bool:
    """Admit a chunk expected to cost ``amount`` if spent + admitted + amount ≤ ``cap``."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        _ensure(conn, engine, key, now)
        return conn.execute(
            update(_L)
            .where(_L.c.key == key, _L.c.spent_nusd + _L.c.admitted_nusd + amount <= cap)
            .values(admitted_nusd=_L.c.admitted_nusd + amount, updated_at=now)
        ).rowcount == 1


def dismiss(engine: Engine, key: str, amount: int) -> None:
    """A chunk admitted with ``amount`` has ended."""
    with engine.begin() as conn:
        conn.execute(update(_L).where(_L.c.key == key)
                     .values(admitted_nusd=_L.c.admitted_nusd - amount, updated_at=datetime.now(UTC)))  # fmt: skip


def used(engine: Engine, key: str) -> int:
    """Spent plus reserved under ``key`` (0 when nothing was reserved yet)."""
    with engine.connect() as conn:
        row = conn.execute(select(_L.c.spent_nusd + _L.c.reserved_nusd).where(_L.c.key == key)).scalar_one_or_none()
    return int(row or 0)


def drop_evaluations(engine: Engine, batch_id: str, trace_ids: list[str]) -> int:
    """Delete a batch's evaluations of these traces (a chunk its cost cap cut short: it is
    not run, as a whole; the verdicts stay in the judge cache). Returns how many."""
    with engine.begin() as conn:
        return conn.execute(
            delete(_E).where(_E.c.batch_id == batch_id, _E.c.trace_id.in_(bindparam("ids", expanding=True))),
            {"ids": trace_ids},
        ).rowcount


def _usage_columns() -> list[Any]:
    return [
        func.coalesce(func.sum(_E.c.prompt_tokens), 0),
        func.coalesce(func.sum(_E.c.completion_tokens), 0),
        func.sum(_E.c.cost_usd),
        func.coalesce(func.sum(_E.c.saved_usd), 0.0),
        func.count(),
        func.coalesce(func.sum(_E.c.attempts), 0),
        func.sum(cast(_E.c.cached, Integer)),
        func.count(_E.c.cost_usd),
    ]


def _shape(row: Any) -> dict[str, Any]:
    prompt, completion, cost, saved, judged, attempts, cached, priced = row
    return {
        "promptTokens": int(prompt), "completionTokens": int(completion),
        "costUsd": None if cost is None else round(float(cost), 9),
        "savedUsd": round(float(saved), 9), "judgeEvaluations": int(judged),
        "cachedEvaluations": int(cached or 0), "httpAttempts": int(attempts),
        "unpricedEvaluations": int(judged) - int(priced),
    }  # fmt: skip


def usage(engine: Engine, batch_id: str) -> dict[str, Any]:
    """A batch's judge usage, in all and per evaluator: tokens, USD spent and saved.

    ``costUsd`` is None when no evaluation of it had a known cost (no price, no usage);
    ``unpricedEvaluations`` counts judge evaluations whose cost is unknown."""
    judged = (_E.c.batch_id == batch_id, *_JUDGED)
    with engine.connect() as conn:
        total = conn.execute(select(*_usage_columns()).where(*judged)).one()
        per = conn.execute(select(_E.c.evaluator_id, *_usage_columns()).where(*judged).group_by(_E.c.evaluator_id))
        evaluators = {r[0]: _shape(r[1:]) for r in per}
    return {**_shape(total), "evaluators": dict(sorted(evaluators.items()))}


GROUPS = {"rubric": _E.c.evaluator_id, "profile": _E.c.judge_profile, "release": _E.c.release_id}
"""What ``tracejury cost --by`` groups by."""


def spend_report(engine: Engine, *, since: datetime | None, by: str) -> list[dict[str, Any]]:
    """Judge spend per rubric, profile or release, since ``since`` (every time when None),
    largest first."""
    column = GROUPS[by]
    stmt = select(column, *_usage_columns()).where(*_JUDGED).group_by(column)
    if since is not None:
        stmt = stmt.where(_E.c.created_at >= since)
    with engine.connect() as conn:
        rows = [{by: r[0], **_shape(r[1:])} for r in conn.execute(stmt)]
    return sorted(rows, key=lambda r: (-(r["costUsd"] or 0.0), -r["promptTokens"], str(r[by])))


def tokens_per_evaluation(engine: Engine, evaluator_id: str, *, recent: int = 2000) -> tuple[float, float, int] | None:
    """Mean prompt and completion tokens of an evaluator's recent judge evaluations that made
    calls and were billed (the cache served none of them), and how many; None without any."""
    recent_rows = (
        select(_E.c.prompt_tokens, _E.c.completion_tokens)
        .where(_E.c.evaluator_id == evaluator_id, _E.c.cached.is_(False), _E.c.prompt_tokens.is_not(None),
               _E.c.attempts > 0)  # fmt: skip
        .order_by(_E.c.id.desc())
        .limit(recent)
        .subquery()
    )
    stmt = select(func.avg(recent_rows.c.prompt_tokens), func.avg(func.coalesce(recent_rows.c.completion_tokens, 0)),
                  func.count())  # fmt: skip
    with engine.connect() as conn:
        prompt, completion, n = conn.execute(stmt).one()
    return None if not n else (float(prompt), float(completion), int(n))
