"""Small read queries shared by the CLI and the API."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from tracejury.store.tables import QuarantinedLine

__all__ = ["evaluator_rates", "list_quarantine", "sample_bodies"]


def list_quarantine(engine: Engine, *, limit: int = 100) -> list[dict[str, Any]]:
    """Quarantined lines, newest first, in the JSON shape of ``quarantine list --json``."""
    q = QuarantinedLine.__table__
    stmt = select(q).order_by(q.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [
            {
                "source": r.source,
                "line": r.line_no,
                "traceId": r.trace_id,
                "path": r.json_path,
                "message": r.message,
                "at": r.at.isoformat(),
            }
            for r in conn.execute(stmt)
        ]


def sample_bodies(engine: Engine, release: str, *, limit: int = 2000) -> list[dict[str, Any]]:
    """Up to ``limit`` trace bodies of a release, spread over its traffic (every k-th by time)."""
    import orjson
    from sqlalchemy import func

    from tracejury.store.tables import StoredTrace

    t = StoredTrace.__table__
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).where(t.c.release_id == release)).scalar_one()
        step = max(1, total // limit)
        ranked = (
            select(t.c.body, func.row_number().over(order_by=(t.c.ts, t.c.trace_id)).label("rn"))
            .where(t.c.release_id == release)
            .subquery()
        )
        rows = conn.execute(select(ranked.c.body).where((ranked.c.rn - 1) % step == 0).limit(limit)).scalars()
        return [orjson.loads(b) for b in rows]


def evaluator_rates(engine: Engine, release: str) -> list[tuple[str, str, int, int]]:
    """(evaluator, segment key, failed verdicts, verdicts) of a release's latest evaluations."""
    from sqlalchemy import case, func

    from tracejury.store.tables import EvaluationRow, StoredTrace

    e, t = EvaluationRow.__table__, StoredTrace.__table__
    latest = select(func.max(e.c.id).label("id")).group_by(e.c.trace_id, e.c.evaluator_id).subquery("latest")
    stmt = (
        select(e.c.evaluator_id, t.c.segment_key, func.sum(case((e.c.passed.is_(False), 1), else_=0)), func.count())
        .select_from(latest.join(e, e.c.id == latest.c.id).join(t, t.c.trace_id == e.c.trace_id))
        .where(t.c.release_id == release, e.c.status == "scored")
        .group_by(e.c.evaluator_id, t.c.segment_key)
    )
    with engine.connect() as conn:
        return [(r[0], r[1], int(r[2] or 0), r[3]) for r in conn.execute(stmt)]
