"""Apps traced by the official OpenAI instrumentations, end to end: an app process using the
real `openai` client, instrumented by opentelemetry-instrumentation-openai-v2 or
openinference-instrumentation-openai with content capture on, exports its spans and log records
with the standard OTLP exporters (HTTP, and gRPC) to a running `tracejury serve`; it calls a
local OpenAI-compatible model server. Every request becomes one trace, and `tracejury score`
judges it: `scored`, not `missing_evidence`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.fixtures.otlp import capture
from tests.integration.procs import EXE, free_port, start, stop, wait_port
from tests.integration.test_otlp_server import OTLP_ENV, _bearer, _stored, _token

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "tests" / "integration" / "otlp_app.py"
N = 4
"""Requests per app run: two plain chats, two turns with a tool call."""

CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
LATEST = {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental"}
CASES = {
    # openai-v2 with content capture as its README shows it: messages as log records (events)
    "openai-v2-events-http": ("openai_v2", "http", {CAPTURE: "true"}),
    # the latest GenAI conventions: messages as span attributes
    "openai-v2-latest-span-http": ("openai_v2", "http", {**LATEST, CAPTURE: "SPAN_ONLY"}),
    # the latest conventions' event: one log record per call, over gRPC
    "openai-v2-latest-event-grpc": ("openai_v2", "grpc", {**LATEST, CAPTURE: "EVENT_ONLY"}),
    "openinference-http": ("openinference", "http", {}),
    "openinference-grpc": ("openinference", "grpc", {}),
}


@pytest.fixture
def stack(base_env: dict[str, str], tmp_path: Path, mock_judge: str) -> Iterator[dict[str, Any]]:
    """`tracejury serve` (HTTP and gRPC), the app's model server, the mock judge."""
    env = {**base_env, **OTLP_ENV, "TRACEJURY_JUDGE_BASE_URL": mock_judge}
    tokens = {role: _token(env, role) for role in ("ingest", "reviewer", "admin")}
    port, grpc_port, model_port = free_port(), free_port(), free_port()
    serve = start([EXE, "serve", "--port", str(port), "--otlp-grpc-port", str(grpc_port), "--log-level", "warning"],
                  env, tmp_path / "serve.log")  # fmt: skip
    model = start([sys.executable, str(ROOT / "tests/fixtures/otlp/capture.py"), "serve", "--port", str(model_port)],
                  env, tmp_path / "model.log")  # fmt: skip
    try:
        for p in (port, grpc_port, model_port):
            wait_port(p, timeout=30)
        yield {"url": f"http://127.0.0.1:{port}", "grpc": f"127.0.0.1:{grpc_port}", "tokens": tokens, "env": env,
               "model": f"http://127.0.0.1:{model_port}/v1", "log": tmp_path / "serve.log"}  # fmt: skip
    finally:
        stop(model)
        stop(serve)
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def _evaluations(url: str, token: str, trace_id: str) -> dict[str, dict[str, Any]]:
    r = httpx.get(f"{url}/traces/{trace_id}/evaluations", headers=_bearer(token), timeout=30)
    assert r.status_code == 200, r.text
    return {e["evaluator"]: e for e in r.json()}


@pytest.mark.parametrize("case", list(CASES))
def test_instrumented_app_is_traced_and_judged(stack: dict[str, Any], case: str) -> None:
    library, transport, content_env = CASES[case]
    release = f"r-{case}"
    # the README's setup: the standard exporters configured by the environment alone
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{stack['grpc']}" if transport == "grpc" else stack["url"],
            "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer%20{stack['tokens']['ingest']}",
            "OTEL_RESOURCE_ATTRIBUTES": f"service.version={release}"}  # fmt: skip
    if transport == "grpc":
        otel["OTEL_EXPORTER_OTLP_INSECURE"] = "true"
    app_env = {k: v for k, v in stack["env"].items() if not k.startswith("TRACEJURY_")} | content_env | otel
    out = subprocess.run([sys.executable, str(APP), library, transport, stack["model"], str(N)], env=app_env,
                         capture_output=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    trace_ids = out.stdout.decode().split()
    assert len(trace_ids) == N  # one trace per request

    url, reviewer = stack["url"], stack["tokens"]["reviewer"]
    for i, trace_id in enumerate(trace_ids):
        trace = _stored(url, reviewer, trace_id)["trace"]
        assert trace["releaseId"] == release
        sample = trace["sample"]
        assert sample["inputText"] == f"Where is order {48000 + i}?"
        assert sample["finalAnswer"] == (capture.CHAT_ANSWER if i % 2 == 0 else capture.TOOL_ANSWER)
        assert trace["config"]["model"]["version"] == capture.RESPONSE_MODEL
    signals = httpx.get(f"{url}/signals", params={"release": release}, headers=_bearer(stack["tokens"]["admin"]),
                        timeout=30)  # fmt: skip
    assert signals.status_code == 200 and orjson.loads(signals.content)

    scored = subprocess.run([EXE, "score", "--release", release, "--json"], env=stack["env"], capture_output=True,
                            timeout=300)  # fmt: skip
    assert scored.returncode == 0, scored.stderr.decode()
    for trace_id in trace_ids:
        evals = _evaluations(url, reviewer, trace_id)
        for rubric in ("answer_correctness", "helpfulness", "refusal_appropriateness"):
            assert evals[rubric]["status"] == "scored", (rubric, evals[rubric])
