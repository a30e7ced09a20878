"""OTLP traces assembled across requests by a running `tracejury serve`, with the official SDK's
exporters: the SimpleSpanProcessor (a request per span), a BatchSpanProcessor with a tiny batch
size, and spans shuffled over many requests all give the same stored traces as one whole export;
an API restart mid-trace loses nothing; two server processes (two sweepers) store each trace
once (two `serve` on one store, each with its sweeper, the spans of a trace reaching both); a
full staging answers 503; and OTLP/gRPC takes the same tokens and path."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.integration.procs import EXE, free_port, start, stop, wait_port
from tests.integration.test_otlp_server import OTLP_ENV, _bearer, _stored, _token
from tests.otlp_builder import RESOURCE
from tracejury.core.otlp import map_export_request
from tracejury.core.redaction import default_policy

PROTOBUF = {"content-type": "application/x-protobuf"}


class Serve:
    """`tracejury serve` as a restartable process."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.env, self.log, self.args = env, log, args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Any = None

    def start(self) -> None:
        self.proc = start([EXE, "serve", "--port", str(self.port), "--log-level", "warning", *self.args],
                          self.env, self.log)  # fmt: skip
        wait_port(self.port, timeout=30)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


@pytest.fixture
def serve(base_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., tuple[Serve, dict[str, str]]]]:
    """Start `tracejury serve` with extra environment and arguments; stopped and checked at the end."""
    started: list[Serve] = []

    def run(*args: str, beside: Serve | None = None, **env: str) -> tuple[Serve, dict[str, str]]:
        """A server; ``beside`` another: one more on its store, with its environment (no new tokens)."""
        full = beside.env if beside is not None else {**base_env, **OTLP_ENV, **env}
        tokens = {} if beside is not None else {role: _token(full, role) for role in ("ingest", "reviewer", "admin")}
        server = Serve(full, tmp_path / f"serve{len(started)}.log", *args)
        started.append(server)
        server.start()
        return server, tokens

    yield run
    for server in started:
        server.stop()
        assert "Traceback" not in server.log.read_text(), server.log.read_text()


def _app(provider: TracerProvider, n: int, tag: str) -> list[str]:
    """An instrumented app: n requests, each a GenAI trace of 5 spans; returns their trace ids."""
    tracer = provider.get_tracer("tests.app")
    chat = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "acme-chat",
            "gen_ai.response.model": "acme-chat-2026-10-01", "gen_ai.request.temperature": 0.2,
            "gen_ai.request.max_tokens": 800}  # fmt: skip
    ids = []
    for i in range(n):
        with tracer.start_as_current_span("invoke_agent shop", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.conversation.id": f"{tag}-{i}",
            "tracejury.input_text_hash": f"sha256:{tag}-{i}"}) as root:  # fmt: skip
            with tracer.start_as_current_span("retrieval kb", attributes={
                "gen_ai.operation.name": "retrieval",
                "gen_ai.retrieval.documents": '[{"id": "doc:a", "score": 0.91}]'}):  # fmt: skip
                pass
            for answer in ("call the tool", f"answer {i}"):
                with tracer.start_as_current_span("chat acme-chat", attributes={
                    **chat, "gen_ai.usage.input_tokens": 100 + i, "gen_ai.usage.output_tokens": 10,
                    "gen_ai.output.messages": f'[{{"role": "assistant", "parts": [{{"type": "text", '
                                              f'"content": "{answer}"}}]}}]'}):  # fmt: skip
                    pass
                if answer == "call the tool":
                    with tracer.start_as_current_span("execute_tool order_status", attributes={
                        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "order_status",
                        "gen_ai.tool.call.arguments": f'{{"orderId": "{i}"}}'}):  # fmt: skip
                        pass
        ids.append(format(root.get_span_context().trace_id, "032x"))
    return ids


def _provider(*processors: Any) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create(RESOURCE))
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def _expected(spans: tuple[ReadableSpan, ...]) -> dict[str, dict[str, Any]]:
    """What one whole export of ``spans`` maps to, trace by trace."""
    mapping = map_export_request(MessageToDict(encode_spans(spans)))
    return {t["traceId"]: default_policy().redact_trace(t)[0] for t in mapping.traces}  # as stored


def _exporter(server: Serve, tokens: dict[str, str]) -> OTLPSpanExporter:
    return OTLPSpanExporter(endpoint=f"{server.url}/v1/traces", headers=_bearer(tokens["ingest"]), timeout=30)


def _metric(server: Serve, tokens: dict[str, str], name: str) -> float:
    text = httpx.get(f"{server.url}/metrics", headers=_bearer(tokens["admin"]), timeout=30).text
    line = next(ln for ln in text.splitlines() if ln.startswith(name + " "))
    return float(line.split()[1])


def test_span_processors_and_shuffled_requests_give_the_traces_of_one_export(serve) -> None:  # noqa: ANN001
    # two `tracejury serve` on one store, as behind a load balancer: each has its sweeper, and the
    # spans of a trace reach both
    server, tokens = serve("--workers", "2", TRACEJURY_METRICS_CACHE_S="0")
    other, _ = serve(beside=server)
    expected: dict[str, dict[str, Any]] = {}

    # 1. SimpleSpanProcessor: every span is its own request, the root last
    memory = InMemorySpanExporter()  # what was sent, to map as one whole export (a shut down one records nothing)
    provider = _provider(SimpleSpanProcessor(_exporter(server, tokens)), SimpleSpanProcessor(_exporter(other, tokens)),
                         SimpleSpanProcessor(memory))  # every span sent to both servers: once counts  # fmt: skip
    simple = _app(provider, 4, "simple")
    expected |= _expected(memory.get_finished_spans())
    provider.shutdown()
    # 2. BatchSpanProcessor with a batch of 2: every trace straddles three exports
    memory = InMemorySpanExporter()
    provider = _provider(BatchSpanProcessor(_exporter(server, tokens), max_export_batch_size=2,
                                            schedule_delay_millis=50), SimpleSpanProcessor(memory))  # fmt: skip
    batched = _app(provider, 4, "batch")
    expected |= _expected(memory.get_finished_spans())
    provider.shutdown()
    # 3. the spans of 6 traces shuffled over 7 requests, sent as a collector might
    memory = InMemorySpanExporter()
    provider = _provider(SimpleSpanProcessor(memory))
    shuffled = _app(provider, 6, "shuffled")
    spans = list(memory.get_finished_spans())
    expected |= _expected(tuple(spans))
    roots = [sp for sp in spans if sp.parent is None]
    spans = [sp for sp in spans if sp.parent is not None]
    random.Random(11).shuffle(spans)
    parts = [spans[i::7] for i in range(7)]
    parts[-1] += roots  # the roots last, as an exporter sends them: no trace is ready before its last part
    for i, part in enumerate(parts):
        body = encode_spans(part).SerializeToString()
        url = (server, other)[i % 2].url
        r = httpx.post(f"{url}/v1/traces", content=body, headers={**_bearer(tokens["ingest"]), **PROTOBUF})
        assert r.status_code == 200 and r.content == b"", r.text

    for trace_id in simple + batched + shuffled:
        assert _stored(server.url, tokens["reviewer"], trace_id)["trace"] == expected[trace_id]
    assert _metric(server, tokens, "tracejury_otlp_assembled_traces_total") == 14
    assert _metric(server, tokens, "tracejury_otlp_staged_spans") == 0
    assert _metric(server, tokens, "tracejury_traces_ingested_total") == 14
    assert _metric(other, tokens, "tracejury_otlp_duplicate_spans_total") == 4 * 5  # the simple case's second copies


def test_api_restart_mid_trace_loses_nothing(serve) -> None:  # noqa: ANN001
    server, tokens = serve()
    memory = InMemorySpanExporter()
    [trace_id] = _app(_provider(SimpleSpanProcessor(memory)), 1, "restart")
    spans = memory.get_finished_spans()  # children first; the root ends last
    post = {**_bearer(tokens["ingest"]), **PROTOBUF}
    assert httpx.post(f"{server.url}/v1/traces", content=encode_spans(spans[:3]).SerializeToString(),
                      headers=post).status_code == 200  # fmt: skip
    server.stop()
    server.start()
    assert httpx.post(f"{server.url}/v1/traces", content=encode_spans(spans[3:]).SerializeToString(),
                      headers=post).status_code == 200  # fmt: skip
    assert _stored(server.url, tokens["reviewer"], trace_id)["trace"] == _expected(spans)[trace_id]


def test_full_staging_answers_503_and_shows_its_size(serve) -> None:  # noqa: ANN001
    server, tokens = serve(TRACEJURY_OTLP_MAX_STAGED_SPANS="8", TRACEJURY_OTLP_TRACE_IDLE_S="3600",
                           TRACEJURY_METRICS_CACHE_S="0")  # fmt: skip
    memory = InMemorySpanExporter()
    _app(_provider(SimpleSpanProcessor(memory)), 2, "full")
    spans = memory.get_finished_spans()
    post = {**_bearer(tokens["ingest"]), **PROTOBUF}
    first = httpx.post(f"{server.url}/v1/traces", content=encode_spans(spans[:5]).SerializeToString(), headers=post)
    assert first.status_code == 200
    full = httpx.post(f"{server.url}/v1/traces", content=encode_spans(spans[5:]).SerializeToString(), headers=post)
    assert full.status_code == 503 and full.headers["retry-after"] == "5"
    assert full.json()["code"] == "staging_full"
    assert "holds 5 span(s) and log record(s); 5 more would pass its limit of 8" in full.json()["message"]
    assert _metric(server, tokens, "tracejury_otlp_staged_spans") == 5
    assert _metric(server, tokens, "tracejury_otlp_staged_traces") == 1


def test_otlp_grpc(serve) -> None:  # noqa: ANN001
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter

    grpc_port = free_port()
    server, tokens = serve("--otlp-grpc-port", str(grpc_port))
    wait_port(grpc_port, timeout=30)
    endpoint = f"127.0.0.1:{grpc_port}"
    exporter = GrpcSpanExporter(endpoint=endpoint, insecure=True, timeout=30,
                                headers=(("authorization", f"Bearer {tokens['ingest']}"),))  # fmt: skip
    memory = InMemorySpanExporter()
    provider = _provider(BatchSpanProcessor(exporter, max_export_batch_size=3, schedule_delay_millis=50),
                         SimpleSpanProcessor(memory))  # fmt: skip
    ids = _app(provider, 3, "grpc")
    expected = _expected(memory.get_finished_spans())
    spans = memory.get_finished_spans()
    provider.shutdown()
    for trace_id in ids:
        assert _stored(server.url, tokens["reviewer"], trace_id)["trace"] == expected[trace_id]
    # the same tokens: a reviewer's token, a bad one, none
    for headers in ((("authorization", f"Bearer {tokens['reviewer']}"),), (("authorization", "Bearer nope"),), ()):
        refused = GrpcSpanExporter(endpoint=endpoint, insecure=True, timeout=5, headers=headers)
        start_at = time.monotonic()
        assert refused.export(spans) == SpanExportResult.FAILURE
        assert time.monotonic() - start_at < 5  # refused at once, not retried as if unavailable
        refused.shutdown()
    log = server.log.read_text()
    assert "Traceback" not in log
