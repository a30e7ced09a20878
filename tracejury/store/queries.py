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
        return [orjson.loads(b) for b in rows if b]  # pruned traces have no body


def evaluator_rates(engine: Engine, release: str, *, batch: str | None = None) -> list[tuple[str, str, Any]]:
    """(evaluator, segment key, ``Arm``) of a release's verdicts, counted as gates count them:
    the newest done batch that scored the evaluator in the release (or ``batch``), each
    verdict weighted by its 1/p (Horvitz–Thompson), a reviewer's newest label in place of the
    judge's verdict unless the audit alone drew the trace; each arm holds its audit labels
    (``Arm.audit``) of the version its batch scored, for calibration."""
    from tracejury.core.calibration import AuditCells
    from tracejury.core.gates import Arm, GateSpec
    from tracejury.store.gate_aggregate import ArmTraffic, aggregate, audit_rows, batch_rows, distinct_values
    from tracejury.store.tables import EvaluationRow

    e = EvaluationRow.__table__
    out: list[tuple[str, str, Any]] = []
    traffic = ArmTraffic(release)
    with engine.connect() as conn:
        if batch is None:
            evaluators = distinct_values(conn, e.c.evaluator_id, [])
        else:
            evaluators = list(conn.execute(select(e.c.evaluator_id).where(e.c.batch_id == batch).distinct()).scalars())
        for evaluator in sorted(evaluators):
            spec = GateSpec.model_validate({"id": "diff", "metric": {"evaluator": evaluator}})
            if batch is None:
                batches: list[str] = []
                rows = aggregate(conn, spec, traffic, [], batches)  # appends the batch it read
            else:
                batches, rows = [batch], batch_rows(conn, spec, release, batch)
            acc: dict[str, list[Any]] = {}
            for key, _w, _v, failures, n, wf, ws, wsq, wsqf, jf, _wjf, _m, _wm, _sid, labels in rows:
                if key is None:
                    continue
                a = acc.setdefault(key, [0, 0, 0.0, 0.0, 0.0, 0, 0, 0.0])
                for i, value in enumerate((failures, n, wf, ws, wsq, jf, labels, wsqf)):
                    a[i] += value
            audit: dict[str, list[tuple[bool, bool, int, float, float]]] = {}
            for key, _w, g, h, count, v, v2 in audit_rows(conn, spec, traffic, [], batches):
                audit.setdefault(key, []).append((g, h, count, v, v2))
            out += [(evaluator, key, Arm(*a[:6], human_labels=a[6], weight_sq_failed=a[7],
                                         audit=AuditCells.grouped(audit.get(key, ()))))
                    for key, a in sorted(acc.items()) if a[1] > 0]  # fmt: skip
    return out
