"""The judge client against scripted fake servers (``httpx.MockTransport``), no network.

Every failure becomes a ``JudgeFailure`` of the right kind; waits between attempts are
recorded by an injected sleep, so nothing here really sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest

from judges.llm import (
    JudgeClient,
    JudgeFailure,
    JudgeOutcome,
    JudgeProfile,
    JudgeRequest,
    JudgeVerdict,
    RateLimiter,
    TokenBucket,
    estimate_tokens,
)
from judges.mock import chat_completion

BASE_URL = "http://judge.test/v1"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["label", "rationale"],
    "properties": {
        "label": {"enum": ["pass", "fail"]},
        "rationale": {"type": "string"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "additionalProperties": False,
}
REQUEST = JudgeRequest(
    messages=(
        {"role": "system", "content": "You are a judge.\nAllowed labels: pass, fail"},
        {"role": "user", "content": "Grade this.\n<evidence>\n{}\n</evidence>"},
    ),
    output_schema=SCHEMA,
    labels=("pass", "fail"),
    schema_name="answer_correctness",
)
VERDICT = {"label": "pass", "rationale": "Agrees with the tool snapshot.", "confidence": 0.9}
PROFILE = JudgeProfile(name="test", model="judge-1", max_attempts=4, backoff_initial_s=0.5)

Step = int | tuple[int, dict[str, str]] | dict[str, Any] | str | Exception | httpx.Response


class ScriptedJudge:
    """A fake judge endpoint: answers each request with the next step of its script.

    A step is a status code (an error body), ``(status, headers)``, a reply object (a 200
    chat completion with it as JSON content), a raw content string, an exception to raise,
    or a ready ``httpx.Response``. The last step repeats once the script runs out.
    """

    def __init__(self, script: list[Step]) -> None:
        self.script = script
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        step = self.script[min(len(self.requests), len(self.script) - 1)]
        self.requests.append(request)
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            return step
        if isinstance(step, int):
            step = (step, {})
        if isinstance(step, tuple):
            status, headers = step
            return httpx.Response(status, headers=headers, json={"error": {"message": "nope"}})
        content = step if isinstance(step, str) else orjson.dumps(step).decode()
        body = chat_completion(content, model="judge-1-0613", prompt_tokens=50, completion_tokens=9)
        return httpx.Response(200, json=body)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies the client sent."""
        return [orjson.loads(r.content) for r in self.requests]


class Sleeps:
    """An injected sleep that records each wait instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def run(
    script: list[Step],
    *,
    profile: JudgeProfile = PROFILE,
    api_key: str | None = None,
    request: JudgeRequest = REQUEST,
) -> tuple[JudgeOutcome, ScriptedJudge, Sleeps]:
    """Judge ``request`` once against a fresh scripted server."""
    server, sleeps = ScriptedJudge(script), Sleeps()

    async def main() -> JudgeOutcome:
        async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
            client = JudgeClient(http, profile, base_url=BASE_URL, api_key=api_key,
                                 sleep=sleeps, jitter=lambda: 0.5)  # fmt: skip
            return await client.judge(request)

    return asyncio.run(main()), server, sleeps


def test_429_429_ok_is_a_verdict_after_three_attempts() -> None:
    outcome, server, sleeps = run([(429, {"Retry-After": "2"}), 429, VERDICT])
    assert isinstance(outcome, JudgeVerdict)
    assert (outcome.label, outcome.confidence, outcome.attempts) == ("pass", 0.9, 3)
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (50, 9)
    assert outcome.model == "judge-1-0613"
    assert sleeps.waits == [2.0, 0.5]  # Retry-After honoured; then backoff 0.5 × 2 × jitter
    assert len(server.requests) == 3


def test_the_request_body() -> None:
    outcome, server, _ = run([VERDICT], api_key="sk-test")
    assert isinstance(outcome, JudgeVerdict)
    sent = server.requests[0]
    assert str(sent.url) == f"{BASE_URL}/chat/completions" and sent.method == "POST"
    assert sent.headers["authorization"] == "Bearer sk-test"
    body = server.bodies[0]
    assert body["model"] == "judge-1" and body["temperature"] == 0.0 and "seed" not in body
    assert body["messages"] == list(REQUEST.messages)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer_correctness", "schema": SCHEMA, "strict": True},
    }


def test_without_json_schema_support_there_is_no_response_format() -> None:
    profile = PROFILE.model_copy(update={"structured_output": "none"})
    seeded = JudgeRequest(REQUEST.messages, SCHEMA, REQUEST.labels, "s", temperature=0.7, seed=3)
    outcome, server, _ = run(["```json\n" + orjson.dumps(VERDICT).decode() + "\n```"],
                             profile=profile, request=seeded)  # fmt: skip
    assert isinstance(outcome, JudgeVerdict) and outcome.label == "pass"
    body = server.bodies[0]
    assert "response_format" not in body
    assert (body["seed"], body["temperature"]) == (3, 0.7)
    assert "authorization" not in server.requests[0].headers


def test_500_until_the_budget_is_http_error() -> None:
    outcome, server, sleeps = run([500])
    assert isinstance(outcome, JudgeFailure)
    assert (outcome.kind, outcome.http_status, outcome.attempts) == ("http_error", 500, 4)
    assert len(server.requests) == PROFILE.max_attempts
    assert sleeps.waits == [0.25, 0.5, 1.0]  # exponential, jitter 0.5
    assert "HTTP 500" in outcome.message and "\n" not in outcome.message


def test_429_until_the_budget_is_rate_limited() -> None:
    outcome, server, sleeps = run([(429, {"Retry-After": "1"})])
    assert isinstance(outcome, JudgeFailure)
    assert (outcome.kind, outcome.http_status, outcome.attempts) == ("rate_limited", 429, 4)
    assert sleeps.waits == [1.0, 1.0, 1.0]


def test_malformed_content_is_invalid_output_without_retry() -> None:
    outcome, server, _ = run(["Sure! The verdict is pass."])
    assert isinstance(outcome, JudgeFailure)
    assert (outcome.kind, outcome.attempts, outcome.http_status) == ("invalid_output", 1, 200)


def test_a_body_that_is_not_json_is_invalid_output() -> None:
    outcome, _, _ = run([httpx.Response(200, text="<html>gateway</html>")])
    assert isinstance(outcome, JudgeFailure) and outcome.kind == "invalid_output"


def test_a_label_outside_the_scale_is_rubric_mismatch() -> None:
    outcome, _, _ = run([{**VERDICT, "label": "excellent"}])
    assert isinstance(outcome, JudgeFailure)
    assert (outcome.kind, outcome.attempts) == ("rubric_mismatch", 1)


def test_a_refusal_is_refused() -> None:
    refusal = chat_completion(None, refusal="I cannot grade this.")
    outcome, _, _ = run([httpx.Response(200, json=refusal)])
    assert isinstance(outcome, JudgeFailure)
    assert (outcome.kind, outcome.attempts) == ("refused", 1)


def test_a_timeout_until_the_budget_is_timeout() -> None:
    outcome, server, sleeps = run([httpx.ReadTimeout("slow")])
    assert isinstance(outcome, JudgeFailure)
    assert (outcome.kind, outcome.attempts, outcome.http_status) == ("timeout", 4, None)
    assert len(sleeps.waits) == 3


def test_a_timeout_then_a_verdict() -> None:
    outcome, _, _ = run([httpx.ReadTimeout("slow"), VERDICT])
    assert isinstance(outcome, JudgeVerdict) and outcome.attempts == 2


def test_connection_errors_are_http_errors_after_the_budget() -> None:
    outcome, _, _ = run([httpx.ConnectError("refused")])
    assert isinstance(outcome, JudgeFailure)
    assert (outcome.kind, outcome.attempts, outcome.http_status) == ("http_error", 4, None)


def test_400_is_http_error_after_one_attempt() -> None:
    outcome, server, sleeps = run([400, VERDICT])
    assert isinstance(outcome, JudgeFailure)
    assert (outcome.kind, outcome.attempts, outcome.http_status) == ("http_error", 1, 400)
    assert sleeps.waits == [] and len(server.requests) == 1


def test_the_last_attempt_decides_the_kind() -> None:
    outcome, _, _ = run([429, 503, 500, (429, {"Retry-After": "0"})])
    assert isinstance(outcome, JudgeFailure) and outcome.kind == "rate_limited"


def test_a_missing_api_key_is_config_error_without_a_call() -> None:
    profile = PROFILE.model_copy(update={"api_key_env": "JUDGE_API_KEY"})
    outcome, server, _ = run([VERDICT], profile=profile)
    assert isinstance(outcome, JudgeFailure)
    assert (outcome.kind, outcome.attempts) == ("config_error", 0)
    assert "JUDGE_API_KEY" in outcome.message and server.requests == []
    outcome, _, _ = run([VERDICT], profile=profile, api_key="sk-x")
    assert isinstance(outcome, JudgeVerdict)


def test_a_bad_schema_or_base_url_is_config_error() -> None:
    broken = JudgeRequest(REQUEST.messages, {"type": "nonsense"}, ("pass",), "broken")
    outcome, server, _ = run([VERDICT], request=broken)
    assert isinstance(outcome, JudgeFailure) and outcome.kind == "config_error"
    profile = PROFILE.model_copy(update={"base_url": "ftp://judge.test/v1"})
    outcome, server, _ = run([VERDICT], profile=profile)
    assert isinstance(outcome, JudgeFailure) and outcome.kind == "config_error"
    assert server.requests == []


def test_the_profile_base_url_wins_over_the_default() -> None:
    profile = PROFILE.model_copy(update={"base_url": "http://other.test/v2/"})
    _, server, _ = run([VERDICT], profile=profile)
    assert str(server.requests[0].url) == "http://other.test/v2/chat/completions"


def test_concurrency_is_bounded_by_the_profile() -> None:
    in_flight = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json=chat_completion(orjson.dumps(VERDICT).decode()))

    async def main() -> list[JudgeOutcome]:
        profile = PROFILE.model_copy(update={"max_concurrency": 3})
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            client = JudgeClient(http, profile, base_url=BASE_URL)
            return await asyncio.gather(*(client.judge(REQUEST) for _ in range(12)))

    outcomes = asyncio.run(main())
    assert all(isinstance(o, JudgeVerdict) for o in outcomes)
    assert peak == 3


class FakeClock:
    """A clock the test moves by hand; its sleep advances it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleeper(self) -> Callable[[float], Awaitable[None]]:
        async def sleep(seconds: float) -> None:
            self.slept.append(seconds)
            self.now += seconds

        return sleep


def test_token_bucket_reservations() -> None:
    bucket = TokenBucket(rate=2.0, capacity=4.0, now=0.0)
    assert [bucket.reserve(1, 0.0) for _ in range(4)] == [0.0, 0.0, 0.0, 0.0]
    assert bucket.reserve(1, 0.0) == pytest.approx(0.5)  # first come, first served
    assert bucket.reserve(1, 0.0) == pytest.approx(1.0)
    assert bucket.reserve(1, 1.0) == pytest.approx(0.5)  # 1 s refilled 2 units
    assert bucket.reserve(1, 100.0) == 0.0  # refills, but never past capacity
    assert bucket.level == pytest.approx(3.0)


def test_token_bucket_lets_an_oversized_request_through_after_its_wait() -> None:
    bucket = TokenBucket.per_minute(600, now=0.0, burst_s=1.0)  # 10/s, holds 10
    assert bucket.capacity == 10.0
    assert bucket.reserve(30, 0.0) == pytest.approx(2.0)


def test_rate_limiter_with_a_fake_clock() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, 6000, clock=clock, sleep=clock.sleeper())  # 1 req/s, 100 tok/s

    async def main() -> None:
        for _ in range(5):  # the request bucket holds 5 s worth: no waiting
            await limiter.acquire(10)
        assert clock.slept == []
        await limiter.acquire(10)  # sixth request: one second later
        assert clock.slept == [pytest.approx(1.0)]
        await limiter.acquire(900)  # refilled to 500 (the cap): 400 short, at 100 tokens/s
        assert clock.slept[-1] == pytest.approx(4.0)

    asyncio.run(main())


def test_no_limits_never_wait() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, None, clock=clock, sleep=clock.sleeper())

    async def main() -> None:
        for _ in range(1000):
            await limiter.acquire(10_000)

    asyncio.run(main())
    assert clock.slept == []


def test_the_client_acquires_from_its_limiter_per_attempt() -> None:
    class Recording:
        def __init__(self) -> None:
            self.tokens: list[int] = []

        async def acquire(self, tokens: int) -> None:
            self.tokens.append(tokens)

    limiter = Recording()

    async def main() -> JudgeOutcome:
        transport = httpx.MockTransport(ScriptedJudge([500, VERDICT]))
        async with httpx.AsyncClient(transport=transport) as http:
            client = JudgeClient(http, PROFILE, base_url=BASE_URL, sleep=Sleeps(),
                                 limiter=limiter)  # fmt: skip
            return await client.judge(REQUEST)

    assert isinstance(asyncio.run(main()), JudgeVerdict)
    assert limiter.tokens == [estimate_tokens(REQUEST)] * 2


def test_latency_is_measured_with_the_injected_clock() -> None:
    clock = FakeClock()
    script = ScriptedJudge([VERDICT])

    def slow(request: httpx.Request) -> httpx.Response:
        clock.now += 0.25
        return script(request)

    async def main() -> JudgeOutcome:
        async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as http:
            client = JudgeClient(http, PROFILE, base_url=BASE_URL, clock=clock)
            return await client.judge(REQUEST)

    outcome = asyncio.run(main())
    assert isinstance(outcome, JudgeVerdict) and outcome.latency_ms == 250
