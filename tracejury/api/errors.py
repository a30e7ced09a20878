"""API errors: a stable ``code``, a one-line ``message`` and an HTTP status."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from tracejury.core.errors import ConfigError, Conflict, InputError, InvalidInput, NotFound, TracejuryError

__all__ = ["ApiError", "install_handlers"]

log = logging.getLogger("tracejury.api")

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "too_large",
               415: "unsupported_media_type", 422: "invalid_request", 429: "rate_limited"}  # fmt: skip


class ApiError(Exception):
    """An error the API returns as ``{"code", "message"}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:500]


def _body(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": _one_line(message)}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid request")


def install_handlers(app: FastAPI) -> None:
    """Route every error through the JSON error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _body(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return _body(404, "not_found", str(exc))

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return _body(409, "conflict", str(exc))

    @app.exception_handler(InvalidInput)
    async def _invalid_input(_: Request, exc: InvalidInput) -> JSONResponse:
        return _body(400, "invalid_input", str(exc))

    @app.exception_handler(TracejuryError)
    async def _tracejury_error(_: Request, exc: TracejuryError) -> JSONResponse:
        code = "bad_request"
        if isinstance(exc, ConfigError | InputError):
            code = "invalid_config" if isinstance(exc, ConfigError) else "bad_input"
        return _body(400, code, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _body(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return _body(exc.status_code, _HTTP_CODES.get(exc.status_code, "error"), str(exc.detail), exc.headers)

    @app.exception_handler(OperationalError)
    async def _store_down(_: Request, exc: OperationalError) -> JSONResponse:
        log.warning("store unavailable: %s", exc)
        first = str(exc.orig).splitlines()[0] if exc.orig else "the store cannot be reached"
        return _body(503, "store_unavailable", f"database error: {first}", {"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _body(500, "internal", f"internal error ({type(exc).__name__}); see the server log")
