"""Reading the protobuf ``ExportTraceServiceRequest`` directly (``decode_spans_pb``) gives what
``decode_spans(MessageToDict(message))`` gives, for generated messages, hand-built edge cases,
the OTLP/JSON (hex) spelling and what the SDK's own encoder sends; span events in both paths.

Run as a module for the timing: ``.venv/bin/python -m tests.unit.test_otlp_decode_pb``.
"""

from __future__ import annotations

import base64
import copy
import statistics
import time
from typing import Any

import orjson
from google.protobuf.json_format import MessageToDict, ParseDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Status
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.sdk.resources import Resource as SdkResource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status as SdkStatus
from opentelemetry.trace import StatusCode, format_span_id, format_trace_id

from tests.otlp_builder import MS, RESOURCE, T0, attributes, genai_trace, request
from tracejury.core.otlp_pb import decode_spans_pb
from tracejury.core.otlp_spans import Event, Span, SpanReport, decode_spans

TA = "0af7651916cd43dd8448eb211c80319c"
TRACE, SPAN, PARENT = bytes.fromhex(TA), bytes.fromhex("b7ad6b7169203331"), bytes.fromhex("00f067aa0ba902b7")


def same(pb: Any, doc: Any) -> None:
    """Equal, NaN included: both paths build the same types, so their reprs match exactly."""
    assert repr(pb) == repr(doc)


def both(message: ExportTraceServiceRequest) -> tuple[list[Span], list[SpanReport]]:
    """``decode_spans_pb``'s answer, after checking it is the dict path's."""
    out = decode_spans_pb(message)
    same(out, decode_spans(MessageToDict(message)))
    return out


# --- generated messages ---------------------------------------------------------------------------------------------

keys = st.sampled_from(["", "k", "event.name", "exception.type", "gen_ai.operation.name"]) | st.text(max_size=6)
scalars = st.one_of(
    st.builds(lambda v: AnyValue(string_value=v), st.text(max_size=12)),
    st.builds(lambda v: AnyValue(bool_value=v), st.booleans()),
    st.builds(
        lambda v: AnyValue(int_value=v), st.sampled_from([-(2**63), 2**63 - 1]) | st.integers(-(2**63), 2**63 - 1)
    ),
    st.builds(lambda v: AnyValue(double_value=v), st.floats()),  # NaN and ±inf included
    st.builds(lambda v: AnyValue(bytes_value=v), st.binary(max_size=12)),
    st.just(AnyValue()),
)


def _key_values(values: st.SearchStrategy[AnyValue]) -> st.SearchStrategy[KeyValue]:
    return st.builds(lambda k, v: KeyValue(key=k, value=v), keys, values) | st.builds(lambda k: KeyValue(key=k), keys)


any_values = st.recursive(
    scalars,
    lambda inner: (
        st.builds(lambda vs: AnyValue(array_value=ArrayValue(values=vs)), st.lists(inner, max_size=3))
        | st.builds(
            lambda kvs: AnyValue(kvlist_value=KeyValueList(values=kvs)), st.lists(_key_values(inner), max_size=3)
        )
    ),
    max_leaves=10,
)
attribute_lists = st.lists(_key_values(any_values), max_size=5)
times = st.sampled_from([0, 1, T0, 2**63 - 1, 2**63, 2**64 - 1]) | st.integers(0, 2**64 - 1)


def ids(size: int) -> st.SearchStrategy[bytes]:
    """Mostly valid ids; else empty, zero, wrong-length or random. Not 12 or 24 bytes: their base64
    can read as hex to the dict path (see ``test_an_id_whose_base64_reads_as_hex``)."""
    valid = st.binary(min_size=size, max_size=size).filter(any)
    fixed = st.sampled_from([b"", bytes(size), bytes(range(1, size + 1))])
    odd = st.binary(max_size=size + 3).filter(lambda b: len(b) not in (12, 24))
    return st.integers(0, 9).flatmap(lambda k: valid if k < 7 else fixed if k < 9 else odd)


events = st.builds(
    lambda name, t, attrs: PbSpan.Event(name=name, time_unix_nano=t, attributes=attrs),
    st.sampled_from(["exception", "gen_ai.choice", ""]) | st.text(max_size=5),
    st.sampled_from([0, T0, T0 + 1, 2**64 - 1]) | times,
    st.lists(st.builds(lambda v: KeyValue(key="exception.type", value=v), any_values), max_size=1) | attribute_lists,
)


@st.composite
def spans(draw: st.DrawFn) -> PbSpan:
    usable = st.integers(1, 2**63 - 1)
    start = draw(st.integers(0, 4).flatmap(lambda k: usable if k else times))
    after = st.integers(0, 10**9).map(lambda d: min(start + d, 2**64 - 1))
    end = draw(st.integers(0, 4).flatmap(lambda k: after if k else times))
    return PbSpan(
        trace_id=draw(ids(16)),
        span_id=draw(ids(8)),
        parent_span_id=draw(st.just(b"") | ids(8)),
        name=draw(st.text(max_size=8)),
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        attributes=draw(attribute_lists),
        status=Status(code=draw(st.integers(-1, 4)), message=draw(st.text(max_size=5))),
        events=draw(st.lists(events, max_size=4)),
    )


requests = st.builds(
    lambda groups: ExportTraceServiceRequest(resource_spans=[
        ResourceSpans(resource=Resource(attributes=attrs), scope_spans=[ScopeSpans(spans=s) for s in scopes])
        for attrs, scopes in groups
    ]),
    st.lists(st.tuples(attribute_lists, st.lists(st.lists(spans(), max_size=3), max_size=2)), max_size=2),
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=requests)
def test_protobuf_reader_equals_dict_reader(message: ExportTraceServiceRequest) -> None:
    spans, reports = both(message)
    assert len(spans) + len(reports) == sum(len(ss.spans) for rs in message.resource_spans for ss in rs.scope_spans)
    orjson.dumps([[s.attrs, s.resource, [(e.name, e.attrs) for e in s.events]] for s in spans])
    for s in spans:
        assert [e.time_ns for e in s.events] == sorted(e.time_ns for e in s.events)


# --- hand-built edge cases --------------------------------------------------------------------------------------------


def one(**fields: Any) -> ExportTraceServiceRequest:
    """A request with one span; ``fields`` override a valid child span's."""
    base: dict[str, Any] = {"trace_id": TRACE, "span_id": SPAN, "parent_span_id": PARENT, "name": "s",
                            "start_time_unix_nano": T0, "end_time_unix_nano": T0 + MS}  # fmt: skip
    span = PbSpan(**{**base, **fields})
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])])


BAD = "is not {} non-zero bytes in hex or base64"
NO_START = "startTimeUnixNano missing or not a positive 64-bit integer"
NO_END = "endTimeUnixNano missing or before the start"


def test_unreadable_ids_and_times_are_reported_with_the_dict_paths_reasons() -> None:
    cases: list[tuple[dict[str, Any], tuple[str | None, str | None, str]]] = [
        ({"trace_id": b""}, (None, None, "traceId None " + BAD.format(16))),
        ({"trace_id": bytes(16)}, ("AAAAAAAAAAAAAAAAAAAAAA==", None, "traceId 'AAAAAAAAAAAAAAAAAAAAAA==' " + BAD.format(16))),
        ({"trace_id": b"\x01\x02\x03"}, ("AQID", None, "traceId 'AQID' " + BAD.format(16))),
        ({"trace_id": TRACE + b"\x01"}, (base64.b64encode(TRACE + b"\x01").decode(), None, None)),
        ({"span_id": b""}, (TA, None, "spanId None " + BAD.format(8))),
        ({"span_id": bytes(8)}, (TA, None, "spanId 'AAAAAAAAAAA=' " + BAD.format(8))),
        ({"parent_span_id": bytes(8)}, (TA, SPAN.hex(), "parentSpanId 'AAAAAAAAAAA=' " + BAD.format(8))),
        ({"parent_span_id": b"\x07"}, (TA, SPAN.hex(), "parentSpanId 'Bw==' " + BAD.format(8))),
        ({"start_time_unix_nano": 0}, (TA, SPAN.hex(), NO_START)),
        ({"start_time_unix_nano": 2**63, "end_time_unix_nano": 2**63}, (TA, SPAN.hex(), NO_START)),
        ({"end_time_unix_nano": 0}, (TA, SPAN.hex(), NO_END)),
        ({"end_time_unix_nano": T0 - 1}, (TA, SPAN.hex(), NO_END)),
        ({"end_time_unix_nano": 2**64 - 1}, (TA, SPAN.hex(), NO_END)),
    ]  # fmt: skip
    for fields, (trace_id, span_id, reason) in cases:
        spans, [report] = both(one(**fields))
        assert spans == [] and (report.trace_id, report.span_id, report.name) == (trace_id, span_id, "s"), fields
        assert reason is None or report.reason == reason, fields
        assert report.rejected_spans == 1


def test_ids_times_parent_status_and_every_value_kind() -> None:
    value = AnyValue(kvlist_value=KeyValueList(values=[
        KeyValue(key="a", value=AnyValue(array_value=ArrayValue(values=[
            AnyValue(int_value=-(2**63)), AnyValue(int_value=2**63 - 1), AnyValue(double_value=0.5),
            AnyValue(bool_value=False), AnyValue(bytes_value=b"\x00\xff"), AnyValue(string_value=""), AnyValue(),
        ]))),
        KeyValue(key="empty", value=AnyValue(array_value=ArrayValue())),
        KeyValue(key="unset"),
    ]))  # fmt: skip
    message = one(attributes=[KeyValue(key="v", value=value), KeyValue(key="", value=AnyValue(string_value="x"))],
                  status=Status(code=2, message="boom"), end_time_unix_nano=T0)  # fmt: skip
    [span], [] = both(message)
    assert (span.trace_id, span.span_id, span.parent_id) == (TA, SPAN.hex(), PARENT.hex())
    assert (span.start_ns, span.end_ns, span.status_code, span.status_message) == (T0, T0, 2, "boom")
    assert span.attrs == {
        "v": {"a": [-(2**63), 2**63 - 1, 0.5, False, "AP8=", "", None], "empty": [], "unset": None},
        "": "x",  # an empty key is a key (MessageToDict leaves it out; the dict path reads that as "")
    }
    [root], [] = both(one(parent_span_id=b"", status=Status(code=7)))
    assert (root.parent_id, root.status_code, root.status_message) == (None, 7, "")


def test_events_sorted_by_time_and_exception_types_in_request_order() -> None:
    def exc(kind: str, t: int) -> PbSpan.Event:
        return PbSpan.Event(name="exception", time_unix_nano=t,
                            attributes=[KeyValue(key="exception.type", value=AnyValue(string_value=kind))])  # fmt: skip

    message = one(events=[
        exc("TimeoutError", T0 + 3), PbSpan.Event(name="b", time_unix_nano=T0 + 1), exc("ValueError", T0 + 1),
        PbSpan.Event(name="unknown time"), PbSpan.Event(name="bad time", time_unix_nano=2**63),
        PbSpan.Event(name="exception", attributes=[KeyValue(key="exception.type", value=AnyValue(int_value=1))]),
    ])  # fmt: skip
    [span], [] = both(message)
    assert [(e.name, e.time_ns) for e in span.events] == [
        ("unknown time", 0), ("bad time", 0), ("exception", 0), ("b", T0 + 1), ("exception", T0 + 1), ("exception", T0 + 3),
    ]  # fmt: skip
    assert span.events[-1] == Event("exception", T0 + 3, {"exception.type": "TimeoutError"}, None)
    assert span.exception_types == ("TimeoutError", "ValueError")


def test_nan_and_infinities() -> None:
    doubles = [AnyValue(double_value=v) for v in (float("nan"), float("inf"), float("-inf"), -0.0)]
    [span], [] = both(one(attributes=[KeyValue(key="d", value=AnyValue(array_value=ArrayValue(values=doubles)))]))
    assert repr(span.attrs["d"]) == "[nan, inf, -inf, -0.0]"


def test_an_id_whose_base64_reads_as_hex() -> None:
    """The one place the two paths differ, by design: a 24-byte trace id whose base64 is 32 hex
    digits. ``MessageToDict`` writes it as that base64, which the dict path must read as hex (it
    cannot tell the spellings apart); protobuf says what the bytes are, so it is 24 bytes: rejected."""
    misread = base64.b64decode(TA)
    assert len(misread) == 24 and base64.b64encode(misread).decode() == TA
    message = one(trace_id=misread)
    [from_dict], [] = decode_spans(MessageToDict(message))
    assert from_dict.trace_id == TA
    [], [report] = decode_spans_pb(message)
    assert (report.trace_id, report.reason) == (TA, f"traceId {TA!r} " + BAD.format(16))


def test_empty_request() -> None:
    assert both(ExportTraceServiceRequest()) == ([], [])


# --- what real senders send -------------------------------------------------------------------------------------------


def _to_protobuf(doc: dict[str, Any]) -> ExportTraceServiceRequest:
    """An OTLP/JSON request (hex ids) as the protobuf message (``ParseDict`` reads bytes as base64)."""
    doc = copy.deepcopy(doc)
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    return ParseDict(doc, ExportTraceServiceRequest())


def test_otlp_json_with_hex_ids_reads_as_its_protobuf() -> None:
    spans = genai_trace(TA, tool_error="timeout") + genai_trace("4bf92f3577b34da6a3ce929d0e0e4736")
    spans[3]["events"] = [
        {"name": "exception", "timeUnixNano": str(T0 + 1000 * MS), "attributes": attributes({"exception.type": "httpx.ReadTimeout"})},
        {"name": "retry", "timeUnixNano": str(T0 + 950 * MS), "attributes": attributes({"attempt": 2})},
    ]  # fmt: skip
    doc = request(spans, RESOURCE)
    decoded = decode_spans_pb(_to_protobuf(doc))
    assert decoded == decode_spans(doc)
    tool = decoded[0][3]
    assert [e.name for e in tool.events] == ["retry", "exception"] and tool.exception_types == ("httpx.ReadTimeout",)


def test_what_the_sdk_encoder_sends() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=SdkResource.create({"service.name": "shop", "deployment": "r42"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    kinds = {"s": "x", "b": True, "i": 2**63 - 1, "f": 0.25, "ls": ["a", "b"], "li": [1, -2], "lb": [True], "lf": [1.5]}
    with tracer.start_as_current_span("invoke_agent", start_time=T0, end_on_exit=False) as root:
        with tracer.start_as_current_span("chat", attributes=kinds, start_time=T0 + 1, end_on_exit=False) as chat:
            chat.add_event("gen_ai.choice", {"index": 0}, timestamp=T0 + 5)
            chat.add_event("first", timestamp=T0 + 2)
            chat.record_exception(TimeoutError("slow"), timestamp=T0 + 6)
            chat.set_status(SdkStatus(StatusCode.ERROR, "slow"))
            chat.end(end_time=T0 + 7)
        root.end(end_time=T0 + 8)
    provider.shutdown()
    finished = exporter.get_finished_spans()
    spans, reports = both(encode_spans(finished))
    assert reports == []
    by_name = {s.name: s for s in spans}
    sdk_chat = next(s for s in finished if s.name == "chat")
    chat_span = by_name["chat"]
    assert chat_span.trace_id == format_trace_id(sdk_chat.context.trace_id)
    assert chat_span.span_id == format_span_id(sdk_chat.context.span_id)
    assert chat_span.parent_id == by_name["invoke_agent"].span_id and by_name["invoke_agent"].parent_id is None
    assert (chat_span.start_ns, chat_span.end_ns) == (T0 + 1, T0 + 7)
    assert (chat_span.status_code, chat_span.status_message) == (2, "slow")
    assert chat_span.attrs == {**kinds, "ls": ["a", "b"], "li": [1, -2], "lb": [True], "lf": [1.5]}
    assert chat_span.resource["service.name"] == "shop" and chat_span.resource["deployment"] == "r42"
    assert [e.name for e in chat_span.events] == ["first", "gen_ai.choice", "exception"]
    assert chat_span.exception_types == ("TimeoutError",)
    assert chat_span.events[1].attrs == {"index": 0}


# --- timing -----------------------------------------------------------------------------------------------------------

PAD = {"gen_ai.system": "openai", "server.address": "api.acme.example", "server.port": 443,
       "gen_ai.response.id": "chatcmpl-9", "gen_ai.request.seed": 7, "gen_ai.request.frequency_penalty": 0.0,
       "tracejury.segment": "web/en", "http.status_code": 200, "gen_ai.openai.api_type": "chat_completions",
       "gen_ai.request.stop_sequences": ["\n\n"], "user.tier": "gold", "app.retry": False}  # fmt: skip


def benchmark_request(traces: int = 100) -> ExportTraceServiceRequest:
    """``traces`` GenAI traces of 5 spans, each span padded to 15 GenAI-like attributes."""
    spans = []
    for t in range(traces):
        for s in genai_trace(f"{t + 1:032x}"):
            s["attributes"] += attributes(dict(list(PAD.items())[: 15 - len(s["attributes"])]))
            spans.append(s)
    return _to_protobuf(request(spans, RESOURCE))


def _median_ms(fn: Any, runs: int) -> float:
    fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def test_benchmark_request_is_what_it_says() -> None:
    message = benchmark_request(2)
    spans, reports = both(message)
    assert (len(spans), reports, {len(s.attrs) for s in spans}) == (10, [], {15})


if __name__ == "__main__":
    message = benchmark_request()
    assert decode_spans_pb(message) == decode_spans(MessageToDict(message))
    runs = 50
    pb = _median_ms(lambda: decode_spans_pb(message), runs)
    via_dict = _median_ms(lambda: decode_spans(MessageToDict(message)), runs)
    to_dict = _median_ms(lambda: MessageToDict(message), runs)
    print(f"100 traces x 5 spans x 15 attributes, median of {runs}:")
    print(f"  decode_spans_pb(message)               {pb:7.2f} ms")
    print(f"  decode_spans(MessageToDict(message))   {via_dict:7.2f} ms  (MessageToDict alone {to_dict:.2f} ms)")
