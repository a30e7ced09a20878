"""Assembling OTLP traces from spans that arrive apart: pure.

An exporter sends a trace's spans in any order and over any number of requests (the SDK's
``SimpleSpanProcessor`` sends each span alone, the ``BatchSpanProcessor`` splits a trace
whenever its timer fires, a collector re-batches freely), and log records carrying GenAI
content arrive on another endpoint. So the receiver stages what arrives, per trace, and a
sweeper decides when a trace is whole:

    request ──decode──► spans, log records ──stage_groups──► one fragment per trace id
                                                                   │ (stored, durable)
    sweeper ── decide(first seen, last seen, root?) ──► wait | assemble | expire
                  assemble: fragments ──assemble──► one v1 trace (map_trace) or a report
                  expire:   no root after max wait ──► quarantined with every span
                  a fragment of a trace already assembled ──late──► duplicates | late spans

Staged spans are redacted before they are stored (``redact_group``: keyed placeholders, the
attributes the mapping reads as ids, config and hashes left as sent, session ids hashed), and
numbered when the trace is assembled (``assemble(renumbering=)``), before it is mapped.

This module holds the policy and the data shapes; ``tracejury.store.otlp_staging`` stores the
fragments and sweeps, ``workers.otlp`` runs the sweepers.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tracejury.core.otlp import HASHED_IDS, MODEL_ATTRIBUTES, TRACEJURY_ATTRIBUTES, TraceOrigin, map_trace
from tracejury.core.otlp_genai import Unmappable, staged_id
from tracejury.core.otlp_spans import Event, LogRecord, Span, SpanReport
from tracejury.core.redaction import Redactor, Renumbering, collect_strings

__all__ = [
    "ASSEMBLE",
    "EXPIRE",
    "LATE",
    "Assembled",
    "Fragment",
    "LateSpans",
    "StagedGroup",
    "assemble",
    "decide",
    "expired",
    "failed",
    "dump_fragment",
    "late_spans",
    "load_fragment",
    "quarantine_raw",
    "redact_group",
    "stage_groups",
]

ASSEMBLE, EXPIRE, LATE = "assemble", "expire", "late"
"""What the sweeper does with a staged trace (``decide``)."""


@dataclass(frozen=True, slots=True)
class StagedGroup:
    """What one request brought of one trace: the unit staged as one fragment."""

    trace_id: str
    spans: tuple[Span, ...]
    logs: tuple[LogRecord, ...]
    redacted: bool = False
    """Staging put placeholders in (``redact_group``): the assembly numbers them."""

    @property
    def has_root(self) -> bool:
        """True when the trace's root span (no parent) is among the spans."""
        return any(s.parent_id is None for s in self.spans)


@dataclass(frozen=True, slots=True)
class Fragment:
    """A staged group read back: where and when it arrived."""

    id: int
    """The staging row's id: increases with arrival; quarantined lines carry it as their line number."""
    source: str
    """``otlp:<token id>`` of the request that brought it."""
    spans: tuple[Span, ...]
    logs: tuple[LogRecord, ...]
    redacted: bool = False
    """Holds placeholders staging put in."""


# -- redaction at staging -------------------------------------------------------------------

STAGING_KEEP = frozenset(TRACEJURY_ATTRIBUTES) | frozenset(MODEL_ATTRIBUTES) | {"service.version", "service.name"}
"""Attributes the mapping reads as ids, config, hashes and facts (the v1 policy's ``keep``
paths): staged as sent, never scanned."""


def _attrs(attrs: Mapping[str, Any], value: Callable[[Any], Any], hash_ids: bool) -> dict[str, Any]:
    out = {}
    for k, v in attrs.items():
        if k in STAGING_KEEP:
            out[k] = v
        elif k in HASHED_IDS and hash_ids and isinstance(v, str | int | float):
            out[k] = staged_id(v)  # the mapping only hashes them: hashed before they are stored
        else:
            out[k] = value(v)
    return out


def _event_with(e: Event, value: Callable[[Any], Any], hash_ids: bool) -> Event:
    return Event(value(e.name), e.time_ns, _attrs(e.attrs, value, hash_ids), value(e.body))


class _Rewrite:
    """Every text of spans and log records through ``value`` (each resource once)."""

    def __init__(self, value: Callable[[Any], Any], *, hash_ids: bool) -> None:
        self.value, self.hash_ids = value, hash_ids
        self._resources: dict[int, dict[str, Any]] = {}

    def resource(self, r: Mapping[str, Any]) -> dict[str, Any]:
        if (done := self._resources.get(id(r))) is None:
            done = self._resources[id(r)] = _attrs(r, self.value, self.hash_ids)
        return done

    def span(self, s: Span) -> Span:
        v, h = self.value, self.hash_ids
        return dataclasses.replace(s, name=v(s.name), attrs=_attrs(s.attrs, v, h), resource=self.resource(s.resource),
                                   status_message=v(s.status_message),
                                   exception_types=tuple(v(t) for t in s.exception_types),
                                   events=tuple(_event_with(e, v, h) for e in s.events))  # fmt: skip

    def log(self, r: LogRecord) -> LogRecord:
        event = _event_with(r.event, self.value, self.hash_ids)
        return LogRecord(r.trace_id, r.span_id, event, self.resource(r.resource))


def _texts_of(group: StagedGroup) -> list[str]:
    """What the detectors would scan in ``group`` (``STAGING_KEEP`` left out)."""
    values: list[Any] = []
    seen: set[int] = set()
    for s in group.spans:
        values += (s.name, s.status_message, *s.exception_types)
        values += [v for k, v in s.attrs.items() if k not in STAGING_KEEP]
        for e in s.events:
            values += [v for k, v in e.attrs.items() if k not in STAGING_KEEP]
            values += (e.name, e.body)
    for r in group.logs:
        values += [v for k, v in r.event.attrs.items() if k not in STAGING_KEEP]
        values += (r.event.name, r.event.body)
    for res in [s.resource for s in group.spans] + [r.resource for r in group.logs]:
        if id(res) not in seen:
            seen.add(id(res))
            values += [v for k, v in res.items() if k not in STAGING_KEEP]
    out: list[str] = []
    collect_strings(values, out)
    return out


def redact_group(group: StagedGroup, redactor: Redactor) -> StagedGroup:
    """A staged group as it may be stored: every text a detector finds replaced by a
    placeholder keyed by its value (``Redactor.stage_value``), the attributes of
    ``STAGING_KEEP`` as sent. Most groups hold nothing to redact: their texts are scanned once,
    joined, and the spans rewritten only when something was found; then session and
    conversation ids are hashed too (as the mapping would: ``req.sessionIdHash`` is the same)."""
    state = redactor.staging(group.trace_id)
    if state is None or not redactor.finds_any(_texts_of(group)):
        return group
    rw = _Rewrite(lambda v: redactor.stage_value(v, state), hash_ids=True)
    spans, logs = tuple(rw.span(s) for s in group.spans), tuple(rw.log(r) for r in group.logs)
    return StagedGroup(group.trace_id, spans, logs, redacted=True)


def _texts(value: Any, text: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return {k: _texts(v, text) for k, v in value.items()}
    if isinstance(value, list):
        return [_texts(v, text) for v in value]
    return value


def _renumbered(spans: dict[str, Span], renumbering: Renumbering) -> dict[str, Span]:
    """Spans with their staged placeholders numbered, met in time order (then span id): the
    same trace gets the same numbers however its spans arrived."""
    rw = _Rewrite(lambda v: _texts(v, renumbering.text), hash_ids=False)
    done = {s.span_id: rw.span(s) for s in sorted(spans.values(), key=lambda s: (s.start_ns, s.span_id))}
    return {span_id: done[span_id] for span_id in spans}


def stage_groups(spans: Iterable[Span], logs: Iterable[LogRecord]) -> list[StagedGroup]:
    """A request's spans and log records grouped by trace id, in order of first appearance."""
    by_trace: dict[str, tuple[list[Span], list[LogRecord]]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, ([], []))[0].append(span)
    for record in logs:
        by_trace.setdefault(record.trace_id, ([], []))[1].append(record)
    return [StagedGroup(t, tuple(s), tuple(r)) for t, (s, r) in by_trace.items()]


def decide(has_root: bool, first_seen: float, last_seen: float, now: float, idle_s: float,
           max_wait_s: float) -> str | None:  # fmt: skip
    """``ASSEMBLE`` once the root has arrived and nothing of the trace for ``idle_s``;
    ``EXPIRE`` when the root has not arrived ``max_wait_s`` after the first span; else None
    (wait). Times are unix seconds of the receiving and sweeping processes' clocks."""
    if has_root and now - last_seen >= idle_s:
        return ASSEMBLE
    if not has_root and now - first_seen >= max_wait_s:
        return EXPIRE
    return None


# -- the staged form: JSON, the same whichever encoding or endpoint brought the span ----------


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):  # a bytesValue read from protobuf: kept as OTLP/JSON writes it
        return base64.b64encode(value).decode()
    return value


def _event_doc(e: Event) -> list[Any]:
    return [e.name, e.time_ns, e.attrs, e.body]


def _event(doc: list[Any]) -> Event:
    return Event(name=doc[0], time_ns=doc[1], attrs=doc[2], body=doc[3])


def _span_doc(s: Span, resource: int) -> list[Any]:
    return [s.span_id, s.parent_id, s.name, s.start_ns, s.end_ns, s.attrs, resource, s.status_code,
            s.status_message, list(s.exception_types), [_event_doc(e) for e in s.events]]  # fmt: skip


def _span(trace_id: str, d: list[Any], resources: list[dict[str, Any]]) -> Span:
    return Span(trace_id=trace_id, span_id=d[0], parent_id=d[1], name=d[2], start_ns=d[3], end_ns=d[4],
                attrs=d[5], resource=resources[d[6]], status_code=d[7], status_message=d[8],
                exception_types=tuple(d[9]), events=tuple(_event(e) for e in d[10]))  # fmt: skip


def dump_fragment(group: StagedGroup) -> bytes:
    """A staged group as compact JSON (ids and times as they were decoded; each resource once)."""
    resources: list[Mapping[str, Any]] = []
    index: dict[int, int] = {}  # id of a resource mapping -> its place (spans of one request share them)

    def place(resource: Mapping[str, Any]) -> int:
        if id(resource) not in index:
            index[id(resource)] = len(resources)
            resources.append(resource)
        return index[id(resource)]

    doc = {"spans": [_span_doc(s, place(s.resource)) for s in group.spans],
           "logs": [[r.span_id, _event_doc(r.event), place(r.resource)] for r in group.logs],
           "resources": resources}  # fmt: skip
    if group.redacted:
        doc["redacted"] = True
    return orjson.dumps(doc, default=_jsonable)


def load_fragment(fragment_id: int, source: str, trace_id: str, body: bytes) -> Fragment:
    """A stored fragment back as spans and log records."""
    doc = orjson.loads(body)
    resources = doc["resources"]
    spans = tuple(_span(trace_id, d, resources) for d in doc["spans"])
    logs = tuple(LogRecord(trace_id, d[0], _event(d[1]), resources[d[2]]) for d in doc["logs"])
    return Fragment(fragment_id, source, spans, logs, doc.get("redacted", False))


# -- assembling ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assembled:
    """One staged trace, assembled: its v1 trace (None when it could not be mapped) and what
    the assembly has to say about it."""

    trace_id: str
    """The OTLP trace id."""
    trace: dict[str, Any] | None
    origin: TraceOrigin | None
    """Set with ``trace``: the root span, to name the trace if ingest refuses it."""
    reports: list[SpanReport]
    """Ignored spans and unjoined log records (warnings), or the reason the trace is not mapped."""
    span_ids: list[str]
    """Every distinct span id assembled (to tell a re-sent span from a late one afterwards)."""
    duplicates: int
    """Spans received more than once (each counted once in the trace)."""
    source: str
    """The source of the fragment holding the root span (else the first fragment)."""
    line_no: int
    """That fragment's id."""


def _distinct_spans(fragments: list[Fragment]) -> tuple[dict[str, Span], int]:
    spans: dict[str, Span] = {}
    duplicates = 0
    for fragment in fragments:
        for span in fragment.spans:
            if span.span_id in spans:
                duplicates += 1
            else:
                spans[span.span_id] = span
    return spans, duplicates


def _join_logs(spans: dict[str, Span], fragments: list[Fragment], trace_id: str) -> list[SpanReport]:
    """Append each log record to its span's events (in time order, after the span's own);
    a record whose span is not in the trace is reported."""
    by_span: dict[str, list[Event]] = {}
    seen: set[bytes] = set()
    reports = []
    for record in (r for f in fragments for r in f.logs):
        key = orjson.dumps([record.span_id, _event_doc(record.event)], default=_jsonable)
        if key in seen:  # the same record sent twice counts once
            continue
        seen.add(key)
        if record.span_id not in spans:
            reports.append(SpanReport(trace_id, record.span_id, record.event.name,
                                      "log record for a span that is not in the trace; ignored", 0))  # fmt: skip
            continue
        by_span.setdefault(record.span_id, []).append(record.event)
    for span_id, events in by_span.items():
        span = spans[span_id]
        events.sort(key=lambda e: e.time_ns)
        spans[span_id] = dataclasses.replace(span, events=span.events + tuple(events))
    return reports


def _home(fragments: list[Fragment]) -> Fragment:
    return next((f for f in fragments if any(s.parent_id is None for s in f.spans)), fragments[0])


def assemble(trace_id: str, fragments: list[Fragment], renumbering: Renumbering | None = None) -> Assembled:
    """One v1 trace from every fragment staged for ``trace_id`` (in arrival order): spans
    de-duplicated by span id (the first copy kept), log records joined to their spans, staged
    placeholders numbered by ``renumbering`` (which counts them), then ``map_trace``. A trace
    that cannot be mapped comes back with ``trace`` None and the reason as its one rejecting
    report."""
    spans, duplicates = _distinct_spans(fragments)
    home = _home(fragments)
    reports = _join_logs(spans, fragments, trace_id)
    if renumbering is not None and any(f.redacted for f in fragments):
        spans = _renumbered(spans, renumbering)
    span_ids = list(spans)
    if not spans:
        reason = "only log records arrived; no span of this trace"
        report = SpanReport(trace_id, None, "", reason, sum(len(f.logs) for f in fragments))
        return Assembled(trace_id, None, None, [report], span_ids, duplicates, home.source, home.id)
    try:
        trace, ignored = map_trace(list(spans.values()))
    except Unmappable as exc:
        at = exc.span
        report = SpanReport(trace_id, at.span_id if at else None, at.name if at else "",
                            f"trace not mapped: {exc.reason}", rejected_spans=len(spans))  # fmt: skip
        return Assembled(trace_id, None, None, [report], span_ids, duplicates, home.source, home.id)
    root = next(s for s in spans.values() if s.parent_id is None)
    origin = TraceOrigin(trace_id, root.span_id, root.name, len(spans))
    return Assembled(trace_id, trace, origin, reports + ignored, span_ids, duplicates, home.source, home.id)


def failed(trace_id: str, fragments: list[Fragment], exc: Exception) -> Assembled:
    """A trace whose assembly raised something no reader foresaw: unmapped, with the error as
    its one-line reason (every span kept)."""
    spans, duplicates = _distinct_spans(fragments)
    reason = f"trace not mapped: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    report = SpanReport(trace_id, None, "", reason, len(spans) + sum(len(f.logs) for f in fragments))
    home = _home(fragments)
    return Assembled(trace_id, None, None, [report], list(spans), duplicates, home.source, home.id)


def expired(trace_id: str, fragments: list[Fragment], max_wait_s: float) -> Assembled:
    """A trace whose root span never arrived: every span it had, reported for quarantine."""
    spans, duplicates = _distinct_spans(fragments)
    reason = f"root span never arrived within {max_wait_s:g} s (TRACEJURY_OTLP_TRACE_MAX_WAIT_S) of the first span"
    report = SpanReport(trace_id, None, "", reason, len(spans) + sum(len(f.logs) for f in fragments))
    home = fragments[0]
    return Assembled(trace_id, None, None, [report], list(spans), duplicates, home.source, home.id)


@dataclass(frozen=True, slots=True)
class LateSpans:
    """Fragments of a trace that was already assembled (or expired)."""

    late: list[Span]
    """Spans not in the assembled trace: kept in quarantine as ``late span``."""
    logs: list[LogRecord]
    """Log records that arrived after their trace was assembled: quarantined with them."""
    duplicates: int
    """Spans the assembled trace already had (a re-sent export): counted, not kept twice."""


def late_spans(fragments: list[Fragment], assembled: Mapping[str, None] | set[str]) -> LateSpans:
    """Split late fragments into spans re-sent (their id is in ``assembled``) and spans new
    to the trace."""
    late: dict[str, Span] = {}
    duplicates = 0
    for span in (s for f in fragments for s in f.spans):
        if span.span_id in assembled or span.span_id in late:
            duplicates += 1
        else:
            late[span.span_id] = span
    return LateSpans(list(late.values()), [r for f in fragments for r in f.logs], duplicates)


def quarantine_raw(report: SpanReport, spans: Iterable[Span], logs: Iterable[LogRecord]) -> bytes:
    """What quarantine keeps of spans that are in no stored trace: the reason and every span
    and log record whole (ids, times, attributes, events), as JSON."""
    return orjson.dumps({
        "traceId": report.trace_id, "spanId": report.span_id, "name": report.name, "reason": report.reason,
        "spans": [{"spanId": s.span_id, "parentSpanId": s.parent_id, "name": s.name, "startTimeUnixNano": s.start_ns,
                   "endTimeUnixNano": s.end_ns, "attributes": s.attrs, "resource": s.resource,
                   "status": {"code": s.status_code, "message": s.status_message},
                   "events": [_event_doc(e) for e in s.events]} for s in spans],
        "logs": [{"spanId": r.span_id, "event": _event_doc(r.event), "resource": r.resource} for r in logs],
    }, default=_jsonable)  # fmt: skip
