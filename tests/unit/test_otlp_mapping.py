"""The pure OTLP → v1 mapping: GenAI semconv and OpenInference spans, what is reported."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.otlp_builder import RESOURCE, T0, genai_trace, request, span
from tracejury.core.errors import InputError
from tracejury.core.otlp import TRACEJURY_ATTRIBUTES, OtlpMapping, map_export_request
from tracejury.core.validation import TraceValidator

ROOT = Path(__file__).resolve().parents[2]
TA = "0af7651916cd43dd8448eb211c80319c"
TB = "4bf92f3577b34da6a3ce929d0e0e4736"


def sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def mapped(spans: list[dict[str, Any]], resource: dict[str, Any] | None = None) -> OtlpMapping:
    result = map_export_request(request(spans, RESOURCE if resource is None else resource))
    validator = TraceValidator()
    for trace in result.traces:  # whatever the mapping emits must pass ingest's validation
        validator.parse(orjson.dumps(trace))
    return result


def only_trace(result: OtlpMapping) -> dict[str, Any]:
    assert len(result.traces) == 1, result.reports
    return result.traces[0]


def test_genai_trace_with_chat_tool_and_retrieval() -> None:
    result = mapped(genai_trace(TA))
    trace = only_trace(result)
    assert result.reports == [] and result.span_count == 5
    assert trace["traceId"] == TA
    assert trace["releaseId"] == "r42"  # service.version
    assert trace["timestamp"] == "2026-09-21T14:13:20.000Z"
    assert trace["req"] == {"inputTextHash": "sha256:in", "sessionIdHash": sha("conv-1"), "channel": "web",
                            "sessionTurn": 3}  # fmt: skip
    assert trace["config"]["model"] == {"name": "acme-chat", "version": "acme-chat-2026-10-01"}
    assert (trace["config"]["temperature"], trace["config"]["maxTokens"], trace["config"]["topP"]) == (0.2, 800, 1.0)
    assert trace["config"]["systemPromptVersion"] == "sp-12"
    runtime = trace["runtime"]
    assert (runtime["inputTokenCount"], runtime["completionTokenCount"]) == (1834, 212)  # both chat spans
    assert runtime["truncated"] is False and runtime["stopReason"] == "stop"
    assert runtime["latencyMs"] == 2140
    assert runtime["stageLatencyMs"] == {"retrieval": 180, "generation": 700 + 1080, "tool": 118}
    assert runtime["fallbackUsed"] is False
    assert trace["evidence"]["retrieval"] == {"empty": False, "topKDocIds": ["doc:shipping-policy", "doc:returns"],
                                              "topKScoreBins": [8, 5], "usedInFinalAnswer": True}  # fmt: skip
    assert trace["evidence"]["tool"] == [{
        "toolName": "order_status", "schemaVersion": "tool_v1", "argsHash": sha('{"orderId": "48213"}'),
        "status": "success", "latencyMs": 118, "responseHash": sha('{"state": "out_for_delivery"}'),
        "toolCallId": "call_1",
    }]  # fmt: skip
    assert trace["outputs"] == {"rawModelTextHash": sha("It ships today."), "finalAnswerHash": sha("It ships today."),
                                "formatValid": True}  # fmt: skip
    assert "sample" not in trace


def test_openinference_trace() -> None:
    root, ret, llm, tool = "00f067aa0ba902b1", "00f067aa0ba902b2", "00f067aa0ba902b3", "00f067aa0ba902b4"
    spans = [
        span(TB, root, "query", 0, 1500, {"openinference.span.kind": "CHAIN", "session.id": "s-9",
                                          "input.value": "Where is my order?", "output.value": "Out for delivery."}),
        span(TB, ret, "retrieve", 5, 105, {
            "openinference.span.kind": "RETRIEVER", "input.value": "order status",
            "retrieval.documents.0.document.id": "doc:a", "retrieval.documents.0.document.score": 0.97,
            "retrieval.documents.0.document.content": "Orders ship in 2 days.",
            "retrieval.documents.1.document.id": "doc:b", "retrieval.documents.1.document.score": 0.31,
        }, parent=root),
        span(TB, tool, "lookup", 110, 310, {"openinference.span.kind": "TOOL", "tool.name": "lookup",
                                            "input.value": '{"id": 7}', "output.value": '{"ok": true}'}, parent=root),
        span(TB, llm, "ChatOpenAI", 320, 1400, {
            "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-2024-08-06",
            "llm.invocation_parameters": '{"temperature": 0, "max_tokens": 256}',
            "llm.prompt_template.version": "pt-3",
            "llm.token_count.prompt": 400, "llm.token_count.completion": 25,
            "llm.input_messages.0.message.role": "system", "llm.input_messages.0.message.content": "Be brief.",
            "llm.input_messages.1.message.role": "user", "llm.input_messages.1.message.content": "Where is my order?",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": "Your order is out for delivery.",
        }, parent=root),
    ]  # fmt: skip
    trace = only_trace(mapped(spans, {"service.version": "r7", "tracejury.tool_schema_version": "t1"}))
    assert trace["config"]["model"] == {"name": "gpt-4o-2024-08-06", "version": "gpt-4o-2024-08-06"}
    assert (trace["config"]["temperature"], trace["config"]["maxTokens"]) == (0.0, 256)
    assert trace["config"]["systemPromptVersion"] == "pt-3"
    assert trace["req"]["inputTextHash"] == sha("Where is my order?")
    assert trace["req"]["sessionIdHash"] == sha("s-9")
    assert (trace["runtime"]["inputTokenCount"], trace["runtime"]["completionTokenCount"]) == (400, 25)
    assert trace["runtime"]["stageLatencyMs"] == {"retrieval": 100, "tool": 200, "generation": 1080}
    assert trace["evidence"]["retrieval"]["topKDocIds"] == ["doc:a", "doc:b"]
    assert trace["evidence"]["retrieval"]["topKScoreBins"] == [9, 3]
    assert trace["evidence"]["tool"][0]["toolName"] == "lookup"
    assert trace["evidence"]["tool"][0]["argsHash"] == sha('{"id": 7}')
    assert trace["outputs"]["rawModelTextHash"] == sha("Your order is out for delivery.")
    assert trace["outputs"]["finalAnswerHash"] == sha("Out for delivery.")  # the root's output, after postprocess


def test_finish_reason_length_means_truncated() -> None:
    trace = only_trace(mapped(genai_trace(TA, finish="length")))
    assert trace["runtime"]["truncated"] is True
    assert trace["runtime"]["stopReason"] == "length"


def test_tracejury_truncated_wins_over_finish_reasons() -> None:
    spans = genai_trace(TA, finish="length")
    spans[0]["attributes"].append({"key": "tracejury.truncated", "value": {"boolValue": False}})
    assert only_trace(mapped(spans))["runtime"]["truncated"] is False


@pytest.mark.parametrize(("error_type", "status"), [("timeout", "timeout"), ("TimeoutError", "timeout"),
                                                     ("ConnectionError", "error"), ("500", "error")])  # fmt: skip
def test_tool_error_and_timeout(error_type: str, status: str) -> None:
    trace = only_trace(mapped(genai_trace(TA, tool_error=error_type)))
    assert trace["evidence"]["tool"][0]["status"] == status


def test_tool_timeout_from_exception_event_and_error_status() -> None:
    spans = genai_trace(TA)
    tool = spans[3]
    tool["status"] = {"code": "STATUS_CODE_ERROR", "message": ""}  # MessageToDict spelling
    tool["events"] = [{"name": "exception", "timeUnixNano": str(T0),
                       "attributes": [{"key": "exception.type", "value": {"stringValue": "httpx.ReadTimeout"}}]}]  # fmt: skip
    assert only_trace(mapped(spans))["evidence"]["tool"][0]["status"] == "timeout"


def guard_span(attrs: dict[str, Any], kind: dict[str, Any]) -> dict[str, Any]:
    return span(TA, "aaaaaaaaaaaa0009", "guard", 2101, 2120, {**kind, **attrs}, parent=TA[:12] + "0001")


def test_guardrail_spans() -> None:
    spans = genai_trace(TA) + [
        guard_span({"tracejury.guardrail.rule_id": "pii-1", "tracejury.guardrail.decision": "rewrite",
                    "tracejury.guardrail.reason_code": "email"}, {"openinference.span.kind": "GUARDRAIL"}),
        {**guard_span({"gen_ai.guardrail.policy.id": "policy_pii_v2", "gen_ai.guardrail.result.value": "block"},
                      {"gen_ai.operation.name": "apply_guardrail"}), "spanId": "aaaaaaaaaaaa000a"},
    ]  # fmt: skip
    runtime = only_trace(mapped(spans))["runtime"]
    assert runtime["guardrails"] == [{"ruleId": "pii-1", "decision": "rewrite", "reasonCode": "email"},
                                     {"ruleId": "policy_pii_v2", "decision": "block"}]  # fmt: skip
    assert runtime["stageLatencyMs"]["guardrail"] == 19


def test_guardrail_without_a_decision_is_not_guessed() -> None:
    spans = genai_trace(TA) + [guard_span({"gen_ai.guardrail.result.value": "GUARDRAIL_INTERVENED"},
                                          {"gen_ai.operation.name": "apply_guardrail"})]  # fmt: skip
    result = mapped(spans)
    assert result.traces == []
    [report] = result.reports
    assert report.span_id == "aaaaaaaaaaaa0009"
    assert "guardrail decision unknown: set tracejury.guardrail.decision" in report.reason
    assert report.rejected_spans == 6


def test_unmappable_span_is_reported_with_its_id() -> None:
    spans = genai_trace(TA)
    tool = spans[3]
    tool["attributes"] = [a for a in tool["attributes"] if a["key"] != "gen_ai.tool.name"]
    result = mapped(spans)
    assert result.traces == []
    [report] = result.reports
    assert (report.trace_id, report.span_id, report.name) == (TA, tool["spanId"], "execute_tool order_status")
    assert report.reason == "trace not mapped: tool span without gen_ai.tool.name or tool.name"
    assert result.rejected_spans == 5


def test_non_genai_span_is_ignored_but_reported() -> None:
    spans = genai_trace(TA) + [span(TA, "bbbbbbbbbbbb0001", "GET /orders", 905, 1000, {"http.method": "GET"},
                                    parent=TA[:12] + "0004")]  # fmt: skip
    result = mapped(spans)
    assert len(result.traces) == 1
    [report] = result.reports
    assert report.span_id == "bbbbbbbbbbbb0001" and report.rejected_spans == 0
    assert report.reason.startswith("not a GenAI span")
    assert result.rejected_spans == 0


def test_trace_missing_release_is_reported_not_invented() -> None:
    resource = {k: v for k, v in RESOURCE.items() if k != "service.version"}
    result = mapped(genai_trace(TA), resource)
    assert result.traces == []
    [report] = result.reports
    assert report.span_id == TA[:12] + "0001"  # the root: a trace-level field
    assert report.reason == ("trace not mapped: missing releaseId: set tracejury.release_id or the resource's "
                             "service.version")  # fmt: skip
    assert str(report).startswith(f"trace {TA} span {TA[:12]}0001 'invoke_agent shop': trace not mapped")


def test_missing_token_count_names_the_span() -> None:
    spans = genai_trace(TA)
    spans[2]["attributes"] = [a for a in spans[2]["attributes"] if a["key"] != "gen_ai.usage.output_tokens"]
    [report] = mapped(spans).reports
    assert report.span_id == spans[2]["spanId"]
    assert "missing runtime.completionTokenCount: no gen_ai.usage.output_tokens" in report.reason


def test_missing_model_version_without_response_model() -> None:
    spans = genai_trace(TA)
    for s in spans[2:5:2]:
        s["attributes"] = [a for a in s["attributes"] if a["key"] != "gen_ai.response.model"]
    [report] = mapped(spans).reports
    assert "missing config.model.version: set tracejury.model.version or record gen_ai.response.model" in report.reason
    spans[0]["attributes"].append({"key": "tracejury.model.version", "value": {"stringValue": "v9"}})
    assert only_trace(mapped(spans))["config"]["model"] == {"name": "acme-chat", "version": "v9"}


def test_multiple_traces_grouped_across_resources() -> None:
    a, b = genai_trace(TA), genai_trace(TB, finish="length")
    req = request(a[:3] + b, RESOURCE)
    other = {**RESOURCE, "service.name": "tool-runner"}
    req["resourceSpans"].append(request(a[3:], other)["resourceSpans"][0])
    result = map_export_request(req)
    assert [t["traceId"] for t in result.traces] == [TA, TB]
    assert result.span_count == 10 and result.reports == []
    assert result.traces[0]["runtime"]["truncated"] is False and result.traces[1]["runtime"]["truncated"] is True
    assert len(result.traces[0]["evidence"]["tool"]) == 1


def test_protobuf_json_spelling_is_accepted() -> None:
    """``MessageToDict`` gives base64 ids and enum names; int64 values may be numbers."""
    spans = genai_trace(TA)
    for s in spans:
        for key in ("traceId", "spanId", "parentSpanId"):
            if key in s:
                s[key] = base64.b64encode(bytes.fromhex(s[key])).decode()
        s["kind"] = "SPAN_KIND_INTERNAL"
        s["startTimeUnixNano"] = int(s["startTimeUnixNano"])
    trace = only_trace(mapped(spans))
    assert trace["traceId"] == TA
    assert trace["runtime"]["latencyMs"] == 2140


def test_missing_root_is_reported() -> None:
    result = mapped(genai_trace(TA)[1:])
    [report] = result.reports
    assert report.reason.startswith("trace not mapped: root span missing")
    assert report.rejected_spans == 4


def test_unreadable_span_is_reported_and_the_rest_maps() -> None:
    bad = span(TB, "cccccccccccc0001", "broken", 0, 1)
    bad["traceId"] = "not-hex"
    result = mapped(genai_trace(TA) + [bad])
    assert len(result.traces) == 1
    [report] = result.reports
    assert (report.trace_id, report.name, report.rejected_spans) == ("not-hex", "broken", 1)
    assert "traceId 'not-hex' is not 16 non-zero bytes" in report.reason
    assert result.span_count == 6


def _with_attribute(value: Any) -> dict[str, Any]:
    return request([{**span(TA, "aaaaaaaaaaaa0001", "x", 0, 1), "attributes": [{"key": "k", "value": value}]}])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "request: expected an object, got list"),
        ({"resourceSpans": {}}, "$.resourceSpans: expected a list, got dict"),
        ({"resourceSpans": [{"scopeSpans": [{"spans": [3]}]}]}, "$.resourceSpans[0].scopeSpans[0].spans[0]: expected"),
        (_with_attribute({"arrayValue": [1, 2]}),
         "$.resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.arrayValue: expected an object, got list"),
        (_with_attribute({"kvlistValue": {"values": [{"key": 1}]}}),
         "attributes[0].value.kvlistValue.values[0]: expected a {key, value} object"),
        (_with_attribute("plain"), "attributes[0].value: expected an AnyValue object, got str"),
    ],
)  # fmt: skip
def test_request_that_is_not_otlp_is_an_input_error(body: Any, message: str) -> None:
    with pytest.raises(InputError) as err:
        map_export_request(body)
    assert message in str(err.value)


def test_empty_request_maps_to_nothing() -> None:
    result = map_export_request({})
    assert (result.traces, result.reports, result.span_count) == ([], [], 0)


def test_parallel_stage_spans_count_wall_time_once() -> None:
    spans = genai_trace(TA)
    second = {**spans[3], "spanId": TA[:12] + "0010", "startTimeUnixNano": str(T0 + 950 * 1_000_000)}
    trace = only_trace(mapped(spans + [second]))
    assert trace["runtime"]["stageLatencyMs"]["tool"] == 1018 - 900  # [900, 1018] ∪ [950, 1018]
    assert len(trace["evidence"]["tool"]) == 2


def test_keep_sample_records_raw_text() -> None:
    spans = genai_trace(TA)
    spans[0]["attributes"].append({"key": "tracejury.keep_sample", "value": {"boolValue": True}})
    spans[1]["attributes"] = [a for a in spans[1]["attributes"] if a["key"] != "gen_ai.retrieval.documents"]
    spans[1]["attributes"].append({"key": "gen_ai.retrieval.documents",
                                   "value": {"stringValue": '[{"id": "d1", "score": 0.9, "content": "Ships fast."}]'}})  # fmt: skip
    sample = only_trace(mapped(spans))["sample"]
    assert sample["finalAnswer"] == "It ships today."
    assert sample["retrievedChunks"] == [{"docId": "d1", "text": "Ships fast."}]
    assert sample["toolSnapshots"] == [{"responseHash": sha('{"state": "out_for_delivery"}'),
                                        "snapshot": {"state": "out_for_delivery"}}]  # fmt: skip


def test_retrieval_scores_outside_unit_interval_need_explicit_bins() -> None:
    spans = genai_trace(TA)
    spans[1]["attributes"][-1] = {"key": "gen_ai.retrieval.documents",
                                  "value": {"stringValue": '[{"id": "d1", "score": 12.5}]'}}  # fmt: skip
    [report] = mapped(spans).reports
    assert "retrieval document 0 score 12.5 is not in [0, 1]; set tracejury.retrieval.score_bins" in report.reason
    spans[1]["attributes"].append({"key": "tracejury.retrieval.score_bins", "value": {"arrayValue": {
        "values": [{"intValue": "7"}]}}})  # fmt: skip
    assert only_trace(mapped(spans))["evidence"]["retrieval"]["topKScoreBins"] == [7]


def test_every_tracejury_attribute_is_documented() -> None:
    doc = (ROOT / "docs" / "otlp.md").read_text()
    source = "".join(p.read_text() for p in (ROOT / "tracejury" / "core").glob("otlp*.py"))
    missing = [a for a in TRACEJURY_ATTRIBUTES if f"`{a}`" not in doc]
    assert missing == []
    used = set(re.findall(r'"(tracejury\.[a-z_.]+)"', source)) - {"tracejury.trace/v1"}
    assert used <= set(TRACEJURY_ATTRIBUTES), used - set(TRACEJURY_ATTRIBUTES)


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"stringValue": "x"}
    for _ in range(depth):
        value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    return value


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("gen_ai.operation.name", {"arrayValue": {"values": [{"stringValue": "chat"}]}}, "has no mapping; ignored"),
        ("gen_ai.usage.input_tokens", {"stringValue": "9" * 5000}, "gen_ai.usage.input_tokens must be a 64-bit"),
        ("gen_ai.usage.input_tokens", {"intValue": str(2**70)}, "gen_ai.usage.input_tokens must be a 64-bit integer"),
        ("gen_ai.usage.input_tokens", {"intValue": str(2**63 - 1)}, "summed over generation spans exceeds a 64-bit"),
        ("gen_ai.request.temperature", {"doubleValue": "Infinity"}, "must be a finite number"),
        ("gen_ai.tool.call.arguments", _nested(300), "cannot be hashed as JSON"),
        ("gen_ai.tool.name", {"kvlistValue": {"values": []}}, "gen_ai.tool.name must be a string, got dict"),
    ],
)
def test_hostile_attribute_values_are_reported_not_raised(key: str, value: Any, reason: str) -> None:
    spans = genai_trace(TA)
    target = {"gen_ai.usage.input_tokens": 2, "gen_ai.request.temperature": 4, "gen_ai.retrieval.documents": 1}.get(
        key, 3
    )
    attrs = [a for a in spans[target]["attributes"] if a["key"] != key]
    spans[target]["attributes"] = [*attrs, {"key": key, "value": value}]
    result = map_export_request(request(spans, RESOURCE))
    assert any(reason in r.reason for r in result.reports), result.reports


@pytest.mark.parametrize("start", [str(2**64), "-5", "soon", None])
def test_unusable_start_times_are_reported(start: Any) -> None:
    spans = genai_trace(TA)
    spans[0]["startTimeUnixNano"] = start
    result = map_export_request(request(spans, RESOURCE))
    assert any("startTimeUnixNano missing or not a positive 64-bit integer" in r.reason for r in result.reports)
