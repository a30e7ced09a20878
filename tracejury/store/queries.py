"""Small read queries shared by the CLI and the API."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from tracejury.store.tables import QuarantinedLine

__all__ = ["list_quarantine"]


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
