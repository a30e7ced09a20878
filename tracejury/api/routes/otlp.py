"""OTLP/HTTP receiver: ``POST /v1/traces`` and ``POST /v1/logs`` (``docs/otlp.md``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from tracejury.api.deps import EngineDep, SettingsDep, require_role
from tracejury.api.otlp import JSON, PROTOBUF, export_logs, export_traces
from tracejury.settings import Settings
from tracejury.store.tokens import Principal

router = APIRouter(tags=["otlp"])

_BINARY = {"schema": {"type": "string", "format": "binary"}}


def _openapi(what: str, rejected: str) -> dict[str, object]:
    schema = {"type": "object", "properties": {"partialSuccess": {"type": "object", "properties": {
        rejected: {"type": "string"}, "errorMessage": {"type": "string"}}}}}  # fmt: skip
    return {
        "requestBody": {"required": True, "content": {
            JSON: {"schema": {"type": "object", "description": f"{what}, OTLP/JSON encoding"}}, PROTOBUF: _BINARY}},
        "responses": {
            "200": {"description": "The export response in the request's encoding; partialSuccess names what "
                    "could not be read", "content": {JSON: {"schema": schema}, PROTOBUF: _BINARY}},
            "503": {"description": "The OTLP staging is full: retry after Retry-After seconds"},
        },
    }  # fmt: skip


async def _export(handle: Callable[..., tuple[bytes, str]], request: Request, engine: Engine, settings: Settings,
                  principal: Principal) -> Response:  # fmt: skip
    """One export request through ``handle`` (``export_traces`` or ``export_logs``) off the event loop."""
    body, headers = await request.body(), request.headers
    content, media = await run_in_threadpool(handle, engine, settings, f"otlp:{principal.token_id}", body,
                                             headers.get("content-type"), headers.get("content-encoding"))  # fmt: skip
    return Response(content, media_type=media)


@router.post("/v1/traces", summary="Ingest OpenTelemetry traces (OTLP/HTTP, protobuf or JSON)",
             openapi_extra=_openapi("ExportTraceServiceRequest", "rejectedSpans"), response_class=Response)  # fmt: skip
async def otlp_traces(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    principal: Annotated[Principal, Depends(require_role("ingest"))],
) -> Response:
    """Stage spans that follow the GenAI semantic conventions or OpenInference; each trace (one
    per OTLP trace id, its spans in any number of requests) is assembled once its root span has
    arrived and nothing more for ``TRACEJURY_OTLP_TRACE_IDLE_S``, and ingested like
    ``POST /traces``. Unreadable spans are counted and named in ``partialSuccess``."""
    return await _export(export_traces, request, engine, settings, principal)


@router.post("/v1/logs", summary="Ingest OpenTelemetry log records (OTLP/HTTP): GenAI content events",
             openapi_extra=_openapi("ExportLogsServiceRequest", "rejectedLogRecords"),
             response_class=Response)  # fmt: skip
async def otlp_logs(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    principal: Annotated[Principal, Depends(require_role("ingest"))],
) -> Response:
    """Stage log records that name a span (trace and span id), such as the GenAI instrumentations'
    message events; they are joined to their span when its trace is assembled. Records without a
    span are counted and named in ``partialSuccess``."""
    return await _export(export_logs, request, engine, settings, principal)
