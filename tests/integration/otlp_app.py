"""An LLM app as users write one: the real ``openai`` client, instrumented by an official
library (``openai_v2`` = opentelemetry-instrumentation-openai-v2, ``openinference`` =
openinference-instrumentation-openai; its content mode from the environment), exporting spans
and log records with the standard OTLP exporters to a running `tracejury serve`.

    OTEL_EXPORTER_OTLP_ENDPOINT=… OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer%20…" \
    OTEL_RESOURCE_ATTRIBUTES=service.version=r42 \
    python tests/integration/otlp_app.py LIBRARY http|grpc MODEL_BASE_URL N

Each of the N turns is one chat request (the system prompt and a question; the scripted model
server of ``tests/fixtures/otlp/capture.py`` answers); odd turns go through a tool call. Prints
the OTLP trace id of each turn, one per line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fixtures.otlp.capture import MODEL, SYSTEM, TOOL_RESULT, TOOLS, instrument  # noqa: E402


def _exporters(transport: str) -> tuple[Any, Any]:
    """The standard OTLP exporters, configured by the environment alone (the README's setup:
    OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS; for gRPC also _INSECURE)."""
    if transport == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter(), OTLPLogExporter()


def main(library: str, transport: str, model_url: str, n: int) -> None:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": "shop-assistant"})  # + OTEL_RESOURCE_ATTRIBUTES (the release)
    span_exporter, log_exporter = _exporters(transport)
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
    instrument(library, tracer_provider, logger_provider)

    import openai

    client = openai.OpenAI(base_url=model_url, api_key="sk-test", max_retries=0)
    params: dict[str, Any] = {"model": MODEL, "temperature": 0.2, "max_tokens": 800}
    roots = _roots()
    tracer_provider.add_span_processor(roots)
    tracer = tracer_provider.get_tracer("shop")
    for i in range(n):
        question = f"Where is order {48000 + i}?"
        messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
        if i % 2 == 0:  # one model call, no span of the app's: the instrumentation's span is the trace
            response = client.chat.completions.create(messages=messages, **params)
        else:  # a turn with a tool call: the app's span around two model calls
            with tracer.start_as_current_span("shop turn", attributes={"gen_ai.conversation.id": f"conv-{i}"}):
                first = client.chat.completions.create(messages=messages, tools=TOOLS, **params).choices[0].message
                (call,) = first.tool_calls or []
                messages += [first.model_dump(exclude_none=True),
                             {"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT}]  # fmt: skip
                response = client.chat.completions.create(messages=messages, tools=TOOLS, **params)
        assert response.choices[0].message.content
    tracer_provider.shutdown()
    logger_provider.shutdown()
    for trace_id in roots.trace_ids:
        print(format(trace_id, "032x"), flush=True)


def _roots() -> Any:
    from opentelemetry.sdk.trace import SpanProcessor

    class Roots(SpanProcessor):
        """Notes the trace id of every root span, in the order they end."""

        def __init__(self) -> None:
            self.trace_ids: list[int] = []

        def on_end(self, span: Any) -> None:
            if span.parent is None:
                self.trace_ids.append(span.context.trace_id)

    return Roots()


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], a[2], int(a[3]))
