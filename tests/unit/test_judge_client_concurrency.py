"""The judge client's concurrency: latency from send, outcomes fed to the adaptive limit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import orjson

from judges.llm import JudgeClient, JudgeOutcome, JudgeProfile, JudgeVerdict, Signal
from judges.mock import chat_completion
from tests.unit.test_judge_client import BASE_URL, PROFILE, REQUEST, VERDICT, FakeClock, ScriptedJudge


def test_latency_is_from_send_not_from_the_wait_for_a_slot() -> None:
    clock = FakeClock()

    async def serial(request: httpx.Request) -> httpx.Response:  # a server doing one call at a time
        await asyncio.sleep(0)
        clock.now += 0.25
        return httpx.Response(200, json=chat_completion(orjson.dumps(VERDICT).decode()))

    async def main() -> list[JudgeOutcome]:
        profile = PROFILE.model_copy(update={"max_concurrency": 1})
        async with httpx.AsyncClient(transport=httpx.MockTransport(serial)) as http:
            client = JudgeClient(http, profile, base_url=BASE_URL, clock=clock)
            return await asyncio.gather(*(client.judge(REQUEST) for _ in range(4)))

    outcomes = asyncio.run(main())
    assert clock.now == 101.0  # four calls one after another: the last waited 0.75 s for its slot
    assert [o.latency_ms for o in outcomes] == [250] * 4


def test_latency_is_the_attempts_time_on_the_wire_without_the_backoff() -> None:
    clock = FakeClock()
    script = ScriptedJudge([500, VERDICT])

    def slow(request: httpx.Request) -> httpx.Response:
        clock.now += 0.1
        return script(request)

    async def main() -> JudgeOutcome:
        async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as http:
            client = JudgeClient(http, PROFILE, base_url=BASE_URL, clock=clock, sleep=clock.sleeper(),
                                 jitter=lambda: 1.0)  # fmt: skip
            return await client.judge(REQUEST)

    outcome = asyncio.run(main())
    assert clock.slept == [0.5]  # the backoff passed on the clock ...
    assert isinstance(outcome, JudgeVerdict) and outcome.attempts == 2 and outcome.latency_ms == 200  # ... not in it


class Recording:
    """A concurrency bound that records what the client tells it."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, Signal]] = []
        self.held = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        self.held += 1
        try:
            yield
        finally:
            self.held -= 1

    def observe(self, latency_s: float, signal: Signal) -> None:
        assert self.held == 1  # told before the slot is given back
        self.seen.append((round(latency_s, 3), signal))


def test_every_attempt_reports_its_latency_and_load_signal() -> None:
    clock = FakeClock()
    script = ScriptedJudge([(429, {"retry-after": "1"}), 503, 500, httpx.ConnectError("refused"), VERDICT])

    def handler(request: httpx.Request) -> httpx.Response:
        clock.now += 0.05
        return script(request)

    recording = Recording()

    async def main() -> JudgeOutcome:
        profile = PROFILE.model_copy(update={"max_attempts": 5})
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            client = JudgeClient(http, profile, base_url=BASE_URL, clock=clock, sleep=clock.sleeper(),
                                 concurrency=recording)  # fmt: skip
            return await client.judge(REQUEST)

    assert isinstance(asyncio.run(main()), JudgeVerdict)
    assert recording.seen == [(0.05, "overload"), (0.05, "overload"), (0.05, "none"), (0.05, "none"), (0.05, "ok")]


def test_a_timeout_is_an_overload() -> None:
    recording = Recording()

    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(10)
        raise AssertionError("unreachable")

    async def main() -> JudgeOutcome:
        profile = JudgeProfile(name="t", model="m", timeout_s=0.01, max_attempts=1)
        async with httpx.AsyncClient(transport=httpx.MockTransport(hang)) as http:
            client = JudgeClient(http, profile, base_url=BASE_URL, concurrency=recording)
            return await client.judge(REQUEST)

    outcome = asyncio.run(main())
    assert outcome.kind == "timeout"  # type: ignore[union-attr]
    assert [signal for _, signal in recording.seen] == ["overload"]


def test_by_default_the_limit_adapts_from_the_profile() -> None:
    profile = JudgeProfile(name="t", model="m", max_concurrency=100, initial_concurrency=10, min_concurrency=2)

    async def main() -> tuple[int, int]:
        transport = httpx.MockTransport(ScriptedJudge([VERDICT]))
        async with httpx.AsyncClient(transport=transport) as http:
            client = JudgeClient(http, profile, base_url=BASE_URL)
            assert client.concurrency is not None
            start = client.concurrency.limit  # type: ignore[attr-defined]
            for _ in range(3):
                client.concurrency.observe(0.0, "overload")
                await asyncio.sleep(0.06)  # one cut per window (at least 50 ms)
            return start, client.concurrency.limit  # type: ignore[attr-defined]

    assert asyncio.run(main()) == (10, 7)  # 10 → 9 → 8 → 7
    fixed = profile.model_copy(update={"adaptive_concurrency": False}).concurrency_settings()
    assert (fixed.floor, fixed.start, fixed.cap) == (100, 100, 100)
    old = JudgeProfile(name="t", model="m", max_concurrency=2).concurrency_settings()
    assert (old.floor, old.start, old.cap) == (2, 2, 2)  # a profile from before loads as it was
