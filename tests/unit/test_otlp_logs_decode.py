"""OTLP log records as ``LogRecord``s (``decode_logs`` for OTLP/JSON, ``decode_logs_pb`` for the
protobuf message, with the same results): name and time precedence, bodies, records that name
no span, structure errors, and what the SDK's own encoder sends."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as PbLogRecord
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource as SdkResource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import format_span_id, format_trace_id

from tests.otlp_builder import T0, attributes
from tests.unit.test_otlp_decode_pb import any_values, attribute_lists, ids, same, times
from tracejury.core.errors import InputError
from tracejury.core.otlp_pb import decode_logs_pb
from tracejury.core.otlp_spans import Event, LogRecord, SpanReport, decode_logs

TA, SA = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
UNJOINABLE = "log record has no traceId/spanId; it cannot be joined to a span"


def both(message: ExportLogsServiceRequest) -> tuple[list[LogRecord], list[SpanReport]]:
    """``decode_logs_pb``'s answer, after checking it is the dict path's."""
    out = decode_logs_pb(message)
    same(out, decode_logs(MessageToDict(message)))
    return out


def one(**fields: Any) -> ExportLogsServiceRequest:
    """A request with one log record of a known span; ``fields`` override it."""
    record = PbLogRecord(**{"trace_id": bytes.fromhex(TA), "span_id": bytes.fromhex(SA), **fields})
    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="shop"))])
    return ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(resource=resource, scope_logs=[ScopeLogs(log_records=[record])])]
    )


def attr(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


# --- generated messages ---------------------------------------------------------------------------------------------

records = st.builds(
    lambda trace, span, name, t, observed, attrs, body, severity: PbLogRecord(
        trace_id=trace, span_id=span, event_name=name, time_unix_nano=t, observed_time_unix_nano=observed,
        attributes=attrs, body=body, severity_number=severity, severity_text="INFO",
    ),
    ids(16), ids(8), st.sampled_from(["", "gen_ai.client.inference.operation.details"]) | st.text(max_size=5),
    st.just(0) | times, st.just(0) | times,
    st.lists(st.builds(lambda v: attr("event.name", v), any_values), max_size=1) | attribute_lists,
    st.just(None) | any_values, st.integers(0, 24),
)  # fmt: skip
requests = st.builds(
    lambda groups: ExportLogsServiceRequest(resource_logs=[
        ResourceLogs(resource=Resource(attributes=attrs), scope_logs=[ScopeLogs(log_records=r) for r in scopes])
        for attrs, scopes in groups
    ]),
    st.lists(st.tuples(attribute_lists, st.lists(st.lists(records, max_size=3), max_size=2)), max_size=2),
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=requests)
def test_protobuf_reader_equals_dict_reader(message: ExportLogsServiceRequest) -> None:
    decoded, reports = both(message)
    assert len(decoded) + len(reports) == sum(
        len(sl.log_records) for rl in message.resource_logs for sl in rl.scope_logs
    )
    assert all(r.rejected_spans == 1 and r.reason == UNJOINABLE for r in reports)
    orjson.dumps([[r.event.attrs, r.event.body, r.resource] for r in decoded])


# --- hand-built cases -------------------------------------------------------------------------------------------------


def test_a_record_becomes_an_event_of_its_span() -> None:
    body = AnyValue(kvlist_value=KeyValueList(values=[
        attr("messages", AnyValue(array_value=ArrayValue(values=[AnyValue(string_value="hi"), AnyValue(int_value=2**63 - 1)]))),
        attr("raw", AnyValue(bytes_value=b"\x01\x02")),
    ]))  # fmt: skip
    message = one(event_name="gen_ai.user.message", time_unix_nano=T0, observed_time_unix_nano=T0 + 5, body=body,
                  attributes=[attr("gen_ai.system", AnyValue(string_value="openai"))])  # fmt: skip
    assert both(message) == (
        [LogRecord(TA, SA, Event("gen_ai.user.message", T0, {"gen_ai.system": "openai"},
                                 {"messages": ["hi", 2**63 - 1], "raw": "AQI="}), {"service.name": "shop"})],
        [],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        (
            {"event_name": "from.field", "attributes": [attr("event.name", AnyValue(string_value="from.attr"))]},
            "from.field",
        ),
        ({"attributes": [attr("event.name", AnyValue(string_value="from.attr"))]}, "from.attr"),
        ({"attributes": [attr("event.name", AnyValue(int_value=3))]}, ""),
        ({}, ""),
    ],
)
def test_name_is_event_name_then_the_event_name_attribute(fields: dict[str, Any], name: str) -> None:
    [record], [] = both(one(**fields))
    assert record.event.name == name


@pytest.mark.parametrize(
    ("fields", "time_ns"),
    [
        ({"time_unix_nano": T0, "observed_time_unix_nano": T0 + 1}, T0),
        ({"observed_time_unix_nano": T0 + 1}, T0 + 1),
        ({"time_unix_nano": 2**63, "observed_time_unix_nano": T0 + 1}, T0 + 1),  # past int64: means nothing
        ({}, 0),
    ],
)
def test_time_is_time_then_observed_time(fields: dict[str, Any], time_ns: int) -> None:
    [record], [] = both(one(**fields))
    assert record.event.time_ns == time_ns


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (None, None),
        (AnyValue(), None),
        (AnyValue(string_value="plain text"), "plain text"),
        (AnyValue(array_value=ArrayValue(values=[AnyValue(bool_value=True), AnyValue(double_value=0.5)])), [True, 0.5]),
        (AnyValue(kvlist_value=KeyValueList(values=[attr("role", AnyValue(string_value="user"))])), {"role": "user"}),
    ],
)
def test_body_as_a_python_value(body: AnyValue | None, value: Any) -> None:
    [record], [] = both(one(body=body))
    assert record.event.body == value


@pytest.mark.parametrize(
    ("fields", "trace_id"),
    [
        ({"trace_id": b"", "span_id": b""}, None),
        ({"span_id": b""}, TA),
        ({"span_id": bytes(8)}, TA),
        ({"span_id": b"\x01\x02"}, TA),
        ({"trace_id": b""}, None),
        ({"trace_id": bytes(16)}, None),
    ],
)
def test_a_record_that_names_no_span_is_reported_not_lost(fields: dict[str, Any], trace_id: str | None) -> None:
    message = one(event_name="gen_ai.choice", **fields)
    assert both(message) == ([], [SpanReport(trace_id, None, "gen_ai.choice", UNJOINABLE, rejected_spans=1)])
    assert str(both(message)[1][0]).endswith(UNJOINABLE)


def test_otlp_json_with_hex_ids() -> None:
    doc = {"resourceLogs": [{"resource": {"attributes": attributes({"service.name": "shop"})}, "scopeLogs": [{"logRecords": [
        {"traceId": TA, "spanId": SA, "timeUnixNano": str(T0), "eventName": "a", "body": {"stringValue": "x"}},
        {"traceId": base64.b64encode(bytes.fromhex(TA)).decode(), "spanId": SA, "observedTimeUnixNano": T0,
         "attributes": attributes({"event.name": "b"})},
        {"traceId": TA, "spanId": "", "eventName": "c"},
    ]}]}]}  # fmt: skip
    resource = {"service.name": "shop"}
    assert decode_logs(doc) == (
        [LogRecord(TA, SA, Event("a", T0, {}, "x"), resource), LogRecord(TA, SA, Event("b", T0, {"event.name": "b"}), resource)],
        [SpanReport(TA, None, "c", UNJOINABLE, rejected_spans=1)],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "request: expected an object, got list"),
        ({"resourceLogs": {}}, "$.resourceLogs: expected a list, got dict"),
        ({"resourceLogs": [{"scopeLogs": [3]}]}, "$.resourceLogs[0].scopeLogs[0]: expected an object, got int"),
        ({"resourceLogs": [{"scopeLogs": [{"logRecords": ["x"]}]}]}, "$.resourceLogs[0].scopeLogs[0].logRecords[0]: expected an object, got str"),
        ({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": "x"}]}]}]},
         "$.resourceLogs[0].scopeLogs[0].logRecords[0].body: expected an AnyValue object, got str"),
        ({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"attributes": [{"key": 1}]}]}]}]},
         "$.resourceLogs[0].scopeLogs[0].logRecords[0].attributes[0]: expected a {key, value} object"),
        ({"resourceLogs": [{"resource": {"attributes": {}}}]}, "$.resourceLogs[0].resource.attributes: expected a list, got dict"),
    ],
)  # fmt: skip
def test_request_that_is_not_otlp_is_an_input_error(body: Any, message: str) -> None:
    with pytest.raises(InputError) as err:
        decode_logs(body)
    assert str(err.value).startswith(message)


def test_empty_requests() -> None:
    assert decode_logs({}) == both(ExportLogsServiceRequest()) == ([], [])


# --- what the SDK's encoder sends -------------------------------------------------------------------------------------


def test_what_the_sdk_encoder_sends() -> None:
    resource = SdkResource.create({"service.name": "shop"})
    tracer_provider = TracerProvider(resource=resource)
    exporter = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logger_provider.get_logger("tests")
    body = {"index": 0, "message": {"role": "assistant", "content": "It ships today."}, "raw": b"\x00", "ids": [1, 2]}
    with tracer_provider.get_tracer("tests").start_as_current_span("chat") as span:
        logger.emit(event_name="gen_ai.choice", body=body, attributes={"gen_ai.system": "openai"}, timestamp=T0)
        logger.emit(body="legacy", attributes={"event.name": "gen_ai.user.message"}, observed_timestamp=T0 + 1)
    logger.emit(event_name="outside", body="no span")
    logger_provider.shutdown()
    tracer_provider.shutdown()
    records, reports = both(encode_logs(exporter.get_finished_logs()))
    context = span.get_span_context()
    trace_id, span_id = format_trace_id(context.trace_id), format_span_id(context.span_id)
    choice, legacy = records
    assert (choice.trace_id, choice.span_id, choice.resource["service.name"]) == (trace_id, span_id, "shop")
    assert choice.event == Event("gen_ai.choice", T0, {"gen_ai.system": "openai"},
                                 {"index": 0, "message": {"role": "assistant", "content": "It ships today."},
                                  "raw": "AA==", "ids": [1, 2]})  # fmt: skip
    assert (legacy.event.name, legacy.event.time_ns, legacy.event.body) == ("gen_ai.user.message", T0 + 1, "legacy")
    assert reports == [SpanReport(None, None, "outside", UNJOINABLE, rejected_spans=1)]
