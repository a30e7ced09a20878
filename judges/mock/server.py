"""The mock judge: an OpenAI-compatible HTTP server (aiohttp) with latency and faults.

    POST /v1/chat/completions   a verdict computed from the request's evidence (verdict.py),
                                perhaps flipped by a bias (bias.py), or the fault the plan
                                draws for it (faults.py) — unless the server's dialect
                                refuses the request as that server would (dialects.py)
    POST /openai/deployments/{deployment}/chat/completions
                                the same, for the ``azure`` dialect
    GET  /v1/models             the one model, ``mock-judge``
    GET  /health                ``{"status": "ok"}``
    GET  /stats                 its own counts (:class:`MockStats`): requests, answered, 429s
                                for ``max_inflight``, in flight now and at most

With ``max_inflight`` N, a chat request that arrives while N are in flight gets an HTTP 429
(``Retry-After: 1``) at once, as a server with N slots would: the test of adaptive concurrency.

``serve`` runs it in the foreground (``tracejury mock-judge``) until SIGINT or SIGTERM;
``start_mock_judge`` / ``running_mock_judge`` run it inside the caller's event loop (tests),
on a free port when asked for port 0. Handlers are cancelled when their client hangs up, so
a ``hang`` does not outlive the client that gave up on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from aiohttp import web

from judges.mock.bias import Bias
from judges.mock.dialects import DIALECTS, check
from judges.mock.faults import HANG_S, FaultPlan, faulty_reply, parse_faults
from judges.mock.replies import MOCK_MODEL, chat_completion, error_body, model_list
from judges.mock.verdict import labels_of, reply_for
from tracejury.core.errors import ConfigError

__all__ = ["MockJudge", "MockStats", "build_app", "running_mock_judge", "serve", "spawn_mock_judge", "start_mock_judge"]

_SEEN_MAX = 200_000  # distinct bodies remembered for fault draws; forgotten all at once past it
_RETRY_AFTER_S = "1"


@dataclass
class MockStats:
    """What the mock judge has seen (``GET /stats``; ``MockJudge.stats``)."""

    requests: int = 0
    """Chat requests received."""
    answered: int = 0
    """Chat requests answered 200 (a verdict, or a fault inside a 200 reply)."""
    rate_limited: int = 0
    """Chat requests refused with a 429 because ``max_inflight`` were in flight."""
    in_flight: int = 0
    """Chat requests in progress now."""
    peak_in_flight: int = 0
    """Most chat requests in progress at once."""

    def as_json(self) -> dict[str, int]:
        """The counts with camelCase keys, as ``GET /stats`` sends them."""
        return {"".join(w.title() if i else w for i, w in enumerate(k.split("_"))): v for k, v in asdict(self).items()}


_STATS = web.AppKey("stats", MockStats)


class _Handlers:
    """The request handlers and the little state they share (latency draws, bodies seen)."""

    def __init__(self, plan: FaultPlan, bias: Bias, latency_ms: float, latency_sigma: float,
                 dialect: str = "openai", max_inflight: int | None = None) -> None:  # fmt: skip
        self.plan = plan
        self.max_inflight = max_inflight
        self.stats = MockStats()
        self.dialect = dialect
        self.bias = bias
        self.latency_ms = latency_ms
        self.latency_sigma = latency_sigma
        self.rng = random.Random(plan.seed)
        self.seen: dict[bytes, int] = {}

    def _delay_s(self) -> float:
        if self.latency_ms <= 0:
            return 0.0
        if self.latency_sigma <= 0:
            return self.latency_ms / 1000
        return self.latency_ms * math.exp(self.latency_sigma * self.rng.gauss(0.0, 1.0)) / 1000

    def _fault(self, digest: bytes) -> str | None:
        if not self.plan.active:
            return None
        if len(self.seen) >= _SEEN_MAX:
            self.seen.clear()
        seen = self.seen.get(digest, 0)
        self.seen[digest] = seen + 1
        return self.plan.draw(digest, seen)

    async def chat(self, request: web.Request) -> web.Response:
        stats = self.stats
        stats.requests += 1
        if self.max_inflight is not None and stats.in_flight >= self.max_inflight:
            stats.rate_limited += 1
            message = f"more than {self.max_inflight} requests in flight"
            return _json(error_body(message, "rate_limit_error", "rate_limit"), 429,
                         headers={"Retry-After": _RETRY_AFTER_S})  # fmt: skip
        stats.in_flight += 1
        stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
        try:
            response = await self._chat(request)
        finally:
            stats.in_flight -= 1
        stats.answered += response.status == 200
        return response

    async def stats_json(self, request: web.Request) -> web.Response:
        return _json(self.stats.as_json(), 200)

    async def _chat(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _json(error_body("request body is not JSON", "invalid_request_error"), 400)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            message = "request body must be an object with a messages list"
            return _json(error_body(message, "invalid_request_error"), 400)
        deployment = request.match_info.get("deployment")
        refusal = check(self.dialect, body, headers=request.headers, query=request.query, deployment=deployment)
        if refusal is not None:
            return _json(refusal[1], refusal[0])
        digest = hashlib.blake2b(raw, digest_size=16).digest()
        fault = self._fault(digest)
        delay = self._delay_s()
        if delay:
            await asyncio.sleep(delay)
        if fault == "hang":
            await asyncio.sleep(HANG_S)
            return _json(error_body("the mock judge hung", "server_error"), 504)
        if fault in ("http500", "http503"):
            status = int(fault[4:])
            return _json(error_body(f"injected fault {fault}", "server_error"), status)
        if fault == "http429":
            limited = error_body("injected fault http429", "rate_limit_error", "rate_limit")
            return _json(limited, 429, headers={"Retry-After": _RETRY_AFTER_S})
        model = body.get("model") if isinstance(body.get("model"), str) else deployment or MOCK_MODEL
        reply = reply_for(body, bias=self.bias, seed=self.plan.seed)
        content: str | None
        refusal = None
        if fault == "refusal":
            content, refusal = None, "I can't help with grading this request."
        elif fault == "malformed":
            content = f"Sure! The verdict is {reply['label']}, because {reply['rationale']}"
        elif fault in ("schema", "label"):
            bad = faulty_reply(fault, reply, labels_of(body), digest[0])
            content = orjson.dumps(bad).decode()
        else:
            content = orjson.dumps(reply).decode()
        completion = chat_completion(
            content,
            model=model,
            refusal=refusal,
            prompt_tokens=len(raw) // 4,
            completion_tokens=len(content or refusal or "") // 4 + 1,
            completion_id="chatcmpl-" + digest.hex()[:24],
            created=int(time.time()),
        )
        return _json(completion, 200)

    async def models(self, request: web.Request) -> web.Response:
        return _json(model_list(), 200)

    async def health(self, request: web.Request) -> web.Response:
        return _json({"status": "ok"}, 200)


def _json(data: Any, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json", headers=headers)


def _plan(latency_ms: float, latency_sigma: float, faults: str, seed: int) -> FaultPlan:
    if not (math.isfinite(latency_ms) and latency_ms >= 0):
        raise ConfigError(f"latency must be a number of ms >= 0, got {latency_ms!r}",
                          field="--latency-ms")  # fmt: skip
    if not (math.isfinite(latency_sigma) and latency_sigma >= 0):
        raise ConfigError(f"latency sigma must be >= 0, got {latency_sigma!r}",
                          field="--latency-sigma")  # fmt: skip
    return FaultPlan(parse_faults(faults), seed)


def _check_max_inflight(max_inflight: int | None) -> None:
    if max_inflight is not None and max_inflight < 1:
        raise ConfigError(f"max in flight must be at least 1, got {max_inflight}", field="--max-inflight")


def _check_dialect(dialect: str) -> None:
    if dialect not in DIALECTS:
        raise ConfigError(f"unknown dialect {dialect!r} (known: {', '.join(DIALECTS)})", field="--dialect")


def _bias(bias: Bias | str) -> Bias:
    return bias if isinstance(bias, Bias) else Bias.parse(bias)


def build_app(
    *,
    latency_ms: float = 0,
    latency_sigma: float = 0,
    faults: str = "",
    seed: int = 0,
    bias: Bias | str = "",
    dialect: str = "openai",
    max_inflight: int | None = None,
) -> web.Application:
    """The mock judge's aiohttp application (bad arguments raise :class:`ConfigError`).

    ``seed`` drives the fault draws and the bias flips; ``bias`` is a :class:`Bias` or its
    spec (``fail_to_pass=0.3,pass_to_fail=0.1``); ``dialect`` the server it imitates
    (dialects.py; ``openai`` by default); ``max_inflight`` N answers 429 to a request that
    arrives while N are in flight (None: no limit).
    """
    plan = _plan(latency_ms, latency_sigma, faults, seed)
    _check_dialect(dialect)
    _check_max_inflight(max_inflight)
    handlers = _Handlers(plan, _bias(bias), latency_ms, latency_sigma, dialect, max_inflight)
    app = web.Application(client_max_size=8 * 2**20)
    app[_STATS] = handlers.stats
    app.router.add_post("/v1/chat/completions", handlers.chat)
    if dialect == "azure":
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", handlers.chat)
    app.router.add_get("/v1/models", handlers.models)
    app.router.add_get("/health", handlers.health)
    app.router.add_get("/stats", handlers.stats_json)
    return app


@dataclass
class MockJudge:
    """A mock judge running in this event loop; ``aclose()`` stops it."""

    host: str
    """The address it listens on."""
    port: int
    """The port it is bound to (the real one when port 0 was asked)."""
    runner: web.AppRunner
    """The aiohttp runner serving it."""

    @property
    def stats(self) -> MockStats:
        """Its counts so far (live: read them again for later counts)."""
        return self.runner.app[_STATS]

    @property
    def base_url(self) -> str:
        """The OpenAI base URL of this server (``http://host:port/v1``)."""
        return f"http://{self.host}:{self.port}/v1"

    async def aclose(self) -> None:
        """Stop listening and cancel the requests still in progress."""
        await self.runner.cleanup()


async def start_mock_judge(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    latency_ms: float = 0,
    latency_sigma: float = 0,
    faults: str = "",
    seed: int = 0,
    bias: Bias | str = "",
    dialect: str = "openai",
    max_inflight: int | None = None,
) -> MockJudge:
    """Start a mock judge in the running loop; port 0 picks a free port (see ``.port``)."""
    app = build_app(latency_ms=latency_ms, latency_sigma=latency_sigma, faults=faults, seed=seed, bias=bias,
                    dialect=dialect, max_inflight=max_inflight)  # fmt: skip
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    return MockJudge(host, bound, runner)


@contextlib.asynccontextmanager
async def running_mock_judge(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    latency_ms: float = 0,
    latency_sigma: float = 0,
    faults: str = "",
    seed: int = 0,
    bias: Bias | str = "",
    dialect: str = "openai",
    max_inflight: int | None = None,
) -> AsyncIterator[MockJudge]:
    """``async with running_mock_judge(...) as judge:`` — started, then stopped on exit."""
    judge = await start_mock_judge(
        host, port, latency_ms=latency_ms, latency_sigma=latency_sigma, faults=faults, seed=seed, bias=bias,
        dialect=dialect, max_inflight=max_inflight,
    )  # fmt: skip
    try:
        yield judge
    finally:
        await judge.aclose()


def serve(
    host: str,
    port: int,
    *,
    latency_ms: float = 0,
    latency_sigma: float = 0,
    faults: str = "",
    seed: int = 0,
    bias: Bias | str = "",
    dialect: str = "openai",
    max_inflight: int | None = None,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Serve the mock judge until SIGINT or SIGTERM (blocking; ``tracejury mock-judge``).

    Bad arguments raise :class:`ConfigError` before anything binds. Once listening, one line
    ``mock judge listening on http://HOST:PORT/v1`` goes to ``announce`` (default stdout).
    """
    _plan(latency_ms, latency_sigma, faults, seed)  # fail before binding
    _check_dialect(dialect)
    _check_max_inflight(max_inflight)
    bias = _bias(bias)
    say = announce or (lambda line: print(line, file=sys.stdout, flush=True))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        judge = await start_mock_judge(
            host, port, latency_ms=latency_ms, latency_sigma=latency_sigma, faults=faults,
            seed=seed, bias=bias, dialect=dialect, max_inflight=max_inflight,
        )  # fmt: skip
        try:
            say(f"mock judge listening on {judge.base_url}")
            await stop.wait()
            stats = judge.stats
            say(f"mock judge served {stats.requests} requests: {stats.answered} answered, {stats.rate_limited}"
                f" rate limited for max in flight, at most {stats.peak_in_flight} in flight")  # fmt: skip
        finally:
            await judge.aclose()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    asyncio.run(main())


def spawn_mock_judge(**kwargs: Any) -> tuple[subprocess.Popen[str], str]:
    """The mock judge in its own process on a free 127.0.0.1 port (``serve(**kwargs)``), for
    benchmarks that must not share its CPU; returns the process and its base URL. Raises
    ``RuntimeError`` with the process's first line when it does not start."""
    code = f"from judges.mock import serve; serve('127.0.0.1', 0, **{kwargs!r})"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if "listening on " not in line:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"mock judge did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[1]
