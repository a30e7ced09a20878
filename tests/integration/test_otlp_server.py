"""OTLP ingest end to end: the official OpenTelemetry Python SDK and its OTLP/HTTP exporter send
real GenAI spans to a running `tracejury serve`; the traces are read back over the API; an
unmappable span is named in the response; OTLP/JSON bodies and bad bodies."""

from __future__ import annotations

import gzip
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import requests
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

from tests.integration.procs import EXE, free_port, start, stop, wait_port
from tests.otlp_builder import RESOURCE, genai_trace, request

TA = "0af7651916cd43dd8448eb211c80319c"
TB = "4bf92f3577b34da6a3ce929d0e0e4736"


def _token(env: dict[str, str], role: str) -> str:
    out = subprocess.run([EXE, "token", "create", "--role", role, "--json"], env=env, check=True,
                         capture_output=True, timeout=60).stdout  # fmt: skip
    return orjson.loads(out)["token"]


@pytest.fixture
def server(base_env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A running `tracejury serve` on a free loopback port, with a token per role."""
    tokens = {role: _token(base_env, role) for role in ("ingest", "reviewer", "admin")}
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start([EXE, "serve", "--port", str(port), "--log-level", "warning"], base_env, log)
    try:
        wait_port(port, timeout=30)
        yield {"url": f"http://127.0.0.1:{port}", "tokens": tokens, "log": log}
    finally:
        stop(proc)
        assert "Traceback" not in log.read_text(), log.read_text()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _stored(url: str, token: str, trace_id: str) -> dict[str, Any]:
    r = httpx.get(f"{url}/traces/{trace_id}", headers=_bearer(token), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _hex(span: Any) -> tuple[str, str]:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def test_sdk_exporter_to_running_server(server: dict[str, Any]) -> None:
    url, tokens = server["url"], server["tokens"]
    responses: list[requests.Response] = []
    session = requests.Session()
    session.hooks["response"].append(lambda r, *a, **k: responses.append(r))
    exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", headers=_bearer(tokens["ingest"]),
                                compression=Compression.Gzip, session=session, timeout=30)  # fmt: skip
    resource = Resource.create({"service.name": "shop-assistant", "service.version": "r42",
                                "tracejury.system_prompt_version": "sp-12",
                                "tracejury.tool_schema_version": "tool_v1"})  # fmt: skip
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    tracer = provider.get_tracer("tests.otlp")
    chat = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "acme-chat",
            "gen_ai.response.model": "acme-chat-2026-10-01", "gen_ai.request.temperature": 0.2,
            "gen_ai.request.max_tokens": 800}  # fmt: skip

    # 1. a good trace: retrieval, chat, a tool that times out, chat cut off by the token limit
    with tracer.start_as_current_span("invoke_agent shop", attributes={
        "gen_ai.operation.name": "invoke_agent", "gen_ai.conversation.id": "conv-1",
        "tracejury.input_text_hash": "sha256:in-1", "tracejury.session_turn": 2,
    }) as root:  # fmt: skip
        with tracer.start_as_current_span("retrieval kb", attributes={
            "gen_ai.operation.name": "retrieval",
            "gen_ai.retrieval.documents": '[{"id": "doc:a", "score": 0.91}, {"id": "doc:b", "score": 0.42}]',
        }):  # fmt: skip
            pass
        with tracer.start_as_current_span("chat acme-chat", attributes={
            **chat, "gen_ai.usage.input_tokens": 900, "gen_ai.usage.output_tokens": 12,
            "gen_ai.response.finish_reasons": ["tool_calls"],
        }):  # fmt: skip
            pass
        with tracer.start_as_current_span("execute_tool order_status", attributes={
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "order_status",
            "gen_ai.tool.call.id": "call_7", "gen_ai.tool.call.arguments": '{"orderId": "48213"}',
        }) as tool:  # fmt: skip
            tool.set_attribute("error.type", "timeout")
            tool.set_status(Status(StatusCode.ERROR, "tool timed out"))
        with tracer.start_as_current_span("GET /inventory", attributes={"http.request.method": "GET"}) as http_span:
            pass
        with tracer.start_as_current_span("chat acme-chat", attributes={
            **chat, "gen_ai.usage.input_tokens": 950, "gen_ai.usage.output_tokens": 800,
            "gen_ai.response.finish_reasons": ["length"], "tracejury.raw_model_text_hash": "sha256:raw-1",
        }):  # fmt: skip
            pass
    good_trace, _ = _hex(root)
    _, http_span_id = _hex(http_span)

    # 2. an unmappable trace: its tool span has no tool name
    with tracer.start_as_current_span("invoke_agent shop", attributes={
        "gen_ai.operation.name": "invoke_agent", "gen_ai.conversation.id": "conv-2",
        "tracejury.input_text_hash": "sha256:in-2",
    }) as root2:  # fmt: skip
        with tracer.start_as_current_span("execute_tool ?", attributes={"gen_ai.operation.name": "execute_tool",
                                                                         "input.value": "{}"}) as nameless:  # fmt: skip
            pass
        with tracer.start_as_current_span("chat acme-chat", attributes={
            **chat, "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5,
            "gen_ai.output.messages": '[{"role": "assistant", "parts": [{"type": "text", "content": "hi"}]}]',
        }):  # fmt: skip
            pass
    bad_trace, _ = _hex(root2)
    _, nameless_id = _hex(nameless)

    assert provider.force_flush(30_000)
    provider.shutdown()

    [response] = responses  # one batch: both traces, all 10 spans
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse()
    answer.ParseFromString(response.content)
    assert answer.partial_success.rejected_spans == 3  # the unmappable trace's spans; the ignored span is a warning
    message = answer.partial_success.error_message
    assert message.startswith("1 trace(s) stored, 0 duplicate(s), 0 conflict(s), 0 quarantined; 3 span(s) rejected")
    assert (f"trace {bad_trace} span {nameless_id} 'execute_tool ?': trace not mapped: "
            "tool span without gen_ai.tool.name or tool.name") in message  # fmt: skip
    assert f"span {http_span_id} 'GET /inventory': not a GenAI span" in message

    stored = _stored(url, tokens["reviewer"], good_trace)
    trace = stored["trace"]
    assert trace["releaseId"] == "r42"
    assert trace["config"]["model"] == {"name": "acme-chat", "version": "acme-chat-2026-10-01"}
    assert (trace["config"]["systemPromptVersion"], trace["config"]["maxTokens"]) == ("sp-12", 800)
    assert trace["req"]["sessionTurn"] == 2 and trace["req"]["inputTextHash"] == "sha256:in-1"
    assert (trace["runtime"]["inputTokenCount"], trace["runtime"]["completionTokenCount"]) == (1850, 812)
    assert trace["runtime"]["truncated"] is True and trace["runtime"]["stopReason"] == "length"
    assert trace["evidence"]["retrieval"]["topKDocIds"] == ["doc:a", "doc:b"]
    assert trace["evidence"]["retrieval"]["topKScoreBins"] == [9, 4]
    [call] = trace["evidence"]["tool"]
    assert (call["toolName"], call["status"], call["toolCallId"], call["schemaVersion"]) == (
        "order_status", "timeout", "call_7", "tool_v1")  # fmt: skip
    assert set(trace["runtime"]["stageLatencyMs"]) == {"retrieval", "generation", "tool"}
    assert trace["runtime"]["latencyMs"] >= trace["runtime"]["stageLatencyMs"]["generation"]
    assert stored["segmentKey"].startswith(
        "model=acme-chat@acme-chat-2026-10-01|rag=on|tool=order_status@tool_v1|trunc=yes"
    )

    missing = httpx.get(f"{url}/traces/{bad_trace}", headers=_bearer(tokens["reviewer"]), timeout=30)
    assert missing.status_code == 404
    assert f"trace {bad_trace} span {nameless_id}" in server["log"].read_text()  # the server logs every report
    # and the unmappable trace is kept in quarantine (after the mapped trace's line), not only reported
    [kept] = httpx.get(f"{url}/quarantine", headers=_bearer(tokens["admin"]), timeout=30).json()
    assert (kept["traceId"], kept["line"], kept["path"]) == (bad_trace, 2, f"span {nameless_id}")
    assert kept["source"].startswith("otlp:") and kept["message"] == "OTLP: trace not mapped: tool span without gen_ai.tool.name or tool.name"


def test_json_body_bad_bodies_and_quarantine(server: dict[str, Any]) -> None:
    url, tokens = server["url"], server["tokens"]
    ingest = _bearer(tokens["ingest"])
    quarantined = genai_trace(TB)
    quarantined[4]["attributes"].append({"key": "gen_ai.request.top_p", "value": {"doubleValue": 1.5}})
    body = orjson.dumps(request(genai_trace(TA) + quarantined, RESOURCE))
    with httpx.Client(base_url=url, timeout=30) as http:
        json_headers = {**ingest, "content-type": "application/json"}
        r = http.post("/v1/traces", content=gzip.compress(body), headers={**json_headers, "content-encoding": "gzip"})
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        partial = r.json()["partialSuccess"]
        assert partial["rejectedSpans"] == "5"
        assert partial["errorMessage"].startswith("1 trace(s) stored, 0 duplicate(s), 0 conflict(s), 1 quarantined")
        assert f"trace {TB} span {TB[:12]}0001 'invoke_agent shop': quarantined as line 2" in partial["errorMessage"]
        assert "$.config.topP" in partial["errorMessage"]
        trace = _stored(url, tokens["reviewer"], TA)["trace"]
        assert trace["runtime"]["inputTokenCount"] == 1834 and trace["evidence"]["tool"][0]["status"] == "success"
        rows = http.get("/quarantine", headers=_bearer(tokens["admin"])).json()
        assert [(q["traceId"], q["line"], q["path"]) for q in rows] == [(TB, 2, "$.config.topP")]

        again = http.post("/v1/traces", content=orjson.dumps(request(genai_trace(TA), RESOURCE)), headers=json_headers)
        assert again.status_code == 200 and again.json() == {}  # fully accepted (a duplicate: idempotent)

        def refused(content: bytes, **headers: str) -> httpx.Response:
            return http.post("/v1/traces", content=content, headers={**ingest, **headers})

        for response, status, code in [
            (refused(b"\xff\x00garbage", **{"content-type": "application/x-protobuf"}), 400, "invalid_otlp"),
            (refused(b"{not json", **{"content-type": "application/json"}), 400, "invalid_otlp"),
            (refused(b"[1, 2]", **{"content-type": "application/json"}), 400, "invalid_otlp"),
            (refused(b'{"resourceSpans": 3}', **{"content-type": "application/json"}), 400, "invalid_otlp"),
            (refused(b"not gzip", **{"content-type": "application/json", "content-encoding": "gzip"}), 400,
             "invalid_otlp"),
            (refused(body, **{"content-type": "application/json", "content-encoding": "br"}), 415,
             "unsupported_media_type"),
            (refused(body, **{"content-type": "text/plain"}), 415, "unsupported_media_type"),
            (http.post("/v1/traces", content=body, headers={"content-type": "application/json"}), 401, "unauthorized"),
            (http.post("/v1/traces", content=body, headers={**_bearer(tokens["reviewer"]),
                                                             "content-type": "application/json"}), 403, "forbidden"),
        ]:  # fmt: skip
            assert response.status_code == status, response.text
            error = response.json()
            assert error["code"] == code and "\n" not in error["message"], error
        assert refused(b'{"resourceSpans": 3}', **{"content-type": "application/json"}).json()["message"] == (
            "$.resourceSpans: expected a list, got int")  # fmt: skip
        # nothing of a refused body was stored
        assert len(http.get("/quarantine", headers=_bearer(tokens["admin"])).json()) == 1


def test_store_limits_are_named_in_the_response(server: dict[str, Any]) -> None:
    """A trace that ingest quarantines past schema validation (a stage name longer than the store
    keeps, a NUL in the release) is named in the response, never reported as accepted."""
    url, tokens = server["url"], server["tokens"]
    long_stage, nul_release = genai_trace(TA), genai_trace(TB)
    long_stage[1]["attributes"].append({"key": "tracejury.stage", "value": {"stringValue": "s" * 5000}})
    nul_release[0]["attributes"].append({"key": "tracejury.release_id", "value": {"stringValue": "r\x0042"}})
    body = orjson.dumps(request(long_stage + nul_release, RESOURCE))
    r = httpx.post(f"{url}/v1/traces", content=body, timeout=30,
                   headers={**_bearer(tokens["ingest"]), "content-type": "application/json"})  # fmt: skip
    assert r.status_code == 200, r.text
    partial = r.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "10"
    message = partial["errorMessage"]
    assert message.startswith("0 trace(s) stored, 0 duplicate(s), 0 conflict(s), 2 quarantined")
    assert f"trace {TA} span {TA[:12]}0001 'invoke_agent shop': quarantined as line 1" in message
    assert "$.runtime.stageLatencyMs: stage name 'ssss" in message
    assert f"trace {TB} span {TB[:12]}0001 'invoke_agent shop': quarantined as line 2" in message
    assert "$.releaseId: contains a NUL character" in message
    rows = httpx.get(f"{url}/quarantine", headers=_bearer(tokens["admin"]), timeout=30).json()
    assert sorted((q["traceId"], q["path"]) for q in rows) == [(TA, "$.runtime.stageLatencyMs"), (TB, "$.releaseId")]
