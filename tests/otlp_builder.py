"""Building OTLP/JSON export requests by hand for tests (hex ids, int64 as strings, as the
OTLP/JSON encoding writes them)."""

from __future__ import annotations

from typing import Any

T0 = 1_790_000_000_000_000_000
"""A fixed start time, unix nanoseconds (2026-09-21T...Z)."""
MS = 1_000_000


def any_value(value: Any) -> dict[str, Any]:
    """An OTLP ``AnyValue`` for a Python value."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": attributes(value)}}
    raise TypeError(type(value))


def attributes(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    """An OTLP ``KeyValue`` list."""
    return [{"key": k, "value": any_value(v)} for k, v in attrs.items()]


def span(
    trace: str,
    span_id: str,
    name: str,
    start_ms: int,
    end_ms: int,
    attrs: dict[str, Any] | None = None,
    *,
    parent: str | None = None,
    error: bool = False,
) -> dict[str, Any]:
    """One OTLP/JSON span; ``trace`` and ``span_id`` are hex, times are ms after ``T0``."""
    out: dict[str, Any] = {
        "traceId": trace,
        "spanId": span_id,
        "name": name,
        "kind": 1,
        "startTimeUnixNano": str(T0 + start_ms * MS),
        "endTimeUnixNano": str(T0 + end_ms * MS),
        "attributes": attributes(attrs or {}),
    }
    if parent:
        out["parentSpanId"] = parent
    if error:
        out["status"] = {"code": 2, "message": "failed"}
    return out


def request(spans: list[dict[str, Any]], resource: dict[str, Any] | None = None) -> dict[str, Any]:
    """An ``ExportTraceServiceRequest`` with one resource and one scope."""
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": attributes(resource or {})},
                "scopeSpans": [{"scope": {"name": "tests"}, "spans": spans}],
            }
        ]
    }


RESOURCE = {
    "service.name": "shop-assistant",
    "service.version": "r42",
    "tracejury.system_prompt_version": "sp-12",
    "tracejury.tool_schema_version": "tool_v1",
    "tracejury.retrieval_config_version": "ret-7",
}
"""Resource attributes of a well-configured app."""


def genai_trace(trace: str, *, finish: str = "stop", tool_error: str | None = None) -> list[dict[str, Any]]:
    """A GenAI-semconv trace: agent root → retrieval → chat (asks for a tool) → tool → chat."""
    root, ret, chat1, tool, chat2 = (f"{trace[:12]}{i:04x}" for i in range(1, 6))
    tool_attrs: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "order_status",
        "gen_ai.tool.call.id": "call_1",
        "gen_ai.tool.call.arguments": '{"orderId": "48213"}',
        "gen_ai.tool.call.result": '{"state": "out_for_delivery"}',
    }
    if tool_error:
        tool_attrs["error.type"] = tool_error
    chat = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "acme-chat",
        "gen_ai.response.model": "acme-chat-2026-10-01",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 800,
        "gen_ai.request.top_p": 1.0,
    }
    return [
        span(trace, root, "invoke_agent shop", 0, 2140, {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.conversation.id": "conv-1",
            "tracejury.input_text_hash": "sha256:in",
            "tracejury.channel": "web",
            "tracejury.session_turn": 3,
        }),
        span(trace, ret, "retrieval kb", 10, 190, {
            "gen_ai.operation.name": "retrieval",
            "gen_ai.data_source.id": "kb",
            "gen_ai.retrieval.documents": [{"id": "doc:shipping-policy", "score": 0.83}, {"id": "doc:returns", "score": 0.5}],
        }, parent=root),
        span(trace, chat1, "chat acme-chat", 200, 900, {
            **chat, "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 20,
            "gen_ai.response.finish_reasons": ["tool_calls"],
        }, parent=root),
        span(trace, tool, "execute_tool order_status", 900, 1018, tool_attrs, parent=root, error=tool_error is not None),
        span(trace, chat2, "chat acme-chat", 1020, 2100, {
            **chat, "gen_ai.usage.input_tokens": 834, "gen_ai.usage.output_tokens": 192,
            "gen_ai.response.finish_reasons": [finish],
            "gen_ai.output.messages": '[{"role": "assistant", "parts": [{"type": "text", "content": "It ships today."}]}]',
        }, parent=root),
    ]  # fmt: skip
