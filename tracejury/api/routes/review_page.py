"""The review page: a static shell (HTML, JS, CSS from ``tracejury/api/static``) that holds no
data and needs no token to fetch. The JS asks for a token and calls ``/api/review/…``.

Trace content is untrusted, so every page response carries a strict Content-Security-Policy
(scripts, styles, images and requests from this origin only; no inline code, no framing, no
base or form redirection), ``nosniff`` and no referrer. The routes are not part of the
OpenAPI document.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response

__all__ = ["CSP", "SECURITY_HEADERS", "router"]

router = APIRouter(include_in_schema=False)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""The page's Content-Security-Policy."""
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
"""Headers on every response of the page (the shell, its scripts and its style sheet)."""

_TYPES = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}


@cache
def _asset(name: str) -> bytes:
    return files("tracejury.api").joinpath("static", name).read_bytes()


def _serve(name: str) -> Response:
    return Response(_asset(name), media_type=_TYPES[name.rsplit(".", 1)[1]], headers=SECURITY_HEADERS)


@router.get("/review")
def page() -> Response:
    """The review page's HTML shell."""
    return _serve("review.html")


@router.get("/review/review.js")
def script() -> Response:
    """The review page's script: the API, the queue, the keys."""
    return _serve("review.js")


@router.get("/review/review-view.js")
def view_script() -> Response:
    """The review page's rendering script (text nodes only)."""
    return _serve("review-view.js")


@router.get("/review/review.css")
def style() -> Response:
    """The review page's style sheet."""
    return _serve("review.css")
