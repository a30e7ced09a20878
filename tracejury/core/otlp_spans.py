"""OTLP trace and log export requests as plain spans and log records: the half of OTLP ingest
that knows the OTLP data model and nothing about GenAI.

Two readers give the same results. ``decode_spans`` / ``decode_logs`` take the request as a
dict in the OTLP/JSON form (``resourceSpans[].scopeSpans[].spans[]``, camelCase keys); both
spellings that reach us are accepted: OTLP/JSON (hex ids, integer enums) and ``MessageToDict``
of the protobuf message (base64 ids, enum names); 64-bit integers may be numbers or strings.
``otlp_pb.decode_spans_pb`` / ``decode_logs_pb`` read the protobuf message's fields directly (several
times faster than ``MessageToDict`` followed by the dict reader); bytes values come out as
the base64 text ``MessageToDict`` writes, so both stay JSON-serialisable.

A container that is not what OTLP says (``resourceSpans`` not a list, a span not an object,
an attribute that is not a ``{key, value}`` with an ``AnyValue``) makes the whole request
unreadable: ``InputError`` naming the JSON path (protobuf is typed: never). A span whose own
fields are unusable (bad trace id, no start time), or a log record that names no span, is
reported, and the rest of the request still maps.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from tracejury.core.errors import InputError

__all__ = [
    "STATUS_ERROR",
    "Event",
    "LogRecord",
    "Span",
    "SpanReport",
    "decode_any_value",
    "decode_attributes",
    "decode_logs",
    "decode_spans",
]

STATUS_ERROR = 2
"""``Status.code`` of a span that ended in an error (``STATUS_CODE_ERROR``)."""
_STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_MAX_NS = 2**63 - 1  # OTLP times are fixed64; past this a timestamp means nothing


@dataclass(frozen=True, slots=True)
class SpanReport:
    """A span, or a whole trace, that did not make it into a stored trace, and why."""

    trace_id: str | None
    """OTLP trace id (hex) when readable."""
    span_id: str | None
    """The span the reason is about (hex), when there is one."""
    name: str
    """That span's name."""
    reason: str
    """One line: what is missing or wrong, naming the attribute or field."""
    rejected_spans: int = 1
    """Spans whose content is lost because of this (all spans of an unmappable trace); 0 for a
    span that was only ignored (no GenAI meaning) inside a trace that was stored."""

    def __str__(self) -> str:
        where = f"trace {self.trace_id}" if self.trace_id else "trace ?"
        if self.span_id:
            where += f" span {self.span_id} {self.name!r}"
        return f"{where}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Event:
    """A span event, or an OTLP log record joined to its span (GenAI content events)."""

    name: str
    """The event's name; for a log record its ``event_name``, else its ``event.name`` attribute."""
    time_ns: int
    """Unix nanoseconds (0 when not recorded)."""
    attrs: Mapping[str, Any]
    """The event's attributes as Python values."""
    body: Any = None
    """A log record's body as a Python value (None for span events)."""


@dataclass(frozen=True, slots=True)
class LogRecord:
    """An OTLP log record that names its span: joined to that span as an ``Event`` when the
    trace is assembled."""

    trace_id: str
    """32 lowercase hex digits."""
    span_id: str
    """16 lowercase hex digits."""
    event: Event
    resource: Mapping[str, Any]
    """Attributes of the record's resource."""


@dataclass(frozen=True, slots=True)
class Span:
    """One OTLP span with decoded ids, times, attributes and its resource's attributes."""

    trace_id: str
    """32 lowercase hex digits."""
    span_id: str
    """16 lowercase hex digits."""
    parent_id: str | None
    """Parent span id, None for a root span."""
    name: str
    start_ns: int
    """Start, unix nanoseconds."""
    end_ns: int
    """End, unix nanoseconds (never before the start)."""
    attrs: Mapping[str, Any]
    """Span attributes as Python values (lists for arrays, dicts for key-value lists)."""
    resource: Mapping[str, Any]
    """Attributes of the span's resource."""
    status_code: int = 0
    """0 unset, 1 ok, 2 error."""
    status_message: str = ""
    exception_types: tuple[str, ...] = field(default=())
    """``exception.type`` of the span's ``exception`` events, in order."""
    events: tuple[Event, ...] = field(default=())
    """The span's events in time order, then log records joined to it (``LogRecord``)."""

    @property
    def duration_ns(self) -> int:
        """End minus start."""
        return self.end_ns - self.start_ns


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:  # not an integer, or too many digits
            return None
    return None


def _time(value: Any) -> int:
    """An event or log time in unix nanoseconds; 0 when absent or not a fixed64 we can use."""
    number = _int(value)
    return number if number is not None and 0 <= number <= _MAX_NS else 0


def decode_any_value(value: Any, where: str = "value") -> Any:
    """An OTLP ``AnyValue`` (``{"stringValue": …}`` etc.) as a Python value; None when empty.

    Raises ``InputError`` naming ``where`` when the value is not shaped as OTLP says.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InputError(f"{where}: expected an AnyValue object, got {type(value).__name__}")
    if "stringValue" in value:
        return value["stringValue"] if isinstance(value["stringValue"], str) else str(value["stringValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:  # an int64 in OTLP: a wider one stays its digits (readers report it; JSON keeps it)
        number = _int(value["intValue"])
        return number if number is None or -(2**63) <= number < 2**63 else str(number)
    if "doubleValue" in value:
        try:
            return float(value["doubleValue"])
        except (TypeError, ValueError):
            return None
    if "arrayValue" in value:
        items = _values(value["arrayValue"], f"{where}.arrayValue")
        return [decode_any_value(v, f"{where}.arrayValue.values[{i}]") for i, v in enumerate(items)]
    if "kvlistValue" in value:
        return decode_attributes(_values(value["kvlistValue"], f"{where}.kvlistValue"), f"{where}.kvlistValue.values")
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def _values(container: Any, where: str) -> list[Any]:
    if not isinstance(container, Mapping):
        raise InputError(f"{where}: expected an object, got {type(container).__name__}")
    items = container.get("values")
    if items is None:
        return []
    if not isinstance(items, list):
        raise InputError(f"{where}.values: expected a list, got {type(items).__name__}")
    return items


def decode_attributes(items: Any, where: str = "attributes") -> dict[str, Any]:
    """An OTLP ``KeyValue`` list as a dict; ``InputError`` naming ``where`` when malformed.

    A missing ``key`` is the empty key (the JSON mapping leaves default values out)."""
    if items is None:
        return {}
    if not isinstance(items, list):
        raise InputError(f"{where}: expected a list, got {type(items).__name__}")
    out: dict[str, Any] = {}
    for i, kv in enumerate(items):
        key = kv.get("key", "") if isinstance(kv, Mapping) else None
        if not isinstance(key, str):
            raise InputError(f"{where}[{i}]: expected a {{key, value}} object with a string key")
        out[key] = decode_any_value(kv.get("value"), f"{where}[{i}].value")
    return out


def _id(value: Any, size: int) -> str | None:
    """A trace (16 bytes) or span (8 bytes) id as lowercase hex, from hex or base64; None if
    absent, malformed, or all zero (invalid in OTLP)."""
    if not isinstance(value, str) or not value:
        return None
    raw: bytes | None = None
    if len(value) == 2 * size:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = None
    if raw is None:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
    if len(raw) != size or not any(raw):
        return None
    return raw.hex()


def _bad_id(field_name: str, shown: Any, size: int) -> str:
    return f"{field_name} {shown!r} is not {size} non-zero bytes in hex or base64"


_NO_START = "startTimeUnixNano missing or not a positive 64-bit integer"
_NO_END = "endTimeUnixNano missing or before the start"
_UNJOINABLE = "log record has no traceId/spanId; it cannot be joined to a span"


def _status(span: Mapping[str, Any]) -> tuple[int, str]:
    status = span.get("status")
    if not isinstance(status, Mapping):
        return 0, ""
    code = status.get("code", 0)
    number = _STATUS_NAMES.get(code) if isinstance(code, str) else _int(code)
    message = status.get("message")
    return number or 0, message if isinstance(message, str) else ""


def _events(events: list[Event]) -> tuple[tuple[Event, ...], tuple[str, ...]]:
    """Events in time order (stable) and the ``exception.type`` of ``exception`` events in
    request order."""
    kinds = tuple(
        kind for e in events if e.name == "exception" and isinstance(kind := e.attrs.get("exception.type"), str)
    )
    return tuple(sorted(events, key=attrgetter("time_ns"))), kinds


def _list(container: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = container.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InputError(f"{where}.{key}: expected a list, got {type(value).__name__}")
    return value


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _resource(container: Mapping[str, Any], where: str) -> dict[str, Any]:
    doc = container.get("resource")
    return decode_attributes(doc.get("attributes"), f"{where}.resource.attributes") if isinstance(doc, Mapping) else {}


def _span(raw: Mapping[str, Any], resource: Mapping[str, Any], where: str) -> Span | SpanReport:
    name = _str(raw.get("name"))
    raw_trace, raw_span = raw.get("traceId"), raw.get("spanId")
    trace_id, span_id = _id(raw_trace, 16), _id(raw_span, 8)
    shown_trace = trace_id or (raw_trace if isinstance(raw_trace, str) and raw_trace else None)
    if trace_id is None:
        return SpanReport(shown_trace, None, name, _bad_id("traceId", raw_trace, 16))
    if span_id is None:
        return SpanReport(trace_id, None, name, _bad_id("spanId", raw_span, 8))
    parent = raw.get("parentSpanId")
    parent_id = _id(parent, 8) if parent else None
    if parent and parent_id is None:
        return SpanReport(trace_id, span_id, name, _bad_id("parentSpanId", parent, 8))
    start, end = _int(raw.get("startTimeUnixNano")), _int(raw.get("endTimeUnixNano"))
    if not start or not 0 < start <= _MAX_NS:
        return SpanReport(trace_id, span_id, name, _NO_START)
    if end is None or not start <= end <= _MAX_NS:
        return SpanReport(trace_id, span_id, name, _NO_END)
    code, message = _status(raw)
    events = []
    for i, event in enumerate(_list(raw, "events", where)):
        at = f"{where}.events[{i}]"
        event = _object(event, at)
        attrs = decode_attributes(event.get("attributes"), f"{at}.attributes")
        events.append(Event(_str(event.get("name")), _time(event.get("timeUnixNano")), attrs))
    in_order, exception_types = _events(events)
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id,
        name=name,
        start_ns=start,
        end_ns=end,
        attrs=decode_attributes(raw.get("attributes"), f"{where}.attributes"),
        resource=resource,
        status_code=code,
        status_message=message,
        exception_types=exception_types,
        events=in_order,
    )


def decode_spans(request: Any) -> tuple[list[Span], list[SpanReport]]:
    """Every span of an export request, in request order, and reports of unreadable ones.

    Raises ``InputError`` when the request's structure is not OTLP's.
    """
    doc = _object(request, "request")
    spans: list[Span] = []
    reports: list[SpanReport] = []
    for i, rs in enumerate(_list(doc, "resourceSpans", "$")):
        where = f"$.resourceSpans[{i}]"
        rs = _object(rs, where)
        resource = _resource(rs, where)
        for j, ss in enumerate(_list(rs, "scopeSpans", where)):
            ss = _object(ss, f"{where}.scopeSpans[{j}]")
            for k, raw in enumerate(_list(ss, "spans", f"{where}.scopeSpans[{j}]")):
                at = f"{where}.scopeSpans[{j}].spans[{k}]"
                decoded = _span(_object(raw, at), resource, at)
                (spans if isinstance(decoded, Span) else reports).append(decoded)  # type: ignore[arg-type]
    return spans, reports


def _log_record(
    trace_id: str | None, span_id: str | None, event_name: str, time_ns: int, attrs: dict[str, Any], body: Any,
    resource: Mapping[str, Any],
) -> LogRecord | SpanReport:  # fmt: skip
    name = event_name or _str(attrs.get("event.name"))
    if trace_id is None or span_id is None:
        return SpanReport(trace_id, None, name, _UNJOINABLE, rejected_spans=1)
    return LogRecord(trace_id, span_id, Event(name, time_ns, attrs, body), resource)


def decode_logs(request: Any) -> tuple[list[LogRecord], list[SpanReport]]:
    """Every log record of an ``ExportLogsServiceRequest`` (OTLP/JSON mapping, or
    ``MessageToDict`` of the message), in request order, and a report (``rejected_spans=1``: not staged)
    for each record that names no valid trace and span, so cannot be joined to a span.

    Raises ``InputError`` naming the JSON path when the request's structure is not OTLP's.
    """
    doc = _object(request, "request")
    records: list[LogRecord] = []
    reports: list[SpanReport] = []
    for i, rl in enumerate(_list(doc, "resourceLogs", "$")):
        where = f"$.resourceLogs[{i}]"
        rl = _object(rl, where)
        resource = _resource(rl, where)
        for j, sl in enumerate(_list(rl, "scopeLogs", where)):
            scope = f"{where}.scopeLogs[{j}]"
            for k, raw in enumerate(_list(_object(sl, scope), "logRecords", scope)):
                at = f"{scope}.logRecords[{k}]"
                raw = _object(raw, at)
                decoded = _log_record(
                    _id(raw.get("traceId"), 16), _id(raw.get("spanId"), 8), _str(raw.get("eventName")),
                    _time(raw.get("timeUnixNano")) or _time(raw.get("observedTimeUnixNano")),
                    decode_attributes(raw.get("attributes"), f"{at}.attributes"),
                    decode_any_value(raw.get("body"), f"{at}.body"), resource,
                )  # fmt: skip
                (records if isinstance(decoded, LogRecord) else reports).append(decoded)  # type: ignore[arg-type]
    return records, reports
