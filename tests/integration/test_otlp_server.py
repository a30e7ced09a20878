"""OTLP ingest end to end: the official OpenTelemetry Python SDK and its OTLP/HTTP exporter send
real GenAI spans to a running `tracejury serve`, which stages them and assembles each trace (its
sweeper runs in the server); the traces are read back over the API; an unmappable trace is kept
in quarantine; OTLP/JSON bodies and bad bodies."""

from __future__ import annotations

import gzip
import subprocess
import time
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


OTLP_ENV = {"TRACEJURY_OTLP_TRACE_IDLE_S": "1", "TRACEJURY_OTLP_SWEEP_INTERVAL_S": "0.1"}
"""Assemble traces 1 s after their last span (the default is 5 s): long enough that a test's next
request always comes sooner on a loaded machine."""


@pytest.fixture
def server(base_env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A running `tracejury serve` on a free loopback port, with a token per role."""
    base_env = {**base_env, **OTLP_ENV}
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


def _stored(url: str, token: str, trace_id: str, timeout: float = 30) -> dict[str, Any]:
    """The stored trace, once the server's sweeper has assembled it."""
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(f"{url}/traces/{trace_id}", headers=_bearer(token), timeout=30)
        if r.status_code != 404 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.status_code == 200, r.text
    return r.json()


def _quarantine(url: str, token: str, n: int, timeout: float = 30) -> list[dict[str, Any]]:
    """The quarantine, once it holds ``n`` lines."""
    deadline = time.monotonic() + timeout
    while True:
        rows = httpx.get(f"{url}/quarantine", headers=_bearer(token), timeout=30).json()
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


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
    assert not answer.HasField("partial_success")  # every span was readable, and is staged

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

    # the unmappable trace is kept in quarantine with every span it had, and the server logs why
    [kept] = _quarantine(url, tokens["admin"], 1)
    assert (kept["traceId"], kept["path"]) == (bad_trace, f"span {nameless_id}")
    assert kept["source"].startswith("otlp:") and kept["message"] == "OTLP: trace not mapped: tool span without gen_ai.tool.name or tool.name"
    missing = httpx.get(f"{url}/traces/{bad_trace}", headers=_bearer(tokens["reviewer"]), timeout=30)
    assert missing.status_code == 404
    log = server["log"].read_text()
    assert f"trace {bad_trace} span {nameless_id}" in log
    assert f"span {http_span_id} 'GET /inventory': not a GenAI span" in log  # an ignored span is a warning


def test_json_body_bad_bodies_and_quarantine(server: dict[str, Any]) -> None:
    url, tokens = server["url"], server["tokens"]
    ingest = _bearer(tokens["ingest"])
    quarantined = genai_trace(TB)
    quarantined[4]["attributes"].append({"key": "gen_ai.request.top_p", "value": {"doubleValue": 1.5}})
    unreadable = genai_trace(TB)[1] | {"spanId": "xyz", "traceId": TB}
    body = orjson.dumps(request(genai_trace(TA) + quarantined + [unreadable], RESOURCE))
    with httpx.Client(base_url=url, timeout=30) as http:
        json_headers = {**ingest, "content-type": "application/json"}
        r = http.post("/v1/traces", content=gzip.compress(body), headers={**json_headers, "content-encoding": "gzip"})
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        partial = r.json()["partialSuccess"]  # what could not be read is named at once
        assert partial["rejectedSpans"] == "1"
        assert partial["errorMessage"] == (f"10 span(s) staged for assembly; 1 rejected; trace {TB}: spanId 'xyz' "
                                           "is not 8 non-zero bytes in hex or base64")  # fmt: skip
        trace = _stored(url, tokens["reviewer"], TA)["trace"]
        assert trace["runtime"]["inputTokenCount"] == 1834 and trace["evidence"]["tool"][0]["status"] == "success"
        # a trace that ingest refuses is quarantined once assembled, as `tracejury ingest` would
        [row] = _quarantine(url, tokens["admin"], 1)
        assert (row["traceId"], row["path"]) == (TB, "$.config.topP")

        again = http.post("/v1/traces", content=orjson.dumps(request(genai_trace(TA), RESOURCE)), headers=json_headers)
        assert again.status_code == 200 and again.json() == {}  # accepted: re-sent spans count once, never twice

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
            (http.post("/v1/logs", content=b"{", headers=json_headers), 400, "invalid_otlp"),
        ]:  # fmt: skip
            assert response.status_code == status, response.text
            error = response.json()
            assert error["code"] == code and "\n" not in error["message"], error
        assert refused(b'{"resourceSpans": 3}', **{"content-type": "application/json"}).json()["message"] == (
            "$.resourceSpans: expected a list, got int")  # fmt: skip
        time.sleep(1)  # past the idle time: the re-sent trace was a duplicate, nothing else arrived
        assert len(http.get("/quarantine", headers=_bearer(tokens["admin"])).json()) == 1
        metrics = http.get("/metrics", headers=_bearer(tokens["admin"])).text
        assert "tracejury_otlp_duplicate_spans_total 5.0" in metrics
        assert "tracejury_otlp_assembled_traces_total 2.0" in metrics


def test_store_limits_are_kept_in_quarantine(server: dict[str, Any]) -> None:
    """A trace that ingest quarantines past schema validation (a stage name longer than the store
    keeps, a NUL in the release) is in the quarantine, never reported as stored."""
    url, tokens = server["url"], server["tokens"]
    long_stage, nul_release = genai_trace(TA), genai_trace(TB)
    long_stage[1]["attributes"].append({"key": "tracejury.stage", "value": {"stringValue": "s" * 5000}})
    nul_release[0]["attributes"].append({"key": "tracejury.release_id", "value": {"stringValue": "r\x0042"}})
    body = orjson.dumps(request(long_stage + nul_release, RESOURCE))
    r = httpx.post(f"{url}/v1/traces", content=body, timeout=30,
                   headers={**_bearer(tokens["ingest"]), "content-type": "application/json"})  # fmt: skip
    assert r.status_code == 200 and r.json() == {}, r.text
    rows = _quarantine(url, tokens["admin"], 2)
    assert sorted((q["traceId"], q["path"]) for q in rows) == [(TA, "$.runtime.stageLatencyMs"), (TB, "$.releaseId")]
    for trace in (TA, TB):
        assert httpx.get(f"{url}/traces/{trace}", headers=_bearer(tokens["reviewer"]), timeout=30).status_code == 404
