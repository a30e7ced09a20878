"""The HTTP client the judge client is given: httpx's API over aiohttp's connection pool.

httpx's default transport (httpcore) collapses at high concurrency: its pool bookkeeping is
quadratic in the connections it holds (encode/httpcore#1035, encode/httpx#3215), and a judge
fleet lives at hundreds of calls in flight. ``bench/judges.py`` measures both transports side
by side; the aiohttp one (``httpx-aiohttp``) holds its throughput at 256 in flight, so it is
the default. Code and tests still speak httpx (``httpx.AsyncClient``, ``httpx.MockTransport``).

:class:`JudgeHTTPClient` drops httpx's cookie jar, which a judge API does not need and
which costs CPU on every reply. :class:`JudgeTransport` corrects how ``httpx-aiohttp``
translates aiohttp's errors: it maps every ``ClientConnectionError`` (a refused connection,
a server that hung up) to ``httpx.ConnectTimeout``, which would make a dead endpoint look
like a slow one.
"""

from __future__ import annotations

import asyncio
from http.cookiejar import Cookie, CookieJar
from typing import Literal

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from judges.llm.profiles import JudgeProfile

__all__ = ["TRANSPORTS", "JudgeHTTPClient", "JudgeTransport", "TransportName", "make_http_client"]

TransportName = Literal["aiohttp", "httpcore"]
"""``aiohttp``: :class:`JudgeTransport` (default); ``httpcore``: httpx's own (for comparison)."""
TRANSPORTS: tuple[TransportName, ...] = ("aiohttp", "httpcore")
"""Transports :func:`make_http_client` can build."""


def _translate(exc: BaseException) -> httpx.TransportError | None:
    """The httpx error an aiohttp error stands for, judged by the aiohttp error itself."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(str(exc))
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return httpx.ReadTimeout(str(exc) or "timed out reading the reply")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(str(exc))
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(str(exc) or "server disconnected")
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientConnectionError):
        return httpx.ReadError(str(exc))
    if isinstance(exc, aiohttp.ClientError):
        return httpx.TransportError(str(exc))
    return None


class JudgeTransport(AiohttpTransport):
    """``httpx-aiohttp``'s transport with aiohttp errors translated by their real cause."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` over aiohttp; connection problems raise httpx's error types."""
        try:
            return await super().handle_async_request(request)
        except httpx.TransportError as exc:
            better = _translate(exc.__cause__) if exc.__cause__ is not None else None
            if better is None or type(better) is type(exc):
                raise
            raise better from exc.__cause__
        except aiohttp.ClientError as exc:  # not mapped by httpx-aiohttp
            raise (_translate(exc) or httpx.TransportError(str(exc))) from exc


class _NullJar(CookieJar):
    """A cookie jar that never stores a cookie."""

    def set_cookie(self, cookie: Cookie) -> None:
        """Drop ``cookie``."""


class _NoCookies(httpx.Cookies):
    """Cookies that stay empty, and skip httpx's urllib round trip on every reply."""

    def __init__(self) -> None:
        super().__init__(_NullJar())

    def extract_cookies(self, response: httpx.Response) -> None:
        """Keep no cookie from ``response``."""

    def set_cookie_header(self, request: httpx.Request) -> None:
        """Send no cookie."""


_NO_COOKIES = _NoCookies()


class JudgeHTTPClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` without cookies: a judge API needs none, and httpx's cookie jar
    rebuilds the request and reply as urllib objects for every response (measurable CPU at
    a thousand calls a second)."""

    @property
    def cookies(self) -> httpx.Cookies:
        """Always empty; setting cookies has no effect."""
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, value: object) -> None:
        pass


def make_http_client(profile: JudgeProfile, kind: TransportName = "aiohttp") -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for ``profile``: its timeout, a pool of ``max_concurrency``.

    ``kind`` picks the transport (see :data:`TransportName`); ``aiohttp`` gives a
    :class:`JudgeHTTPClient` over a :class:`JudgeTransport`, whose aiohttp session is created
    on first use, inside the running event loop. Close the client with ``aclose()``.
    """
    limits = httpx.Limits(
        max_connections=profile.max_concurrency,
        max_keepalive_connections=profile.max_concurrency,
        keepalive_expiry=30.0,
    )
    timeout = httpx.Timeout(profile.timeout_s)
    if kind == "httpcore":
        return httpx.AsyncClient(limits=limits, timeout=timeout)
    if kind != "aiohttp":
        raise ValueError(f"unknown transport {kind!r} (known: {', '.join(TRANSPORTS)})")
    return JudgeHTTPClient(transport=JudgeTransport(limits=limits), timeout=timeout)
