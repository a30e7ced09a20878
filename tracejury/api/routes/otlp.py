"""OTLP/HTTP trace receiver: ``POST /v1/traces`` (``docs/otlp.md``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from tracejury.api.deps import EngineDep, SettingsDep, require_role
from tracejury.api.otlp import JSON, PROTOBUF, export_traces
from tracejury.store.tokens import Principal

router = APIRouter(tags=["otlp"])

_RESPONSE_SCHEMA = {
    "type": "object",
    "properties": {
        "partialSuccess": {
            "type": "object",
            "properties": {"rejectedSpans": {"type": "string"}, "errorMessage": {"type": "string"}},
        }
    },
}
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {"schema": {"type": "object", "description": "ExportTraceServiceRequest, OTLP/JSON encoding"}},
            PROTOBUF: _BINARY,
        },
    },
    "responses": {
        "200": {
            "description": "ExportTraceServiceResponse in the request's encoding; partialSuccess names what "
            "was not stored",
            "content": {JSON: {"schema": _RESPONSE_SCHEMA}, PROTOBUF: _BINARY},
        }
    },
}


@router.post("/v1/traces", summary="Ingest OpenTelemetry traces (OTLP/HTTP, protobuf or JSON)",
             openapi_extra=_OPENAPI, response_class=Response)  # fmt: skip
async def otlp_traces(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    principal: Annotated[Principal, Depends(require_role("ingest"))],
) -> Response:
    """Map spans that follow the GenAI semantic conventions or OpenInference to traces (one per
    OTLP trace id) and ingest them like ``POST /traces``; spans and traces that cannot be mapped
    or are quarantined are counted and named in ``partialSuccess``."""
    content, media = await run_in_threadpool(
        export_traces,
        engine,
        settings,
        f"otlp:{principal.token_id}",
        await request.body(),
        request.headers.get("content-type"),
        request.headers.get("content-encoding"),
    )
    return Response(content, media_type=media)
