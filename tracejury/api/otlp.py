"""OTLP receiver (HTTP here; gRPC in ``otlp_grpc`` calls the same ``accept_*``): decode an
``ExportTraceServiceRequest`` or ``ExportLogsServiceRequest`` (protobuf read directly, or
OTLP/JSON; optionally gzip/deflate), stage its spans and log records durably
(``tracejury.store.otlp_staging``), and answer with the export response whose
``partial_success`` names what could not be read. The sweeper assembles each trace once it is
whole and ingests it through the same validation, quarantine and idempotency as
``tracejury ingest``.

A body that cannot be read at all is an ``ApiError`` (400, 413 or 415), never a partial
success: nothing of it is staged. A full staging is 503 with ``Retry-After`` (exporters retry).
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from sqlalchemy import Engine

from tracejury.api.errors import ApiError
from tracejury.core.errors import InputError
from tracejury.core.otlp_pb import decode_logs_pb, decode_spans_pb
from tracejury.core.otlp_spans import LogRecord, Span, SpanReport, decode_logs, decode_spans
from tracejury.settings import Settings

__all__ = ["JSON", "PROTOBUF", "Accepted", "accept_logs", "accept_spans", "decode_body", "export_logs", "export_traces"]

log = logging.getLogger("tracejury.api.otlp")

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_LISTED = 50
"""Reports spelled out in ``error_message``; the rest are counted."""


def _decompress(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    coding = (encoding or "identity").strip().lower()
    if coding == "identity":
        return body
    if coding not in ("gzip", "x-gzip", "deflate"):
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Encoding {coding!r} is not supported (gzip, deflate or identity)")  # fmt: skip
    # 47 = detect a gzip or zlib header; HTTP's "deflate" is zlib, but raw deflate is common too
    for wbits in (47,) if coding != "deflate" else (47, -15):
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(body, max_bytes + 1)
        except zlib.error as exc:
            if wbits == 47 and coding == "deflate":
                continue
            raise ApiError(400, "invalid_otlp", f"{coding} body cannot be decompressed: {exc}") from exc
        if len(out) > max_bytes:
            raise ApiError(413, "too_large", f"decompressed request body larger than {max_bytes} bytes")
        if not inflater.eof:
            raise ApiError(400, "invalid_otlp", f"{coding} body is truncated")
        return out
    raise ApiError(400, "invalid_otlp", "deflate body cannot be decompressed")  # pragma: no cover


def _parse(raw: bytes, media: str, message: Message) -> Message | dict[str, Any]:
    """The request: the protobuf ``message`` filled in, or the OTLP/JSON document."""
    name = type(message).__name__
    if media == PROTOBUF:
        try:
            message.ParseFromString(raw)
        except (DecodeError, RuntimeError) as exc:  # RuntimeError: nesting past protobuf's recursion limit
            raise ApiError(400, "invalid_otlp", f"body is not a protobuf {name}: {exc}") from exc
        return message
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_otlp", f"body is not OTLP/JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ApiError(400, "invalid_otlp", f"body must be a JSON object ({name}), got {type(doc).__name__}")
    return doc


def decode_body(body: bytes, content_type: str | None, content_encoding: str | None, max_bytes: int,
                message: Message) -> Message | dict[str, Any]:  # fmt: skip
    """The request in a body: ``message`` (e.g. an empty ``ExportTraceServiceRequest``) filled
    from protobuf, or the OTLP/JSON document; ``ApiError`` 400/413/415 when it cannot be read."""
    return _parse(_decompress(body, content_encoding, max_bytes), _media(content_type), message)


def _media(content_type: str | None) -> str:
    media = (content_type or "").split(";")[0].strip().lower()
    if media not in (PROTOBUF, JSON):
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Type {media or '(none)'!r} is not {PROTOBUF} or {JSON}")  # fmt: skip
    return media


@dataclass(frozen=True)
class Accepted:
    """What happened to one export request: staged, or reported as unreadable."""

    staged: int
    """Spans (or log records) staged for assembly."""
    reports: list[SpanReport]
    """Spans or records that could not be read, and why."""
    noun: str = "span"

    @property
    def rejected(self) -> int:
        """Spans or records not staged."""
        return sum(r.rejected_spans for r in self.reports)

    def message(self) -> str:
        """One line for ``partial_success.error_message``; empty when there is nothing to say."""
        if not self.reports:
            return ""
        head = f"{self.staged} {self.noun}(s) staged for assembly; {self.rejected} rejected"
        listed = "".join(f"; {r}" for r in self.reports[:MAX_LISTED])
        more = len(self.reports) - MAX_LISTED
        return head + listed + (f"; and {more} more" if more > 0 else "")


def _stage(engine: Engine, settings: Settings, source: str, spans: list[Span],
           logs: list[LogRecord]) -> list[SpanReport]:  # fmt: skip
    """Stage; the traces that could not be staged, as reports."""
    from tracejury.core.redaction import load_policy
    from tracejury.store.otlp_staging import StagingFull, stage

    redaction = load_policy(settings.redaction_path, hmac_key=settings.redaction_hmac_key)
    try:
        return stage(engine, source, spans, logs, max_items=settings.otlp_max_staged_spans,
                     redaction=redaction).reports  # fmt: skip
    except StagingFull as exc:
        raise ApiError(503, "staging_full", str(exc), {"Retry-After": "5"}) from exc


def accept_spans(engine: Engine, settings: Settings, source: str, request: Message | dict[str, Any]) -> Accepted:
    """Stage the spans of an ``ExportTraceServiceRequest`` (protobuf message or OTLP/JSON dict)."""
    try:
        spans, reports = decode_spans_pb(request) if isinstance(request, Message) else decode_spans(request)
    except InputError as exc:
        raise ApiError(400, "invalid_otlp", str(exc)) from exc
    unstaged = _stage(engine, settings, source, spans, [])
    reports = [*reports, *unstaged]
    for report in reports:
        log.warning("OTLP %s: %s", source, report)
    return Accepted(len(spans) - sum(r.rejected_spans for r in unstaged), reports)


def accept_logs(engine: Engine, settings: Settings, source: str, request: Message | dict[str, Any]) -> Accepted:
    """Stage the log records of an ``ExportLogsServiceRequest`` that name a span; GenAI content
    events among them are joined to their spans when the trace is assembled."""
    try:
        records, reports = decode_logs_pb(request) if isinstance(request, Message) else decode_logs(request)
    except InputError as exc:
        raise ApiError(400, "invalid_otlp", str(exc)) from exc
    unstaged = _stage(engine, settings, source, [], records)
    reports = [*reports, *unstaged]
    if reports:  # one line, not one per record: apps also send logs that belong to no span
        log.warning("OTLP %s: %d log record(s) name no span and were not staged; first: %s", source, len(reports),
                    reports[0])  # fmt: skip
    return Accepted(len(records) - sum(r.rejected_spans for r in unstaged), reports, noun="log record")


def trace_response(accepted: Accepted) -> ExportTraceServiceResponse:
    """The ``ExportTraceServiceResponse`` for ``accepted``."""
    if not accepted.message():
        return ExportTraceServiceResponse()
    partial = ExportTracePartialSuccess(rejected_spans=accepted.rejected, error_message=accepted.message())
    return ExportTraceServiceResponse(partial_success=partial)


def logs_response(accepted: Accepted) -> ExportLogsServiceResponse:
    """The ``ExportLogsServiceResponse`` for ``accepted``."""
    if not accepted.message():
        return ExportLogsServiceResponse()
    partial = ExportLogsPartialSuccess(rejected_log_records=accepted.rejected, error_message=accepted.message())
    return ExportLogsServiceResponse(partial_success=partial)


def _encode(response: Message, media: str) -> tuple[bytes, str]:
    if media == PROTOBUF:
        return response.SerializeToString(), PROTOBUF
    return orjson.dumps(MessageToDict(response, preserving_proto_field_name=False)), JSON


def export_traces(engine: Engine, settings: Settings, source: str, body: bytes, content_type: str | None,
                  content_encoding: str | None) -> tuple[bytes, str]:  # fmt: skip
    """Handle one ``POST /v1/traces``: the response body and its media type."""
    request = decode_body(body, content_type, content_encoding, settings.api_max_body_bytes,
                          ExportTraceServiceRequest())  # fmt: skip
    return _encode(trace_response(accept_spans(engine, settings, source, request)), _media(content_type))


def export_logs(engine: Engine, settings: Settings, source: str, body: bytes, content_type: str | None,
                content_encoding: str | None) -> tuple[bytes, str]:  # fmt: skip
    """Handle one ``POST /v1/logs``: the response body and its media type."""
    request = decode_body(body, content_type, content_encoding, settings.api_max_body_bytes,
                          ExportLogsServiceRequest())  # fmt: skip
    return _encode(logs_response(accept_logs(engine, settings, source, request)), _media(content_type))
