"""The HTTP client the judge client is given: one POST of bytes in, status, headers and bytes out.

A judge call is one JSON POST to one URL, thousands of times a second; the client needs
nothing of a general HTTP client but a connection pool. :class:`JudgeHTTP` posts straight
through aiohttp's pool (the default): httpx's own transport (httpcore) collapses at high
concurrency — its pool bookkeeping is quadratic in the connections it holds
(encode/httpcore#1035, encode/httpx#3215) — and httpx's API over aiohttp (``httpx-aiohttp``,
used before) spent about half of the client's CPU building httpx request and response
objects, headers and cookies that a judge call never reads (``bench/judges.py`` measures the
transports side by side).

Every transport answers with a :class:`Reply` and raises :class:`TransportTimeout` (no
reply in time) or :class:`TransportError` (no reply: a refused connection, a server that hung
up), named by the underlying error, so a dead endpoint never looks like a slow one.
:class:`HttpxPoster` gives an ``httpx.AsyncClient`` the same shape: httpx's own transport
for comparison, and ``httpx.MockTransport`` in unit tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Literal, Protocol

import aiohttp
import httpx

from judges.llm.profiles import JudgeProfile

__all__ = [
    "TRANSPORTS",
    "HttpxPoster",
    "JudgeHTTP",
    "Poster",
    "Reply",
    "TransportError",
    "TransportName",
    "TransportTimeout",
    "make_http_client",
    "poster_for",
]

TransportName = Literal["aiohttp", "httpcore"]
"""``aiohttp``: :class:`JudgeHTTP` (default); ``httpcore``: httpx's own (for comparison)."""
TRANSPORTS: tuple[TransportName, ...] = ("aiohttp", "httpcore")
"""Transports :func:`make_http_client` can build."""


class TransportError(Exception):
    """No reply: the connection failed or broke. ``name`` is the underlying error's type."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(detail)
        self.name = name


class TransportTimeout(TransportError):
    """No reply in time (connecting or reading)."""


class Reply:
    """An HTTP reply: status, headers (looked up case-insensitively) and the body's bytes."""

    __slots__ = ("content", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], content: bytes) -> None:
        self.status = status
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        """The body as text (UTF-8; undecodable bytes replaced)."""
        return self.content.decode("utf-8", "replace")


class Poster(Protocol):
    """What the judge client posts through."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        """POST ``body`` to ``url``; raises :class:`TransportError` when no reply came."""
        ...


class JudgeHTTP:
    """aiohttp's connection pool, posting bytes: the default judge transport.

    The session is created on first use, inside the running event loop; close it with
    :meth:`aclose` (or ``async with``). It sets no timeout of its own: the judge client
    bounds every attempt with the profile's ``timeout_s``. It follows no redirect (a 3xx is
    the reply: a POST must not turn into a GET, nor send the evidence and an ``api-key`` to
    another host), and trusts the certificates httpx does (certifi's, or ``SSL_CERT_FILE`` /
    ``SSL_CERT_DIR``).
    """

    def __init__(self, max_connections: int, keepalive_s: float = 30.0) -> None:
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this judge HTTP client is closed")
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, limit_per_host=0, keepalive_timeout=self._keepalive_s,
            ssl=httpx.create_ssl_context(),
        )
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(),  # a judge API sets no cookies
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=None, sock_read=None),
            skip_auto_headers=("User-Agent",), headers={"user-agent": "tracejury"},
        )  # fmt: skip
        return self._session

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        """POST ``body`` to ``url`` and read the whole reply."""
        session = self._session or self._open()
        try:
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                content = await response.read()
                return Reply(response.status, response.headers, content)
        except (aiohttp.ConnectionTimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise TransportTimeout(type(exc).__name__, str(exc) or "timed out") from exc
        except aiohttp.ClientError as exc:
            raise TransportError(type(exc).__name__, str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        """Close the pool's connections (the client cannot be used again)."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> JudgeHTTP:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class HttpxPoster:
    """An ``httpx.AsyncClient`` as a :class:`Poster` (httpx's errors become transport errors)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        """POST through httpx."""
        try:
            response = await self.http.post(url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise TransportTimeout(type(exc).__name__, str(exc) or "timed out") from exc
        except httpx.HTTPError as exc:
            raise TransportError(type(exc).__name__, str(exc) or type(exc).__name__) from exc
        return Reply(response.status_code, response.headers, response.content)


def poster_for(http: JudgeHTTP | httpx.AsyncClient | Poster) -> Poster:
    """What a judge client posts through, given a :class:`JudgeHTTP`, an ``httpx.AsyncClient``
    or any :class:`Poster`."""
    return HttpxPoster(http) if isinstance(http, httpx.AsyncClient) else http


def make_http_client(profile: JudgeProfile, kind: TransportName = "aiohttp") -> JudgeHTTP | httpx.AsyncClient:
    """An HTTP client for ``profile``: a pool of ``max_concurrency`` connections kept 30 s.

    ``kind`` picks the transport (see :data:`TransportName`): ``aiohttp`` gives a
    :class:`JudgeHTTP`, ``httpcore`` an ``httpx.AsyncClient``. Either is an async context
    manager; close it with ``aclose()``.
    """
    if kind == "aiohttp":
        return JudgeHTTP(profile.max_concurrency)
    if kind != "httpcore":
        raise ValueError(f"unknown transport {kind!r} (known: {', '.join(TRANSPORTS)})")
    limits = httpx.Limits(max_connections=profile.max_concurrency,
                          max_keepalive_connections=profile.max_concurrency, keepalive_expiry=30.0)  # fmt: skip
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(profile.timeout_s))
