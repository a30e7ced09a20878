"""OTLP protobuf messages read field by field (no ``MessageToDict``, ~7x faster): the same
``Span``/``LogRecord`` objects and reports as ``otlp_spans.decode_spans``/``decode_logs`` give
for the JSON mapping of the same message.

One deliberate difference: a 24-byte trace id (12-byte span id) whose base64 is all hex
digits reads as a valid id to the dict path, which cannot tell the spellings apart; here the
bytes are known, so it is rejected.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from tracejury.core.otlp_spans import (
    _MAX_NS,
    _NO_END,
    _NO_START,
    Event,
    LogRecord,
    Span,
    SpanReport,
    _bad_id,
    _events,
    _log_record,
)

if TYPE_CHECKING:  # read by attribute only: the module needs no protobuf at run time
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue as PbAnyValue
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue as PbKeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

__all__ = ["decode_logs_pb", "decode_spans_pb"]


def _pb_value(value: PbAnyValue) -> Any:
    """An ``AnyValue`` message as a Python value (as ``decode_any_value`` gives it)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_pb_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _pb_attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return getattr(value, kind)  # string, bool, int or double


def _pb_attributes(items: Iterable[PbKeyValue]) -> dict[str, Any]:
    """``KeyValue`` messages as a dict (as ``decode_attributes`` gives it)."""
    out: dict[str, Any] = {}
    for kv in items:  # the scalar kinds inline: this loop is most of decoding a request
        value = kv.value
        kind = value.WhichOneof("value")
        if kind == "string_value":
            out[kv.key] = value.string_value
        elif kind == "int_value":
            out[kv.key] = value.int_value
        elif kind == "double_value":
            out[kv.key] = value.double_value
        elif kind == "bool_value":
            out[kv.key] = value.bool_value
        else:
            out[kv.key] = _pb_value(value)
    return out


_ZERO_TRACE, _ZERO_SPAN = bytes(16), bytes(8)


def _pb_id(raw: bytes, size: int) -> str | None:
    return raw.hex() if len(raw) == size and any(raw) else None


def _b64(raw: bytes) -> str | None:
    """An invalid id as ``MessageToDict`` shows it: base64, None when empty."""
    return base64.b64encode(raw).decode("ascii") if raw else None


def _pb_span(raw: PbSpan, resource: Mapping[str, Any]) -> Span | SpanReport:
    name, trace, span = raw.name, raw.trace_id, raw.span_id
    if len(trace) != 16 or trace == _ZERO_TRACE:
        shown = _b64(trace)
        return SpanReport(shown, None, name, _bad_id("traceId", shown, 16))
    trace_id = trace.hex()
    if len(span) != 8 or span == _ZERO_SPAN:
        return SpanReport(trace_id, None, name, _bad_id("spanId", _b64(span), 8))
    span_id = span.hex()
    parent = raw.parent_span_id
    parent_id = _pb_id(parent, 8) if parent else None
    if parent and parent_id is None:
        return SpanReport(trace_id, span_id, name, _bad_id("parentSpanId", _b64(parent), 8))
    start, end = raw.start_time_unix_nano, raw.end_time_unix_nano
    if not 0 < start <= _MAX_NS:
        return SpanReport(trace_id, span_id, name, _NO_START)
    if not start <= end <= _MAX_NS:
        return SpanReport(trace_id, span_id, name, _NO_END)
    status = raw.status
    in_order: tuple[Event, ...] = ()
    exception_types: tuple[str, ...] = ()
    if raw.events:
        in_order, exception_types = _events([
            Event(e.name, t if (t := e.time_unix_nano) <= _MAX_NS else 0, _pb_attributes(e.attributes))
            for e in raw.events
        ])  # fmt: skip
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id,
        name=name,
        start_ns=start,
        end_ns=end,
        attrs=_pb_attributes(raw.attributes),
        resource=resource,
        status_code=status.code,
        status_message=status.message,
        exception_types=exception_types,
        events=in_order,
    )


def decode_spans_pb(message: ExportTraceServiceRequest) -> tuple[list[Span], list[SpanReport]]:
    """``decode_spans`` for the protobuf message itself, without ``MessageToDict``: the same
    spans and reports. Protobuf is typed, so the request's structure is never an error."""
    spans: list[Span] = []
    reports: list[SpanReport] = []
    for rs in message.resource_spans:
        resource = _pb_attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for raw in ss.spans:
                decoded = _pb_span(raw, resource)
                (spans if isinstance(decoded, Span) else reports).append(decoded)  # type: ignore[arg-type]
    return spans, reports


def decode_logs_pb(message: ExportLogsServiceRequest) -> tuple[list[LogRecord], list[SpanReport]]:
    """``decode_logs`` for the protobuf message itself, without ``MessageToDict``: the same
    records and reports."""
    records: list[LogRecord] = []
    reports: list[SpanReport] = []
    for rl in message.resource_logs:
        resource = _pb_attributes(rl.resource.attributes)
        for sl in rl.scope_logs:
            for raw in sl.log_records:
                time_ns = t if (t := raw.time_unix_nano) <= _MAX_NS else 0
                if not time_ns:
                    time_ns = t if (t := raw.observed_time_unix_nano) <= _MAX_NS else 0
                decoded = _log_record(
                    _pb_id(raw.trace_id, 16), _pb_id(raw.span_id, 8), raw.event_name, time_ns,
                    _pb_attributes(raw.attributes), _pb_value(raw.body), resource,
                )  # fmt: skip
                (records if isinstance(decoded, LogRecord) else reports).append(decoded)  # type: ignore[arg-type]
    return records, reports
