"""Traces: ingest (JSON array or JSON lines), read one, its evaluations; weak signals;
quarantine."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from tracejury.api.deps import EngineDep, SettingsDep, require_role
from tracejury.api.ingest import body_lines, ingest_body
from tracejury.store.tokens import Principal

router = APIRouter(tags=["traces"])

_INGEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
}


@router.post("/traces", summary="Ingest traces (JSON array or JSON lines)", openapi_extra=_INGEST_BODY)
async def ingest(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    principal: Annotated[Principal, Depends(require_role("ingest"))],
) -> dict[str, int]:
    """Validate and store traces; invalid ones are quarantined (``GET /quarantine``) and the
    rest still ingest. Re-sending a trace is idempotent. Returns the counts."""
    lines = body_lines(await request.body(), request.headers.get("content-type"))
    return await run_in_threadpool(ingest_body, engine, settings, f"http:{principal.token_id}", lines)


@router.get("/traces/{trace_id}", summary="One trace as ingested",
            dependencies=[Depends(require_role("reviewer"))])  # fmt: skip
def get_trace(trace_id: str, engine: EngineDep) -> dict[str, Any]:
    """The trace's canonical body and segment key."""
    from tracejury.store.traces import get_trace as read

    return read(engine, trace_id)


@router.get("/traces/{trace_id}/evaluations", summary="Every evaluation of a trace",
            dependencies=[Depends(require_role("reviewer"))])  # fmt: skip
def trace_evaluations(trace_id: str, engine: EngineDep) -> list[dict[str, Any]]:
    """Evaluations of the trace across batches, oldest first."""
    from tracejury.store.traces import trace_evaluations as read

    return read(engine, trace_id)


@router.get("/signals", summary="Weak signals per release and segment group",
            dependencies=[Depends(require_role())])  # fmt: skip
def signals(
    engine: EngineDep,
    settings: SettingsDep,
    release: Annotated[list[str], Query(min_length=1)],
    by: str = "",
) -> list[dict[str, Any]]:
    """As ``tracejury signals --json``: counts, latency percentiles and rates."""
    from tracejury.store.signals import release_signals
    from workers.service import dims

    groups = dims(by, settings, option="by")
    return [row.as_dict() for r in release for row in release_signals(engine, r, groups)]


@router.get("/quarantine", summary="Quarantined lines, newest first", dependencies=[Depends(require_role())])
def quarantine(engine: EngineDep, limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> list[dict[str, Any]]:
    """As ``tracejury quarantine list --json``."""
    from tracejury.store.queries import list_quarantine

    return list_quarantine(engine, limit=limit)
