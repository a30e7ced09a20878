"""The adaptive concurrency limit (pure, fake clock) and the in-process slots it drives."""

from __future__ import annotations

import asyncio
import heapq
import json
import statistics

import pytest

from judges.llm.concurrency import AdaptiveLimit, AdaptiveSettings, AdaptiveSlots, signal_for


def simulate(settings: AdaptiveSettings, *, server_max: int | None, seconds: float, callers: int = 2000,
             latency_s: float = 0.2) -> tuple[list[tuple[float, int]], int, int]:  # fmt: skip
    """A discrete-event run: ``callers`` call forever through an :class:`AdaptiveLimit` against
    a server that answers in ``latency_s`` and, above ``server_max`` in flight, at once with a
    429 (the caller then waits 1 s, as Retry-After says). Returns (time, limit) samples each
    0.1 s, and the calls and 429s after the first 10 s."""
    limit = AdaptiveLimit.start(settings)
    events: list[tuple[float, int, str]] = []  # (time, seq, kind)
    seq = 0

    def push(at: float, kind: str) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (at, seq, kind))

    waiting, in_flight, at_server = callers, 0, 0
    calls = limited = 0
    samples: list[tuple[float, int]] = []
    next_sample, now = 0.0, 0.0
    while now < seconds:
        while waiting and in_flight < limit.current:  # send what the limit lets through
            waiting -= 1
            in_flight += 1
            if server_max is not None and at_server >= server_max:
                push(now + 0.001, "429")
            else:
                at_server += 1
                push(now + latency_s, "ok")
        now, _, kind = heapq.heappop(events)
        while next_sample <= now:
            samples.append((next_sample, limit.current))
            next_sample += 0.1
        if kind == "retry":
            waiting += 1
            continue
        counted = now >= 10.0
        calls += counted
        if kind == "429":
            limited += counted
            limit.observe(now, 0.001, "overload", in_flight)
            push(now + 1.0, "retry")
        else:
            at_server -= 1
            limit.observe(now, latency_s, "ok", in_flight)
            waiting += 1
        in_flight -= 1
    return samples, calls, limited


def test_it_settles_within_20_percent_below_a_server_limit_with_few_429s() -> None:
    samples, calls, limited = simulate(AdaptiveSettings(initial=32, floor=4, cap=1024), server_max=100, seconds=60)
    settled = [limit for t, limit in samples if t >= 10]
    assert 80 <= statistics.median(settled) <= 100
    assert min(settled) >= 70 and max(settled) <= 110
    assert calls > 10_000 and limited / calls < 0.01


def test_without_a_server_limit_it_reaches_the_cap_in_a_few_round_trips() -> None:
    samples, _, limited = simulate(AdaptiveSettings(initial=32, floor=4, cap=1024), server_max=None, seconds=5)
    assert limited == 0
    reached = next(t for t, limit in samples if limit == 1024)
    assert reached < 2.0  # 32 → 1024 is five doublings of one round trip each


def test_a_recovered_endpoint_is_found_again_in_seconds() -> None:
    limit = AdaptiveLimit.start(AdaptiveSettings(initial=64, floor=4, cap=1024))
    limit.observe(0.0, 0.2, "overload", 64)  # one cut ends slow start
    assert limit.current == 57 and not limit.slow_start
    now = 0.0
    while limit.current < 1024 and now < 60:
        now += 0.01
        limit.observe(now, 0.2, "ok", limit.current)  # demand keeps every slot busy
    assert limit.current == 1024 and now < 40  # +1 a round trip alone would take 190 s


def test_one_burst_of_overloads_is_one_cut() -> None:
    limit = AdaptiveLimit.start(AdaptiveSettings(initial=100, floor=4, cap=1024))
    for i in range(50):
        limit.observe(1.0 + i * 0.001, 0.001, "overload", 100)
    assert limit.current == 90 and limit.cuts == 1
    limit.observe(1.2, 0.001, "overload", 90)  # a window later: a new signal
    assert limit.current == 81 and limit.cuts == 2


def test_rising_latency_cuts_without_any_429() -> None:
    limit = AdaptiveLimit.start(AdaptiveSettings(initial=64, floor=4, cap=1024))
    now = 0.0
    for _ in range(20):  # fast, calm windows at a demand of 32: the baseline is ~0.1 s
        now += 0.11
        limit.observe(now, 0.1, "ok", 32)
    before = limit.current
    for _ in range(10):  # the endpoint queues: 0.5 s is 5x the baseline
        now += 0.6
        limit.observe(now, 0.5, "ok", 32)
    assert limit.current < before and limit.cuts >= 1


def test_it_does_not_grow_beyond_what_demand_uses() -> None:
    limit = AdaptiveLimit.start(AdaptiveSettings(initial=32, floor=4, cap=1024))
    for i in range(200):
        limit.observe(i * 0.21, 0.2, "ok", 10)  # 10 in flight never needs more than 32
    assert limit.current == 32


def test_the_floor_and_the_cap_bound_it_and_a_fixed_limit_never_moves() -> None:
    limit = AdaptiveLimit.start(AdaptiveSettings(initial=8, floor=4, cap=16))
    for i in range(50):
        limit.observe(i * 1.0, 0.01, "overload", 8)
    assert limit.current == 4
    fixed = AdaptiveLimit.start(AdaptiveSettings.fixed(64))
    for i in range(50):
        fixed.observe(i * 1.0, 0.01, "overload", 64)
    assert fixed.current == 64
    assert AdaptiveSettings(initial=2000, floor=4, cap=1024).start == 1024
    with pytest.raises(ValueError, match="floor <= cap"):
        AdaptiveSettings(floor=10, cap=5)


def test_the_state_round_trips_through_json_and_is_clamped_to_new_settings() -> None:
    limit = AdaptiveLimit.start(AdaptiveSettings(initial=64, floor=4, cap=1024))
    limit.observe(0.0, 0.2, "ok", 64)
    limit.observe(0.3, 0.2, "ok", 64)
    state = json.loads(json.dumps(limit.as_dict()))
    again = AdaptiveLimit.from_dict(limit.settings, state)
    assert again == limit
    assert AdaptiveLimit.from_dict(AdaptiveSettings(initial=8, floor=4, cap=16), state).current == 16


@pytest.mark.parametrize(("status", "timed_out", "signal"), [
    (200, False, "ok"), (429, False, "overload"), (503, False, "overload"), (504, False, "overload"),
    (None, True, "overload"), (500, False, "none"), (400, False, "none"), (None, False, "none"),
])  # fmt: skip
def test_signal_for(status: int | None, timed_out: bool, signal: str) -> None:
    assert signal_for(status, timed_out) == signal


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_slots_hold_calls_to_the_limit_first_come_first_served_and_let_more_in_as_it_grows() -> None:
    clock = Clock()
    slots = AdaptiveSlots(AdaptiveSettings(initial=2, floor=1, cap=8), clock=clock)
    order: list[int] = []
    peak = 0

    async def call(i: int, release: asyncio.Event) -> None:
        nonlocal peak
        async with slots.slot():
            order.append(i)
            peak = max(peak, slots.in_flight)
            await release.wait()
            clock.now += 0.1
            slots.observe(0.1, "ok")

    async def main() -> None:
        release = asyncio.Event()
        tasks = [asyncio.create_task(call(i, release)) for i in range(6)]
        await asyncio.sleep(0)
        assert (slots.in_flight, slots.waiting) == (2, 4)
        release.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert order == list(range(6))
    assert peak <= 4  # the limit doubled once the first window closed (2 → 4)
    assert slots.limit >= 4


def test_a_cancelled_waiter_gives_its_place_away() -> None:
    slots = AdaptiveSlots(AdaptiveSettings.fixed(1))

    async def main() -> int:
        held = asyncio.Event()
        done = asyncio.Event()

        async def holder() -> None:
            async with slots.slot():
                held.set()
                await done.wait()

        first = asyncio.create_task(holder())
        await held.wait()
        waiter = asyncio.create_task(slots.slot().__aenter__())
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        done.set()
        await first
        async with slots.slot():
            return slots.in_flight

    assert asyncio.run(main()) == 1
    assert slots.in_flight == 0 and slots.waiting == 0


def test_an_overload_keeps_its_slot_one_window_so_waiters_do_not_cycle_through_429s() -> None:
    slots = AdaptiveSlots(AdaptiveSettings(initial=2, floor=1, cap=8, min_window_s=0.05))

    async def main() -> tuple[int, int, int]:
        async with slots.slot():
            slots.observe(0.001, "overload")  # a 429: the limit is cut to 1 ...
        held = slots.in_flight  # ... and the slot is still taken
        await asyncio.sleep(0.08)
        return slots.limit, held, slots.in_flight

    assert asyncio.run(main()) == (1, 1, 0)
    fixed = AdaptiveSlots(AdaptiveSettings.fixed(2))

    async def fixed_main() -> int:
        async with fixed.slot():
            fixed.observe(0.001, "overload")
        return fixed.in_flight

    assert asyncio.run(fixed_main()) == 0  # a fixed limit learns nothing and holds nothing
