"""The project's mock judge (judges/mock) with a call counter, for bench/peers.py.

The mock itself cannot count the calls it answers, and every contestant of the peers bench
must be counted the same way, at the server: this wraps ``judges.mock.build_app`` in one
aiohttp middleware that counts each ``POST .../chat/completions`` when it arrives and, by
HTTP status, when it is answered, and adds ``GET /bench/count``:

    {"calls": <requests received>, "answered": {"200": n, "429": n, ...}, "open": <in flight>,
     "peak_open": <most in flight at once>, "first_at": <CLOCK_MONOTONIC s of the first call
     since the last reset, or null>, "last_at": <... of the last reply>}

    .venv/bin/python bench/peers/mock.py --port P [--latency-ms 200]

Prints ``counting mock judge listening on http://127.0.0.1:P/v1`` once listening; runs until
SIGINT or SIGTERM. ``GET /bench/count?reset=1`` also starts a new peak and a new window
(``first_at``, ``last_at``). Verdicts, latency and faults are the mock's own (``build_app``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections import Counter
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
# run as a script: the checkout, not bench/peers, must be first on the path
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent)]

from judges.mock import build_app  # noqa: E402


class Counts:
    """What the middleware counted so far."""

    def __init__(self) -> None:
        self.calls = 0
        self.open = 0
        self.peak_open = 0
        self.answered: Counter[str] = Counter()
        self.first_at: float | None = None
        self.last_at: float | None = None

    def as_json(self) -> dict[str, object]:
        """The ``GET /bench/count`` body."""
        return {"calls": self.calls, "answered": dict(self.answered), "open": self.open,
                "peak_open": self.peak_open, "first_at": self.first_at, "last_at": self.last_at}  # fmt: skip


def counting_app(latency_ms: float) -> web.Application:
    """The mock judge's app with the counting middleware and ``GET /bench/count``."""
    counts = Counts()

    @web.middleware
    async def count(request: web.Request, handler):  # noqa: ANN001, ANN202 - aiohttp's handler type
        if request.method != "POST" or not request.path.endswith("/chat/completions"):
            return await handler(request)
        counts.calls += 1
        if counts.first_at is None:
            counts.first_at = time.monotonic()
        counts.open += 1
        counts.peak_open = max(counts.peak_open, counts.open)
        status = "cancelled"  # the client hung up before the reply
        try:
            response = await handler(request)
            status = str(response.status)
            return response
        except web.HTTPException as exc:
            status = str(exc.status)
            raise
        finally:
            counts.open -= 1
            counts.answered[status] += 1
            counts.last_at = time.monotonic()

    async def report(request: web.Request) -> web.Response:
        body = counts.as_json()
        if request.query.get("reset"):  # the next contestant's peak and window start here
            counts.peak_open, counts.first_at, counts.last_at = counts.open, None, None
        return web.json_response(body)

    app = build_app(latency_ms=latency_ms)
    app.middlewares.append(count)
    app.router.add_get("/bench/count", report)
    return app


async def _serve(host: str, port: int, latency_ms: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(counting_app(latency_ms), handle_signals=False, access_log=None,
                           shutdown_timeout=1.0, handler_cancellation=True)  # fmt: skip
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=4096).start()
    print(f"counting mock judge listening on http://{host}:{port}/v1", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=200)
    args = parser.parse_args()
    asyncio.run(_serve(args.host, args.port, args.latency_ms))


if __name__ == "__main__":
    main()
