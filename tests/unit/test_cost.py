"""Judge spend, pure parts: the cost of a call, an evaluation's cost with cached and failed
calls, the worst case a cap reserves, the guard that enforces caps under concurrency, and the
capped batch's estimate staying unbiased over seeds."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from judges.evaluate import JudgeAccess, _spend
from judges.llm.profiles import JudgeProfile
from judges.llm.types import JudgeFailure, JudgeRequest, JudgeVerdict
from tracejury.core.cost import Price, call_cost, capped_scale, traces_for_cap, worst_case_cost
from workers.spend import BATCH_CAP, BatchCap, SpendGuard, nano, prompt_bytes

PRICE = Price(input_per_million=2.0, output_per_million=8.0, cached_input_per_million=0.5)


def verdict(prompt: int | None, completion: int | None) -> JudgeVerdict:
    return JudgeVerdict("pass", "ok", 0.9, prompt, completion, 1, 10, "m")


def test_call_cost_prices_prompt_cached_prompt_and_completion() -> None:
    assert call_cost(PRICE, 1_000_000, 0) == pytest.approx(2.0)
    assert call_cost(PRICE, 1000, 500) == pytest.approx((1000 * 2 + 500 * 8) / 1e6)
    # 400 of the 1000 prompt tokens from the provider's prompt cache, at its price
    assert call_cost(PRICE, 1000, 0, cached_prompt_tokens=400) == pytest.approx((600 * 2 + 400 * 0.5) / 1e6)
    no_cached_price = Price(input_per_million=2.0, output_per_million=8.0)
    assert call_cost(no_cached_price, 1000, 0, cached_prompt_tokens=400) == pytest.approx(1000 * 2 / 1e6)
    assert call_cost(None, 1000, 500) is None  # unpriced: unknown, not free
    assert call_cost(PRICE, None, None) is None  # nothing reported: unknown, not free


def test_an_evaluation_pays_for_calls_made_and_saves_cached_ones() -> None:
    hit, fresh = verdict(1000, 100), verdict(2000, 50)
    billed_failure = JudgeFailure("invalid_output", "not JSON", 200, 1, 10, prompt_tokens=1500, completion_tokens=30)
    refused_http = JudgeFailure("http_error", "HTTP 500", 500, 4, 10)
    spend = _spend([(hit, True), (fresh, False), (billed_failure, False), (refused_http, False)], PRICE)
    assert spend["prompt_tokens"] == 3500 and spend["completion_tokens"] == 80  # the hit's are not spent
    assert spend["cost_usd"] == pytest.approx(call_cost(PRICE, 2000, 50) + call_cost(PRICE, 1500, 30))
    assert spend["saved_usd"] == pytest.approx(call_cost(PRICE, 1000, 100))
    all_cached = _spend([(hit, True)], PRICE)
    assert all_cached["cost_usd"] == 0.0 and all_cached["prompt_tokens"] is None
    assert _spend([(fresh, False)], None)["cost_usd"] is None  # tokens counted, money unknown
    assert JudgeAccess(call=None, models={}).prices == {}  # type: ignore[arg-type]


def test_the_worst_case_bounds_any_tokenisation() -> None:
    request = JudgeRequest(messages=({"role": "user", "content": "héllo " * 100},), output_schema={"type": "object"},
                           labels=("pass",), schema_name="t")  # fmt: skip
    size = prompt_bytes(request)
    assert size == len(("héllo " * 100).encode()) + len(b'{"type":"object"}') + 1024  # + the JSON instruction
    worst = worst_case_cost(PRICE, size, 1, max_output_tokens=256)
    assert worst >= call_cost(PRICE, size, 256)  # a token is at least a byte
    assert nano(worst) >= worst * 1e9 and nano(1e-9) == 1


def test_planning_to_a_cap_and_scaling_a_stopped_batch() -> None:
    assert traces_for_cap(10.0, 0.01) == pytest.approx(900)
    assert traces_for_cap(10.0, 0.0) == float("inf")
    assert capped_scale(30, 120) == 0.25
    with pytest.raises(ValueError):
        capped_scale(130, 120)
    with pytest.raises(ValueError):
        traces_for_cap(0, 1)


class MemoryLedger:
    """The ledger protocol in memory, with an await between check and update removed (as the
    real ones are atomic)."""

    def __init__(self) -> None:
        self.reserved: dict[str, int] = {}
        self.spent: dict[str, int] = {}
        self.peak: dict[str, int] = {}

    async def reserve(self, key: str, amount: int, cap: int) -> int:
        used = self.spent.get(key, 0) + self.reserved.get(key, 0)
        if self.spent.get(key, 0) + amount > cap:
            return -1
        if used + amount > cap:
            return 0
        self.reserved[key] = self.reserved.get(key, 0) + amount
        self.peak[key] = max(self.peak.get(key, 0), used + amount)
        return 1

    async def settle(self, key: str, reserved: int, spent: int) -> None:
        self.reserved[key] -= reserved
        self.spent[key] = self.spent.get(key, 0) + spent

    async def admit(self, key: str, amount: int, cap: int) -> bool:  # chunks: not the guard's
        raise AssertionError("the guard never admits chunks")

    async def dismiss(self, key: str, amount: int) -> None:
        raise AssertionError("the guard never dismisses chunks")


def _request(i: int) -> JudgeRequest:
    return JudgeRequest(messages=({"role": "user", "content": "evidence " * (1 + i % 40)},),
                        output_schema={"type": "object"}, labels=("pass", "fail"), schema_name="t")  # fmt: skip


def test_the_guard_never_lets_concurrent_calls_exceed_a_cap() -> None:
    profile = JudgeProfile(name="p", model="m", price=PRICE, max_output_tokens=100, max_cost_per_day=0.5)
    rng = random.Random(5)

    async def judge(_name: str, request: JudgeRequest) -> Any:
        await asyncio.sleep(rng.random() / 1000)
        prompt = prompt_bytes(request) // 4
        if rng.random() < 0.1:
            return JudgeFailure("http_error", "HTTP 503", 503, 4, 1)  # refused: not billed
        return verdict(prompt, rng.randint(5, 100))

    ledger = MemoryLedger()
    guard = SpendGuard(judge, {"p": profile}, ledger)
    cap = BatchCap("b1", 0.3)

    async def run() -> list[Any]:
        BATCH_CAP.set(cap)
        return await asyncio.gather(*(guard("p", _request(i)) for i in range(2000)))

    outcomes = asyncio.run(run())
    spent = sum(call_cost(PRICE, o.prompt_tokens, o.completion_tokens) or 0.0 for o in outcomes)
    refused = [o for o in outcomes if isinstance(o, JudgeFailure) and o.kind == "budget_exhausted"]
    assert refused and all(o.attempts == 0 and "cost cap" in o.message for o in refused)
    assert cap.refused  # the worker cuts the chunk whole
    # the batch cap (below the daily one) binds, and is used but for the last call's worst
    # case over its 4 attempts (~$0.015 here)
    assert 0.28 < spent <= 0.3
    assert ledger.peak["batch:b1"] <= nano(0.3) and all(v == 0 for v in ledger.reserved.values())
    assert ledger.spent["batch:b1"] == pytest.approx(nano(spent), abs=len(outcomes))
    day = next(k for k in ledger.spent if k.startswith("profile:p:"))
    assert ledger.spent[day] == ledger.spent["batch:b1"]  # the daily cap counted the same calls


def test_an_unpriced_or_uncapped_profile_goes_straight_through() -> None:
    calls: list[str] = []

    async def judge(name: str, _request: JudgeRequest) -> Any:
        calls.append(name)
        return verdict(10, 10)

    ledger = MemoryLedger()
    guard = SpendGuard(judge, {"free": JudgeProfile(name="free", model="m"),
                               "priced": JudgeProfile(name="priced", model="m", price=PRICE)}, ledger)  # fmt: skip
    asyncio.run(guard("free", _request(1)))
    asyncio.run(guard("priced", _request(1)))  # priced, but no batch cap set and no daily cap
    assert calls == ["free", "priced"] and ledger.spent == {}


def test_a_capped_batch_estimate_is_unbiased_over_seeds() -> None:
    """The design the workers run: a failure-aware sample (p_i), its traces dealt into chunks at
    random, chunks run in that order until the next chunk's expected cost does not fit in what
    is left of the cap, probabilities scaled by the share that ran. Failing traces cost more
    (longer prompts), the hardest case for a cost-driven stop. Over seeds the weighted
    Horvitz-Thompson fail rate's mean is the population's (it would be off by the share that
    ran if the probabilities were not scaled)."""
    population = random.Random(0)
    n = 4000
    fails = [population.random() < 0.2 for _ in range(n)]
    cost = [(3.0 if f else 1.0) * population.uniform(0.5, 1.5) for f in fails]
    probs = [0.3 if f else 0.1 for f in fails]  # failure-aware sampling
    truth = sum(fails) / n
    estimates, stopped = [], 0
    for seed in range(400):
        rng = random.Random(seed)
        sample = [i for i in range(n) if rng.random() < probs[i]]
        rng.shuffle(sample)
        chunks = [sample[k : k + 25] for k in range(0, len(sample), 25)]
        per_trace = sum(cost[i] for i in sample) / len(sample)  # the planner's estimate
        cap, spent, ran = 0.6 * sum(cost[i] for i in sample), 0.0, []
        for chunk in chunks:
            if spent + per_trace * len(chunk) > cap:
                break
            spent += sum(cost[i] for i in chunk)
            ran += chunk
        stopped += len(ran) < len(sample)
        scale = capped_scale(len(ran), len(sample))
        weights = [1 / (probs[i] * scale) for i in ran]
        # Horvitz-Thompson (over the known N), whose scale does not cancel as a ratio's would
        estimates.append(sum(w * f for w, f in zip(weights, (fails[i] for i in ran), strict=True)) / n)
    mean = sum(estimates) / len(estimates)
    spread = (sum((e - mean) ** 2 for e in estimates) / (len(estimates) - 1)) ** 0.5
    assert stopped == 400  # every batch was stopped by its cap
    assert abs(mean - truth) < 3 * spread / len(estimates) ** 0.5 + 0.002
    assert abs(mean * 0.6 - truth) > 0.05  # unscaled, the estimate would be ~40% low


def test_a_leaked_reservation_delays_a_call_for_at_most_the_longest_call_then_refuses_it() -> None:
    """A worker that died mid-call leaves its reservation: a call that could fit once it
    settled waits at most as long as a call in flight can take, then fails (never hangs)."""
    profile = JudgeProfile(name="p", model="m", price=PRICE, max_output_tokens=10, timeout_s=0.05,
                           max_attempts=1, max_cost_per_day=1.0)  # fmt: skip
    ledger = MemoryLedger()

    async def judge(_name: str, _request: JudgeRequest) -> Any:
        raise AssertionError("not sent")

    guard = SpendGuard(judge, {"p": profile}, ledger)
    day = f"profile:p:{__import__('datetime').datetime.now(__import__('datetime').UTC):%Y-%m-%d}"
    ledger.reserved[day] = nano(1.0) - 1  # a dead worker's reservation, never settled
    outcome = asyncio.run(guard("p", _request(0)))
    assert isinstance(outcome, JudgeFailure) and outcome.kind == "budget_exhausted"
    assert "found no room within 0.05 s" in outcome.message


def test_timed_out_attempts_are_settled_at_their_worst_case() -> None:
    profile = JudgeProfile(name="p", model="m", price=PRICE, max_output_tokens=50, max_cost_per_day=10.0)
    ledger = MemoryLedger()
    after_timeouts = JudgeVerdict("pass", "ok", 0.9, 100, 20, 3, 10, "m", timeouts=2)

    async def judge(_name: str, _request: JudgeRequest) -> Any:
        return after_timeouts

    asyncio.run(SpendGuard(judge, {"p": profile}, ledger)("p", _request(3)))
    worst = nano(worst_case_cost(PRICE, prompt_bytes(_request(3)), 1, 50))
    (day,) = ledger.spent
    assert ledger.spent[day] == nano(call_cost(PRICE, 100, 20)) + 2 * worst
    assert ledger.reserved[day] == 0


def test_profiles_frozen_before_structured_output_still_load() -> None:
    old = {"name": "default", "model": "mock-judge", "supports_json_schema": False}
    assert JudgeProfile.model_validate(old).structured_output == "none"
    assert JudgeProfile.model_validate({**old, "supports_json_schema": True}).structured_output == "auto"
    with pytest.raises(ValueError, match="needs a price"):
        JudgeProfile(name="p", model="m", max_cost_per_day=1.0)
