"""Turning one trace into one evaluation per rubric: scope, evidence, checker or judge,
self-consistency, cache — with every failure recorded as a ``judge_failed`` evaluation.

Single flight: an (evidence, rubric) pair is judged once per ``SingleFlight`` — one per worker
process, shared by every chunk it runs at once — even when several traces share it. The first
evaluation calls the judge; the others wait for that call (or find its verdict among the
process's recent ones) and are recorded as cache hits (``cached``, no attempts, no cost, what
it would have cost as ``saved_usd``). Across processes, ``SharedClaims`` (optional) does the
same through the store: a question another process is asking right now waits for that
verdict in the cache. A failed first call is never shared as a verdict: each in-process waiter
records the same failure as its own, marked "not sent" with ``attempts=0`` and no cost, so a
judge that is down costs one call per pair, not one per trace, and the next run retries.

Pure apart from the judge calls, which come in through ``JudgeAccess`` (the pipeline wires
the real HTTP client; tests pass a fake).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from judges.checks import CHECKERS, invalid_result
from judges.evidence import Evidence
from judges.llm.types import JudgeFailure, JudgeOutcome, JudgeRequest, JudgeVerdict, one_line
from judges.rubric import Rubric
from tracejury.core.cost import Price, call_cost
from tracejury.core.evaluation import Evaluation

__all__ = ["CacheKey", "JudgeAccess", "SharedClaims", "SingleFlight", "cache_keys", "evaluate"]

CacheKey = tuple[str, str, str, int]
"""(model, rubric fingerprint, evidence hash, sample index)."""


class SingleFlight:
    """The judge calls under way in one process, and its recent verdicts, by cache key: shared
    by every ``JudgeAccess`` (chunk) of the process, so a question asked twice while the first
    call is in flight — or just after, before the cache write — is paid once."""

    def __init__(self, recent: int = 16_384) -> None:
        self.in_flight: dict[CacheKey, asyncio.Future[JudgeOutcome | None]] = {}
        """Calls under way: a second evaluation of the same key waits for the first (None:
        the first call raised, and the waiter calls the judge itself)."""
        self.recent: OrderedDict[CacheKey, JudgeVerdict] = OrderedDict()
        """Verdicts of this process's latest calls (bounded: the cache holds them all)."""
        self._limit = recent

    def remember(self, key: CacheKey, verdict: JudgeVerdict) -> None:
        """Keep a fresh verdict for the chunks running beside the one that asked."""
        self.recent[key] = verdict
        if len(self.recent) > self._limit:
            self.recent.popitem(last=False)


class SharedClaims(Protocol):
    """Single flight across processes: a claim per cache key on the judge call."""

    async def acquire(self, key: CacheKey) -> JudgeVerdict | None:
        """None: this process holds the claim and calls the judge; else the verdict another
        process's call produced while this one waited (a cache hit)."""

    def release(self, key: CacheKey, verdict: JudgeVerdict | None) -> None:
        """The call of a claim ``acquire`` gave ended: its verdict (published to the others
        through the cache), or None (it failed: the next asker calls the judge itself)."""

    async def flush(self) -> None:
        """Publish what ``release`` queued now."""


@dataclass
class JudgeAccess:
    """What evaluation needs from outside: judge calls, profile models and the cache."""

    call: Callable[[str, JudgeRequest], Awaitable[JudgeOutcome]]
    """Call the judge of a profile."""
    models: Mapping[str, str]
    """Profile name → model; a rubric naming another profile fails with ``config_error``."""
    prices: Mapping[str, Price | None] = field(default_factory=dict)
    """Profile name → price (absent or None: spend is counted in tokens only)."""
    cached: Mapping[CacheKey, JudgeVerdict] = field(default_factory=dict)
    """Verdicts known before this run."""
    fresh: list[tuple[CacheKey, JudgeVerdict]] = field(default_factory=list)
    """Verdicts obtained during this run (the caller stores them)."""
    flight: SingleFlight = field(default_factory=SingleFlight)
    """Calls under way and recent verdicts: pass the process's one to share it across chunks."""
    claims: SharedClaims | None = None
    """Single flight across processes (None: within this process only)."""


def cache_keys(rubric: Rubric, ev: Evidence, models: Mapping[str, str]) -> list[CacheKey]:
    """The cache keys a judge rubric would look up for this evidence."""
    if rubric.judge is None or rubric.judge.profile not in models:
        return []
    model = models[rubric.judge.profile]
    return [(model, rubric.fingerprint, ev.hash, i) for i in range(rubric.judge.samples)]


def _base(rubric: Rubric, ev: Evidence) -> dict[str, Any]:
    return {
        "trace_id": ev.trace_id,
        "evaluator_id": rubric.id,
        "evaluator_version": rubric.version,
        "evaluator_fingerprint": rubric.fingerprint,
        "evaluator_kind": rubric.kind,
        "evidence_hash": ev.hash,
    }


async def evaluate(
    trace: Mapping[str, Any],
    segment_key: str,
    ev: Evidence,
    rubric: Rubric,
    judges: JudgeAccess,
) -> Evaluation:
    """One rubric's evaluation of one trace. Never raises for a bad trace or a failed judge."""
    base = _base(rubric, ev)
    if not rubric.applies_when.matches(trace, segment_key):
        return Evaluation(**base, status="not_applicable", rationale="outside applies_when")
    missing = rubric.missing_evidence(ev)
    if missing is not None:
        return Evaluation(**base, status="missing_evidence", rationale=f"missing {missing}")
    if rubric.checker is not None:
        return _check(rubric, ev, base)
    return await _judge(rubric, ev, base, judges)


def _check(rubric: Rubric, ev: Evidence, base: dict[str, Any]) -> Evaluation:
    start = time.perf_counter()
    try:
        result = CHECKERS[rubric.checker].fn(ev, rubric.params)  # type: ignore[index]
    except Exception as exc:  # a poison trace fails only itself, recorded with the error
        return Evaluation(
            **base, status="judge_failed", failure_kind="checker_error",
            error=one_line(f"{type(exc).__name__}: {exc}"),
        )  # fmt: skip
    latency = int((time.perf_counter() - start) * 1000)
    problem = invalid_result(result)
    if problem is not None:  # a checker's bug: recorded for this trace, never a verdict
        return Evaluation(
            **base, status="judge_failed", failure_kind="checker_error",
            error=one_line(f"checker {rubric.checker}: {problem}"), latency_ms=latency,
        )  # fmt: skip
    if result.status != "scored":
        return Evaluation(**base, status=result.status, rationale=result.rationale)
    label = "pass" if result.passed else "fail"
    return Evaluation(
        **base, status="scored", label=label, passed=bool(result.passed),
        rationale=result.rationale, latency_ms=latency,
    )  # fmt: skip


async def _judge(rubric: Rubric, ev: Evidence, base: dict[str, Any], judges: JudgeAccess) -> Evaluation:
    spec = rubric.judge
    assert spec is not None
    base = {**base, "judge_profile": spec.profile}
    model = judges.models.get(spec.profile)
    if model is None:
        return Evaluation(
            **base, status="judge_failed", failure_kind="config_error",
            error=f"unknown judge profile {spec.profile!r}",
        )  # fmt: skip
    base["judge_model"] = model
    messages = rubric.messages(ev)
    keys = cache_keys(rubric, ev, judges.models)

    flight = judges.flight

    async def sample(i: int) -> tuple[JudgeOutcome, bool]:
        key = keys[i]
        hit = judges.cached.get(key) or flight.recent.get(key)
        if hit is not None:
            return hit, True
        while (first := flight.in_flight.get(key)) is not None:
            shared = await asyncio.shield(first)
            if isinstance(shared, JudgeVerdict):
                return shared, True
            if isinstance(shared, JudgeFailure):
                return _not_sent(shared), False
        future: asyncio.Future[JudgeOutcome | None] = asyncio.get_running_loop().create_future()
        flight.in_flight[key] = future
        claimed = False
        outcome: JudgeOutcome | None = None
        try:
            if judges.claims is not None:
                elsewhere = await judges.claims.acquire(key)
                if elsewhere is not None:  # another process asked first: its verdict, a cache hit
                    flight.remember(key, elsewhere)
                    future.set_result(elsewhere)
                    return elsewhere, True
                claimed = True
            outcome = await call(i)
            future.set_result(outcome)
        finally:
            del flight.in_flight[key]
            if not future.done():  # the call raised: waiters make their own
                future.set_result(None)
            if claimed:
                verdict = outcome if isinstance(outcome, JudgeVerdict) else None
                judges.claims.release(key, verdict)  # type: ignore[union-attr]
        return outcome, False

    async def call(i: int) -> JudgeOutcome:
        request = JudgeRequest(
            messages=messages,
            output_schema=rubric.output.reply_schema(),
            labels=rubric.output.labels,
            schema_name=rubric.id,
            temperature=spec.temperature,
            seed=i if spec.samples > 1 else None,
        )
        outcome = await judges.call(spec.profile, request)
        if isinstance(outcome, JudgeVerdict) and outcome.label not in rubric.output.labels:
            # the client checks this too; a verdict outside the rubric is never scored
            outcome = JudgeFailure(
                "rubric_mismatch", f"label {outcome.label!r} is not one of the rubric's labels",
                None, outcome.attempts, outcome.latency_ms,
            )  # fmt: skip
        if isinstance(outcome, JudgeVerdict):
            judges.fresh.append((keys[i], outcome))
            flight.remember(keys[i], outcome)
        return outcome

    if spec.samples == 1:  # the common case: no task and gathering future per call
        results = [await sample(0)]
    else:
        results = list(await asyncio.gather(*(sample(i) for i in range(spec.samples))))
    # the calls' own time from send (the client leaves out slot, budget and backoff waits);
    # samples run concurrently, so the slowest one's; a cache hit or a shared call took none
    latency = max((o.latency_ms for o, hit in results if not hit), default=0)
    outcomes = [o for o, _ in results]
    attempts = sum(o.attempts for o, hit in results if not hit)
    tokens = _spend(results, judges.prices.get(spec.profile))
    failure = next((o for o in outcomes if isinstance(o, JudgeFailure)), None)
    if failure is not None:  # any failed sample: no verdict from partial evidence
        return Evaluation(
            **base, status="judge_failed", failure_kind=failure.kind,
            http_status=failure.http_status, attempts=attempts, error=failure.message,
            latency_ms=latency, **tokens,
        )  # fmt: skip
    verdicts: list[JudgeVerdict] = outcomes  # type: ignore[assignment]
    label, confidence = _majority(verdicts, rubric)
    rationale = next(v.rationale for v in verdicts if v.label == label)
    reported = sorted({v.model for v in verdicts if v.model})  # what the endpoint said it ran
    if reported:
        base = {**base, "judge_model": ",".join(reported)}
    return Evaluation(
        **base, status="scored", label=label, passed=rubric.output.passed(label),
        score=rubric.output.score(label), confidence=confidence, rationale=rationale,
        attempts=attempts, latency_ms=latency, cached=all(hit for _, hit in results),
        sample_labels=tuple(v.label for v in verdicts) if len(verdicts) > 1 else (),
        **tokens,
    )  # fmt: skip


def _not_sent(failure: JudgeFailure) -> JudgeFailure:
    """A waiter's copy of the failure of the call it waited for: its own failure, with no
    call made (no attempts, no tokens, no cost)."""
    return dataclasses.replace(
        failure, message=f"not sent: the same evidence and rubric failed in this chunk: {failure.message}",
        attempts=0, latency_ms=0, prompt_tokens=None, completion_tokens=None, timeouts=0,
    )  # fmt: skip


def _spend(results: Sequence[tuple[JudgeOutcome, bool]], price: Price | None) -> dict[str, Any]:
    """Tokens and USD the calls made (failed calls the endpoint billed included); a cached
    verdict made no call: it costs nothing and what it would have cost is saved."""
    made = [o for o, hit in results if not hit and o.attempts > 0]  # not sent (a cap, a config): no cost
    prompt = [o.prompt_tokens for o in made if o.prompt_tokens is not None]
    completion = [o.completion_tokens for o in made if o.completion_tokens is not None]
    costs = [call_cost(price, o.prompt_tokens, o.completion_tokens) for o in made]
    known = [c for c in costs if c is not None]
    saved = [call_cost(price, o.prompt_tokens, o.completion_tokens) for o, hit in results if hit]
    saved_known = [c for c in saved if c is not None]
    return {
        "prompt_tokens": sum(prompt) if prompt else None,
        "completion_tokens": sum(completion) if completion else None,
        "cost_usd": sum(known) if known else (0.0 if not made and price is not None else None),
        "saved_usd": sum(saved_known) if saved_known else None,
    }


def _majority(verdicts: Sequence[JudgeVerdict], rubric: Rubric) -> tuple[str, float | None]:
    """Majority label; a tie goes to the label that does not pass (never a free pass).
    Confidence: the judge's own for one sample, the agreement share for several."""
    if len(verdicts) == 1:
        return verdicts[0].label, verdicts[0].confidence
    counts = Counter(v.label for v in verdicts)
    out = rubric.output
    label = max(counts, key=lambda lab: (counts[lab], not out.passed(lab), -out.labels.index(lab)))
    return label, counts[label] / len(verdicts)
