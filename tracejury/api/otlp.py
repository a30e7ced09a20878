"""OTLP/HTTP trace ingest: decode an ``ExportTraceServiceRequest`` body (protobuf or OTLP/JSON,
optionally gzip/deflate), map it with the pure core (``tracejury.core.otlp``), ingest the
traces through the same validation, quarantine and idempotency as ``tracejury ingest``, and
answer with an ``ExportTraceServiceResponse`` in the request's encoding whose
``partial_success`` names every span or trace that was not stored.

A body that cannot be read at all is an ``ApiError`` (400, 413 or 415), never a partial
success: nothing of it is stored.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from sqlalchemy import Engine

from tracejury.api.errors import ApiError
from tracejury.core.errors import InputError
from tracejury.core.ingest import IngestCounts, RejectedLine, escape_nul
from tracejury.core.otlp import OtlpMapping, SpanReport, map_export_request
from tracejury.settings import Settings

__all__ = ["JSON", "PROTOBUF", "OtlpResult", "decode_body", "export_traces", "ingest_request"]

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


def decode_body(body: bytes, content_type: str | None, content_encoding: str | None, max_bytes: int) -> dict[str, Any]:
    """The request as an OTLP/JSON-shaped dict (protobuf goes through ``MessageToDict``:
    base64 ids, int64 as strings, enum names — the core accepts both spellings)."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media not in (PROTOBUF, JSON):
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Type {media or '(none)'!r} is not {PROTOBUF} or {JSON}")  # fmt: skip
    raw = _decompress(body, content_encoding, max_bytes)
    if media == PROTOBUF:
        message = ExportTraceServiceRequest()
        try:
            message.ParseFromString(raw)
        except (DecodeError, RuntimeError) as exc:  # RuntimeError: nesting past protobuf's recursion limit
            raise ApiError(400, "invalid_otlp", f"body is not a protobuf ExportTraceServiceRequest: {exc}") from exc
        return MessageToDict(message, preserving_proto_field_name=False)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_otlp", f"body is not OTLP/JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ApiError(
            400, "invalid_otlp", f"body must be a JSON object (ExportTraceServiceRequest), got {type(doc).__name__}"
        )
    return doc


@dataclass(frozen=True)
class OtlpResult:
    """What happened to one export request."""

    mapping: OtlpMapping
    counts: IngestCounts
    """Ingest's counts for the mapped traces."""
    reports: list[SpanReport]
    """The mapping's reports plus one per quarantined trace."""

    @property
    def rejected_spans(self) -> int:
        """Spans whose content is in no stored trace."""
        return sum(r.rejected_spans for r in self.reports)

    def message(self) -> str:
        """One line for ``partial_success.error_message``; empty when there is nothing to say."""
        if not self.reports and not self.counts.quarantined and not self.counts.conflicts:
            return ""
        c = self.counts
        head = f"{c.ingested} trace(s) stored, {c.duplicates} duplicate(s), {c.conflicts} conflict(s), " \
               f"{c.quarantined} quarantined; {self.rejected_spans} span(s) rejected"  # fmt: skip
        listed = "".join(f"; {r}" for r in self.reports[:MAX_LISTED])
        more = len(self.reports) - MAX_LISTED
        return head + listed + (f"; and {more} more" if more > 0 else "")


def _unmapped_line(line_no: int, report: SpanReport) -> RejectedLine:
    raw = orjson.dumps({"traceId": report.trace_id, "spanId": report.span_id, "name": report.name,
                        "reason": report.reason, "rejectedSpans": report.rejected_spans})  # fmt: skip
    path = f"span {report.span_id}" if report.span_id else "$"
    return RejectedLine(line_no=line_no, trace_id=report.trace_id, path=path,
                        message=escape_nul(f"OTLP: {report.reason}"), raw=raw,
                        raw_hash=hashlib.sha256(raw).hexdigest())  # fmt: skip


def ingest_request(engine: Engine, settings: Settings, source: str, doc: dict[str, Any]) -> OtlpResult:
    """Map an export request and ingest its traces like ``tracejury ingest`` does; each trace is
    one line (numbered from 1 in request order) of ``source``."""
    from tracejury.store.ingest import ingest_lines, quarantine_lines
    from workers.service import segmentation

    try:
        mapping = map_export_request(doc)
    except InputError as exc:
        raise ApiError(400, "invalid_otlp", str(exc)) from exc
    lines = [(n, orjson.dumps(trace)) for n, trace in enumerate(mapping.traces, 1)]
    reports = list(mapping.reports)
    rejected: list[RejectedLine] = []
    counts = ingest_lines(engine, source, lines, segmentation=segmentation(settings),
                          batch_size=settings.ingest_batch_size, rejected=rejected)  # fmt: skip
    for line in rejected:  # ingest quarantined these: name them in the response too
        origin = mapping.origins[line.line_no - 1]
        reason = f"quarantined as line {line.line_no} of {source}: {line.path}: {line.message}"
        reports.append(SpanReport(origin.trace_id, origin.root_span_id, origin.root_name, reason, origin.spans))
    # traces that could not be mapped at all are quarantined too (after the mapped ones'
    # line numbers), so they are in the store, not only in this response and the log
    unmapped = [r for r in mapping.reports if r.rejected_spans]
    quarantine_lines(engine, source, [_unmapped_line(len(lines) + i, r) for i, r in enumerate(unmapped, 1)])
    for report in reports:
        log.warning("OTLP %s: %s", source, report)
    return OtlpResult(mapping=mapping, counts=counts, reports=reports)


def _response(result: OtlpResult) -> ExportTraceServiceResponse:
    if not result.message():
        return ExportTraceServiceResponse()
    partial = ExportTracePartialSuccess(rejected_spans=result.rejected_spans, error_message=result.message())
    return ExportTraceServiceResponse(partial_success=partial)


def export_traces(
    engine: Engine,
    settings: Settings,
    source: str,
    body: bytes,
    content_type: str | None,
    content_encoding: str | None,
) -> tuple[bytes, str]:
    """Handle one ``POST /v1/traces``: the response body and its media type."""
    doc = decode_body(body, content_type, content_encoding, settings.api_max_body_bytes)
    response = _response(ingest_request(engine, settings, source, doc))
    if (content_type or "").split(";")[0].strip().lower() == PROTOBUF:
        return response.SerializeToString(), PROTOBUF
    return orjson.dumps(MessageToDict(response, preserving_proto_field_name=False)), JSON
