"""Reading one trace and its evaluations (the API's trace view and the review page)."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Engine, select

from tracejury.core.errors import NotFound
from tracejury.store.tables import EvaluationRow, StoredTrace

__all__ = ["evaluation_json", "get_trace", "trace_evaluations"]

_T = StoredTrace.__table__
_E = EvaluationRow.__table__


def get_trace(engine: Engine, trace_id: str) -> dict[str, Any]:
    """The trace as ingested (canonical JSON body), with its release and segment key."""
    with engine.connect() as conn:
        row = conn.execute(select(_T.c.body, _T.c.segment_key).where(_T.c.trace_id == trace_id)).first()
    if row is None:
        raise NotFound(f"no trace {trace_id!r}")
    if not row.body:  # pruned (docs/retention.md): the text is gone
        return {"trace": None, "segmentKey": row.segment_key, "pruned": True}
    return {"trace": orjson.loads(row.body), "segmentKey": row.segment_key}


def evaluation_json(r: Any) -> dict[str, Any]:
    """One evaluation row in the API's JSON shape."""
    return {
        "id": r.id, "batchId": r.batch_id, "traceId": r.trace_id, "evaluator": r.evaluator_id,
        "evaluatorVersion": r.evaluator_version, "kind": r.evaluator_kind, "status": r.status,
        "label": r.label, "passed": r.passed, "score": r.score, "confidence": r.confidence,
        "rationale": r.rationale, "failureKind": r.failure_kind, "httpStatus": r.http_status,
        "attempts": r.attempts, "error": r.error, "judgeModel": r.judge_model,
        "sampleLabels": r.sample_labels.split(",") if r.sample_labels else [],
        "latencyMs": r.latency_ms, "cached": r.cached, "createdAt": r.created_at.isoformat(),
    }  # fmt: skip


def trace_evaluations(engine: Engine, trace_id: str) -> list[dict[str, Any]]:
    """Every evaluation of a trace, oldest first; NotFound if the trace is not stored."""
    with engine.connect() as conn:
        if conn.execute(select(_T.c.trace_id).where(_T.c.trace_id == trace_id)).first() is None:
            raise NotFound(f"no trace {trace_id!r}")
        rows = conn.execute(select(_E).where(_E.c.trace_id == trace_id).order_by(_E.c.id)).all()
    return [evaluation_json(r) for r in rows]
