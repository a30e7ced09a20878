"""Dependencies of the API's handlers: settings, the store's engine, and who is calling."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

from tracejury.api.errors import ApiError
from tracejury.settings import Settings
from tracejury.store.tokens import ROLES, Principal, authenticate

__all__ = ["EngineDep", "SettingsDep", "require_role"]


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _engine(request: Request) -> Engine:
    return request.app.state.engine()


SettingsDep = Annotated[Settings, Depends(_settings)]
EngineDep = Annotated[Engine, Depends(_engine)]

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _principal(request: Request, engine: EngineDep) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "missing bearer token (Authorization: Bearer <token>)", _CHALLENGE)
    throttle = getattr(request.app.state, "failed_auth", None)
    source = request.client.host if request.client else "unknown"
    wait = throttle.retry_after(source) if throttle is not None else None
    if wait is not None:
        raise ApiError(429, "too_many_failures", f"too many invalid tokens from {source}: retry in {wait} s",
                       {"Retry-After": str(wait)})  # fmt: skip
    principal = authenticate(engine, token.strip())
    if principal is None:
        if throttle is not None:
            throttle.failed(source)
        raise ApiError(401, "unauthorized", "invalid or revoked token", _CHALLENGE)
    request.state.principal = principal
    return principal


def require_role(*roles: str) -> Callable[..., Principal]:
    """A dependency that lets through tokens of ``roles`` (admin always) and refuses others
    with 403; no or a bad token is 401."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")
    allowed = {*roles, "admin"}

    def dependency(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        if principal.role not in allowed:
            needs = " or ".join(sorted(allowed))
            raise ApiError(403, "forbidden", f"role {principal.role!r} may not do this (needs {needs})")
        return principal

    return dependency
