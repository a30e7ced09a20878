"""The real mock judge over loopback, called by the real judge client and the openai client.

Each fault kind at rate 1.0 produces its failure kind; clean requests get the verdict their
evidence calls for. Everything runs on 127.0.0.1 with a free port, bounded in time.
"""

from __future__ import annotations

import asyncio
import copy
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson
import pytest
from pydantic import BaseModel

from judges.evidence import evidence_block, evidence_from_trace
from judges.llm import (
    TRANSPORTS,
    JudgeClient,
    JudgeFailure,
    JudgeOutcome,
    JudgeProfile,
    JudgeRequest,
    JudgeVerdict,
    make_http_client,
)
from judges.mock import MOCK_MODEL, running_mock_judge, serve
from tracejury.core.errors import ConfigError

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
LABELS = ("pass", "fail")
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["label", "rationale", "confidence"],
    "properties": {
        "label": {"type": "string", "enum": list(LABELS)},
        "rationale": {"type": "string"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "additionalProperties": False,
}
PROFILE = JudgeProfile(name="mock", model=MOCK_MODEL, timeout_s=5, max_attempts=2,
                       backoff_initial_s=0.01, backoff_max_s=0.05)  # fmt: skip
CONTRADICTION = '{"answer": "Your order 48213 was delivered on Nov 19.", "citations": []}'


def judge_request(trace: dict[str, Any], labels: tuple[str, ...] = LABELS) -> JudgeRequest:
    """What a rubric would send for ``trace``: instructions, then the evidence block."""
    block = evidence_block(evidence_from_trace(trace).as_data())
    schema = copy.deepcopy(SCHEMA)
    schema["properties"]["label"]["enum"] = list(labels)
    return JudgeRequest(
        messages=(
            {"role": "system", "content": f"You are a judge.\nAllowed labels: {', '.join(labels)}"},
            {"role": "user", "content": f"Does the answer agree with the evidence?\n\n{block}"},
        ),
        output_schema=schema,
        labels=labels,
        schema_name="answer_correctness",
    )


class Sleeps:
    """Records the client's waits between attempts and skips them (the HTTP stays real)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def judge_once(
    request: JudgeRequest,
    *,
    faults: str = "",
    profile: JudgeProfile = PROFILE,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    kind: str = "aiohttp",
) -> JudgeOutcome:
    """Start a mock judge, judge ``request`` through the real client, stop the mock."""

    async def main() -> JudgeOutcome:
        async with (
            running_mock_judge(faults=faults, seed=1) as mock,
            make_http_client(profile, kind) as http,  # type: ignore[arg-type]
        ):
            client = JudgeClient(http, profile, base_url=mock.base_url,
                                 sleep=sleep or asyncio.sleep)  # fmt: skip
            return await client.judge(request)

    return asyncio.run(asyncio.wait_for(main(), timeout=20))


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_an_agreeing_answer_passes(example_trace: dict[str, Any], kind: str) -> None:
    outcome = judge_once(judge_request(example_trace), kind=kind)
    assert isinstance(outcome, JudgeVerdict), outcome
    assert (outcome.label, outcome.confidence, outcome.attempts) == ("pass", 0.9, 1)
    assert outcome.model == MOCK_MODEL and outcome.prompt_tokens and outcome.completion_tokens


def test_a_contradicting_answer_fails(example_trace: dict[str, Any]) -> None:
    example_trace["sample"]["finalAnswer"] = CONTRADICTION
    outcome = judge_once(judge_request(example_trace))
    assert isinstance(outcome, JudgeVerdict), outcome
    assert outcome.label == "fail" and "delivery" in outcome.rationale


def test_an_ordinal_scale_without_json_schema(example_trace: dict[str, Any]) -> None:
    profile = PROFILE.model_copy(update={"structured_output": "none"})
    outcome = judge_once(judge_request(example_trace, ("1", "2", "3", "4", "5")), profile=profile)
    assert isinstance(outcome, JudgeVerdict) and outcome.label == "5"


@pytest.mark.parametrize(
    ("fault", "kind", "status"),
    [
        ("http500", "http_error", 500),
        ("http503", "http_error", 503),
        ("http429", "rate_limited", 429),
        ("malformed", "invalid_output", 200),
        ("schema", "invalid_output", 200),
        ("label", "rubric_mismatch", 200),
        ("refusal", "refused", 200),
    ],
)
def test_each_fault_gives_its_failure_kind(
    example_trace: dict[str, Any], fault: str, kind: str, status: int
) -> None:
    sleeps = Sleeps()  # waits are recorded, not slept, so the long backoff costs nothing
    profile = PROFILE.model_copy(update={"backoff_max_s": 20.0})
    outcome = judge_once(judge_request(example_trace), faults=f"{fault}=1.0", sleep=sleeps,
                         profile=profile)  # fmt: skip
    assert isinstance(outcome, JudgeFailure), outcome
    assert (outcome.kind, outcome.http_status) == (kind, status)
    retried = fault.startswith("http")
    assert outcome.attempts == (PROFILE.max_attempts if retried else 1)
    if fault == "http429":
        assert sleeps.waits == [1.0]  # the mock's Retry-After: 1


def test_a_hang_past_the_client_timeout_is_timeout(example_trace: dict[str, Any]) -> None:
    profile = PROFILE.model_copy(update={"timeout_s": 0.3})
    outcome = judge_once(judge_request(example_trace), faults="hang=1", profile=profile)
    assert isinstance(outcome, JudgeFailure), outcome
    assert (outcome.kind, outcome.attempts, outcome.http_status) == ("timeout", 2, None)
    assert 500 <= outcome.latency_ms < 5000


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_a_dead_endpoint_is_an_http_error_not_a_timeout(example_trace: dict[str, Any], kind: str) -> None:
    """Nothing listens: a refused connection is named, retried and recorded as http_error."""
    with socket.socket() as s:  # a free port, closed again: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps = Sleeps()

    async def main() -> JudgeOutcome:
        async with make_http_client(PROFILE, kind) as http:  # type: ignore[arg-type]
            client = JudgeClient(http, PROFILE, base_url=f"http://127.0.0.1:{port}/v1", sleep=sleeps)
            return await client.judge(judge_request(example_trace))

    outcome = asyncio.run(asyncio.wait_for(main(), timeout=20))
    assert isinstance(outcome, JudgeFailure), outcome
    assert (outcome.kind, outcome.attempts, outcome.http_status) == ("http_error", 2, None)
    assert outcome.message.split(" calling ")[0] in {"ClientConnectorError", "ConnectError"}, outcome.message
    assert len(sleeps.waits) == 1


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_a_server_that_hangs_up_is_an_http_error(example_trace: dict[str, Any], kind: str) -> None:
    """A server that takes the request and closes the connection without a reply."""

    async def main() -> JudgeOutcome:
        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1024)
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, make_http_client(PROFILE, kind) as http:  # type: ignore[arg-type]
            client = JudgeClient(http, PROFILE, base_url=f"http://127.0.0.1:{port}/v1", sleep=Sleeps())
            return await client.judge(judge_request(example_trace))

    outcome = asyncio.run(asyncio.wait_for(main(), timeout=20))
    assert isinstance(outcome, JudgeFailure), outcome
    assert (outcome.kind, outcome.attempts) == ("http_error", 2), outcome


@pytest.mark.parametrize("kind", TRANSPORTS)
@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_is_the_reply_not_followed(example_trace: dict[str, Any], kind: str, status: int) -> None:
    """A POST is never turned into a GET, nor its evidence and key sent to another host."""
    elsewhere: list[bytes] = []

    async def main() -> JudgeOutcome:
        async def other(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            elsewhere.append(await reader.read(1024))
            writer.close()

        async def redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(65536)
            writer.write(f"HTTP/1.1 {status} Moved\r\nLocation: http://127.0.0.1:{other_port}/v1/chat/completions"
                         "\r\nContent-Length: 0\r\n\r\n".encode())  # fmt: skip
            await writer.drain()
            writer.close()

        target = await asyncio.start_server(other, "127.0.0.1", 0)
        other_port = target.sockets[0].getsockname()[1]
        server = await asyncio.start_server(redirect, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with target, server, make_http_client(PROFILE, kind) as http:  # type: ignore[arg-type]
            client = JudgeClient(http, PROFILE, base_url=f"http://127.0.0.1:{port}/v1", sleep=Sleeps())
            return await client.judge(judge_request(example_trace))

    outcome = asyncio.run(asyncio.wait_for(main(), timeout=20))
    assert isinstance(outcome, JudgeFailure), outcome
    assert (outcome.kind, outcome.http_status, outcome.attempts) == ("http_error", status, 1), outcome
    assert elsewhere == []


def test_retries_get_past_partial_faults(example_trace: dict[str, Any]) -> None:
    profile = PROFILE.model_copy(update={"max_attempts": 10})
    requests = []
    for i in range(20):
        trace = copy.deepcopy(example_trace)
        trace["traceId"] = f"tr_{i}"
        trace["sample"]["inputText"] = f"Where is my order? ({i})"
        requests.append(judge_request(trace))

    async def main() -> list[JudgeOutcome]:
        async with (
            running_mock_judge(faults="http500=0.3,http503=0.2", seed=5) as mock,
            make_http_client(profile) as http,
        ):
            client = JudgeClient(http, profile, base_url=mock.base_url, sleep=Sleeps())
            return await asyncio.gather(*(client.judge(r) for r in requests))

    outcomes = asyncio.run(asyncio.wait_for(main(), timeout=20))
    assert all(isinstance(o, JudgeVerdict) and o.label == "pass" for o in outcomes)
    assert any(o.attempts > 1 for o in outcomes)


def test_many_calls_in_flight(example_trace: dict[str, Any]) -> None:
    profile = PROFILE.model_copy(update={"max_concurrency": 64})
    request = judge_request(example_trace)

    async def main() -> list[JudgeOutcome]:
        async with (
            running_mock_judge(latency_ms=20, latency_sigma=0.3) as mock,
            make_http_client(profile) as http,
        ):
            client = JudgeClient(http, profile, base_url=mock.base_url)
            return await asyncio.gather(*(client.judge(request) for _ in range(300)))

    outcomes = asyncio.run(asyncio.wait_for(main(), timeout=20))
    assert [o.label for o in outcomes if isinstance(o, JudgeVerdict)] == ["pass"] * 300
    assert min(o.latency_ms for o in outcomes) >= 5


def test_models_health_and_bad_requests() -> None:
    async def main() -> None:
        async with running_mock_judge() as mock, httpx.AsyncClient(timeout=5) as http:
            models = (await http.get(f"{mock.base_url}/models")).json()
            assert [m["id"] for m in models["data"]] == [MOCK_MODEL]
            health = await http.get(f"http://127.0.0.1:{mock.port}/health")
            assert health.json() == {"status": "ok"}
            bad = await http.post(f"{mock.base_url}/chat/completions", content=b"{nope")
            assert bad.status_code == 400 and "error" in bad.json()
            bad = await http.post(f"{mock.base_url}/chat/completions", json={"messages": 3})
            assert bad.status_code == 400

    asyncio.run(asyncio.wait_for(main(), timeout=10))


class Verdict(BaseModel):
    """The reply shape, as an openai user would declare it."""

    label: Literal["pass", "fail"]
    rationale: str
    confidence: float


def test_the_openai_client_can_call_the_mock(example_trace: dict[str, Any]) -> None:
    from openai import AsyncOpenAI

    request = judge_request(example_trace)
    contradicted = copy.deepcopy(example_trace)
    contradicted["sample"]["finalAnswer"] = CONTRADICTION

    async def main() -> None:
        async with running_mock_judge() as mock:
            client = AsyncOpenAI(base_url=mock.base_url, api_key="test", max_retries=0,
                                 timeout=5)  # fmt: skip
            try:
                completion = await client.chat.completions.create(
                    model=MOCK_MODEL,
                    messages=list(request.messages),  # type: ignore[arg-type]
                    response_format={
                        "type": "json_schema",
                        "json_schema": {"name": "verdict", "schema": SCHEMA, "strict": True},
                    },
                    seed=7,
                )
                assert completion.model == MOCK_MODEL and completion.usage is not None
                assert completion.choices[0].finish_reason == "stop"
                reply = orjson.loads(completion.choices[0].message.content or "")
                assert reply["label"] == "pass" and reply["confidence"] == 0.9

                parsed = await client.chat.completions.parse(
                    model=MOCK_MODEL,
                    messages=list(judge_request(contradicted).messages),  # type: ignore[arg-type]
                    response_format=Verdict,
                )
                verdict = parsed.choices[0].message.parsed
                assert isinstance(verdict, Verdict) and verdict.label == "fail"

                models = await client.models.list()
                assert [m.id for m in models.data] == [MOCK_MODEL]
            finally:
                await client.close()

    asyncio.run(asyncio.wait_for(main(), timeout=15))


def test_serve_runs_until_sigterm() -> None:
    code = "from judges.mock import serve; serve('127.0.0.1', 0, latency_ms=1)"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("mock judge listening on http://127.0.0.1:")
        base_url = line.rsplit(" ", 1)[1]
        assert httpx.get(f"{base_url}/models", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_serve_rejects_bad_arguments_before_binding() -> None:
    with pytest.raises(ConfigError, match="unknown fault kind 'http404'"):
        serve("127.0.0.1", 0, faults="http404=0.5")
    with pytest.raises(ConfigError, match="--latency-ms"):
        serve("127.0.0.1", 0, latency_ms=-1)
