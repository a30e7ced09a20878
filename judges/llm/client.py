"""The judge client: one OpenAI-compatible chat completion per call, every failure explicit.

``JudgeClient.judge`` never raises for an HTTP, timeout or parsing problem: it returns a
:class:`JudgeVerdict` or a :class:`JudgeFailure` whose kind the evaluation record stores.

    attempt ──► 2xx ──► parse_completion ──► verdict
       │                      └──► invalid_output / refused / rubric_mismatch (no retry)
       ├──► 429 ──────────────► retry (Retry-After, else backoff) … budget → rate_limited
       ├──► response_format refused (400/422/500 naming it) ──► next wire format, once
       │        (structured_output auto / json_object; remembered per endpoint; no retry)
       ├──► 408/409/425/5xx ───► retry (backoff) ………………………… budget → http_error
       ├──► timeout ──────────► retry (backoff) ………………………… budget → timeout
       ├──► connection error ─► retry (backoff) ………………………… budget → http_error
       └──► other 4xx ────────► http_error at once

A call's first attempt runs on its own (most calls end there); a result to retry enters one
tenacity loop (``_run``) whose attempts return results instead of raising, so nothing is
unwrapped from a ``RetryError``; what to retry and how long to wait are the pure
decisions of ``retry.py``. Calls in flight are bounded by a
:class:`~judges.llm.concurrency.Concurrency` whose limit adapts to the endpoint between the
profile's ``min_concurrency`` and ``max_concurrency`` (in-process by default; the workers pass
one shared through Redis): every attempt reports its latency from send and its load signal
(429/503/504/timeout: overload). Calls are budgeted by a :class:`~judges.llm.limiter.Limiter`
(in-process by default; a cross-process limiter can be passed in). A verdict's or failure's
``latency_ms`` is the time its attempts spent on the wire, from send to reply: waits for a
budget, a slot or a retry are not in it.

How a call asks for JSON (``response_format`` or not, the reply cap, reasoning-model
parameters) is ``dialect.py``'s: the client sends the wire format the endpoint's
:class:`~judges.llm.dialect.FormatMemory` names and, on a refusal of it, moves down the
profile's ladder and sends the call again — a new request, not a retry of a failed one.
While an endpoint has not yet answered in its format, one call at a time per client probes
it, so a fleet of first calls does not hit the same refusal at once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

import httpx
import orjson
from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt

from judges.llm.concurrency import AdaptiveSlots, Concurrency, signal_for
from judges.llm.dialect import FORMATS, LADDERS, FormatMemory, WireFormat, is_format_refusal
from judges.llm.limiter import Limiter, RateLimiter, estimate_tokens
from judges.llm.parse import ParsedReply, billed_tokens, parse_completion, reply_validator
from judges.llm.profiles import JudgeProfile
from judges.llm.retry import RetryDecision, decision_for_status, next_wait, parse_retry_after
from judges.llm.transport import JudgeHTTP, Poster, TransportError, TransportTimeout, poster_for
from judges.llm.types import JudgeFailure, JudgeOutcome, JudgeRequest, JudgeVerdict, one_line
from tracejury.core.evaluation import FailureKind

__all__ = ["JudgeClient"]


@dataclass(frozen=True)
class _Attempt:
    """What one HTTP attempt produced: a parsed reply, or a failure and whether to retry."""

    decision: RetryDecision
    reply: ParsedReply | None = None
    model: str | None = None
    kind: FailureKind | None = None
    message: str = ""
    http_status: int | None = None
    answered: bool = False  # a 2xx: the endpoint took the wire format
    refused_format: bool = False  # the endpoint refused the wire format's response_format
    prompt_tokens: int | None = None  # billed with a 2xx reply that held no verdict
    completion_tokens: int | None = None


class JudgeClient:
    """Calls one judge profile's endpoint through an injected HTTP client: a
    :class:`~judges.llm.transport.JudgeHTTP` (``make_http_client``), an ``httpx.AsyncClient``
    (``httpx.MockTransport`` in tests) or any :class:`~judges.llm.transport.Poster`.

    ``base_url`` is the profile's base URL, or the caller's default when the profile has none;
    ``api_key`` is the value of the profile's ``api_key_env`` (the caller reads it). ``sleep``,
    ``jitter`` and ``clock`` are injectable for tests; ``limiter`` replaces the in-process
    requests/tokens-per-minute limiter and ``concurrency`` the in-process adaptive concurrency
    limit (the seams for cross-process ones: ``workers.limits.RedisLimiter``); ``slot`` alone
    (no ``concurrency``) is a fixed bound that learns nothing; ``formats`` replaces
    the process-wide memory of what each endpoint's ``response_format`` accepts.

    With the profile's ``api_version`` set (Azure OpenAI) the URL carries ``?api-version=``
    and the key goes in an ``api-key`` header instead of ``Authorization: Bearer``.
    """

    def __init__(
        self,
        http: JudgeHTTP | httpx.AsyncClient | Poster,
        profile: JudgeProfile,
        *,
        base_url: str,
        api_key: str | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
        limiter: Limiter | None = None,
        slot: Callable[[], AbstractAsyncContextManager[object]] | None = None,
        concurrency: Concurrency | None = None,
        formats: FormatMemory | None = None,
    ) -> None:
        self.profile = profile
        """The profile this client calls."""
        self.url = (profile.base_url or base_url).rstrip("/") + "/chat/completions"
        """The ``/chat/completions`` URL every call posts to (with Azure's ``api-version``)."""
        if profile.api_version:
            self.url += "?" + urlencode({"api-version": profile.api_version})
        self._url_problem: str | None = None
        try:
            url = httpx.URL(self.url)
        except httpx.InvalidURL as exc:
            self._url_problem = f"judge profile {profile.name!r} has a bad base URL: {exc}"
        else:
            if url.scheme not in ("http", "https") or not url.host:
                self._url_problem = (
                    f"judge profile {profile.name!r} has a non-HTTP base URL: {self.url}"
                )
        self._post = poster_for(http).post
        self._api_key = api_key
        self._sleep = sleep
        self._jitter = jitter
        self._clock = clock
        self._limiter = limiter or RateLimiter.for_profile(profile, clock=clock, sleep=sleep)
        if concurrency is None and slot is None:
            concurrency = AdaptiveSlots(profile.concurrency_settings(), clock=clock)
        self.concurrency = concurrency
        """What bounds this client's calls in flight and learns from them (None: ``slot``)."""
        self._slot = concurrency.slot if concurrency is not None else slot
        assert self._slot is not None
        self._headers = {"content-type": "application/json", "accept": "application/json"}
        if api_key and profile.api_version:
            self._headers["api-key"] = api_key
        elif api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._formats = formats or FORMATS
        self._ladder = LADDERS[profile.structured_output]
        self.endpoint = (self.url, profile.model, profile.structured_output)
        """What the format memory knows this client's endpoint by: (URL, model, mode)."""
        self._probe = asyncio.Lock()
        self._probed = len(self._ladder) == 1  # one format: nothing to find out

    @property
    def wire_format(self) -> WireFormat:
        """The wire format the next call sends (see :mod:`judges.llm.dialect`)."""
        return self._formats.current(self.endpoint, self._ladder)

    async def judge(self, request: JudgeRequest) -> JudgeOutcome:
        """Ask the judge for a verdict on ``request``; a failure is returned, not raised."""
        problem = self._config_problem(request)
        if problem is not None:
            return JudgeFailure("config_error", problem, None, 0, 0)
        if not (self._probed or self._formats.answered(self.endpoint)):
            async with self._probe:  # the first call probes; the others wait for it, then go
                if not self._probed:
                    try:
                        return await self._judge(request)
                    finally:
                        self._probed = True
        return await self._judge(request)

    async def _judge(self, request: JudgeRequest) -> JudgeOutcome:
        tokens, attempts, timeouts, wire_s = estimate_tokens(request), 0, 0, 0.0
        for _ in self._ladder:  # each pass sends a lower rung, or ends
            wire = self.wire_format
            body = request.body(self.profile.model, wire=wire, max_tokens=self.profile.max_output_tokens,
                                reasoning=self.profile.reasoning)  # fmt: skip
            attempt, count, timed_out, sent_s = await self._run(orjson.dumps(body), request, tokens, wire)
            attempts += count
            timeouts += timed_out
            wire_s += sent_s
            if not attempt.refused_format:
                break
            assert attempt.http_status is not None
            if self._formats.refused(self.endpoint, self._ladder, wire, attempt.http_status, attempt.message) is None:
                break
        if attempt.answered:
            self._formats.mark_answered(self.endpoint)
        latency_ms = max(0, round(wire_s * 1000))
        if attempt.reply is not None:
            label, rationale, confidence, prompt_tokens, completion_tokens = attempt.reply
            return JudgeVerdict(
                label=label,
                rationale=rationale,
                confidence=confidence,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                attempts=attempts,
                latency_ms=latency_ms,
                model=attempt.model or self.profile.model,
                timeouts=timeouts,
            )
        assert attempt.kind is not None
        message = attempt.message
        if attempt.refused_format:
            message = (f"the endpoint refuses response format {wire} (structured_output"
                       f" {self.profile.structured_output} has no other to try): {message}")  # fmt: skip
        return JudgeFailure(
            attempt.kind, message, attempt.http_status, attempts, latency_ms,
            prompt_tokens=attempt.prompt_tokens, completion_tokens=attempt.completion_tokens, timeouts=timeouts,
        )  # fmt: skip

    def _config_problem(self, request: JudgeRequest) -> str | None:
        if self.profile.api_key_env and not self._api_key:
            return (
                f"judge profile {self.profile.name!r} needs an API key in"
                f" ${self.profile.api_key_env}, and none was given"
            )
        if self._url_problem is not None:
            return self._url_problem
        try:
            reply_validator(request.output_schema)
        except (ValueError, TypeError) as exc:
            return f"the output schema {request.schema_name!r} is not a valid JSON Schema: {exc}"
        return None

    def _wait(self, state: RetryCallState) -> float:
        assert state.outcome is not None
        decision = state.outcome.result().decision
        # tenacity counts from the loop's first attempt; the one before it ran outside
        return next_wait(decision, state.attempt_number + 1, self.profile, self._jitter())

    async def _run(
        self, payload: bytes, request: JudgeRequest, tokens: int, wire: WireFormat
    ) -> tuple[_Attempt, int, int, float]:
        """The attempts of one request until a result that needs no retry, or the budget.
        Returns the last attempt, the attempts made, how many of them timed out and the
        seconds they spent from send to reply.

        The first attempt runs on its own: most calls end there, and tenacity's machinery
        (a retry state, its action chain) would cost them CPU for nothing. Only a result to
        retry enters the tenacity loop, which waits before each of the remaining attempts."""
        count = timeouts = 0
        wire_s = 0.0

        async def attempt() -> _Attempt:
            nonlocal count, timeouts, wire_s
            count += 1
            await self._limiter.acquire(tokens)
            async with self._slot():
                sent = self._clock()
                result = await self._attempt(payload, request, wire)
                took = self._clock() - sent
                if self.concurrency is not None:
                    timed_out = result.kind == "timeout"
                    status = 200 if result.answered else result.http_status
                    self.concurrency.observe(took, signal_for(status, timed_out))
            wire_s += took
            timeouts += result.kind == "timeout"
            return result

        first = await attempt()
        if not first.decision.retry or self.profile.max_attempts <= 1:
            return first, count, timeouts, wire_s
        await self._sleep(next_wait(first.decision, 1, self.profile, self._jitter()))
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.profile.max_attempts - 1),
            wait=self._wait,
            retry=retry_if_result(lambda result: result.decision.retry),
            sleep=self._sleep,
            retry_error_callback=lambda state: state.outcome.result(),  # the last attempt
            reraise=True,
        )
        last = await retrying(attempt)
        return last, count, timeouts, wire_s

    async def _attempt(self, payload: bytes, request: JudgeRequest, wire: WireFormat) -> _Attempt:
        """One POST; every outcome becomes an :class:`_Attempt` (bugs still raise)."""
        try:
            async with asyncio.timeout(self.profile.timeout_s):
                response = await self._post(self.url, payload, self._headers)
        except (TransportTimeout, TimeoutError) as exc:
            what = exc.name if isinstance(exc, TransportError) else type(exc).__name__
            return _Attempt(
                RetryDecision.transient(),
                kind="timeout",
                message=f"no reply from {self.url} within {self.profile.timeout_s:g} s ({what})",
            )
        except (TransportError, OSError) as exc:
            what = exc.name if isinstance(exc, TransportError) else type(exc).__name__
            return _Attempt(
                RetryDecision.transient(),
                kind="http_error",
                message=f"{what} calling {self.url}: {exc}",
            )
        status = response.status
        if status >= 300 and wire != "none" and is_format_refusal(status, response.text):
            return _Attempt(
                RetryDecision.no(),
                kind="http_error",
                message=f"HTTP {status} from {self.url}: {one_line(response.text, 160)}",
                http_status=status,
                refused_format=True,
            )
        if status >= 300:
            retry_after = parse_retry_after(response.headers.get("retry-after"), datetime.now(UTC))
            return _Attempt(
                decision_for_status(status, retry_after),
                kind="rate_limited" if status == 429 else "http_error",
                message=f"HTTP {status} from {self.url}: {one_line(response.text, 160)}",
                http_status=status,
            )
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return _Attempt(
                RetryDecision.no(),
                kind="invalid_output",
                message=f"HTTP {status} reply is not JSON: {response.text[:80]!r}",
                http_status=status,
                answered=True,
            )
        parsed = parse_completion(body, request, embedded=wire == "none")
        if isinstance(parsed, ParsedReply):
            model = body.get("model")
            return _Attempt(
                RetryDecision.no(), reply=parsed, model=model if isinstance(model, str) else None,
                answered=True,
            )  # fmt: skip
        prompt_tokens, completion_tokens = billed_tokens(body)
        return _Attempt(
            RetryDecision.no(), kind=parsed.kind, message=parsed.message, http_status=status,
            answered=True, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
        )  # fmt: skip
