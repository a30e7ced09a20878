"""Plain ASGI middleware. A request body size limit: a declared ``Content-Length`` past the
limit is refused before reading; a streamed body is counted and cut off at the limit."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.exceptions import HTTPException

__all__ = ["BodyLimit", "CountRequests"]

Scope = dict[str, Any]


class BodyTooLarge(HTTPException):
    """Raised inside ``receive`` when a streamed body passes the limit; the app's handler for
    HTTP errors answers it with 413 ``too_large`` whoever was reading the body (a handler, or
    FastAPI parsing a JSON model)."""


async def _send_413(send: Any, max_bytes: int) -> None:
    body = orjson.dumps({"code": "too_large", "message": f"request body larger than {max_bytes} bytes"})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413 and a JSON error."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_413(send, self.max_bytes)
            return
        seen = 0
        started = False

        async def counted_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # an HTTPException: FastAPI re-raises it from body parsing
                    raise BodyTooLarge(413, f"request body larger than {self.max_bytes} bytes")
            return message

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await _send_413(send, self.max_bytes)


class CountRequests:
    """Count requests by method, route template and status (plain ASGI: no task groups in
    the request path, so errors raised by inner middleware reach their handlers unwrapped)."""

    def __init__(self, app: Any, counter: Any) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.counter.labels(scope["method"], route, str(status)).inc()
