"""API tokens: created with a role, shown once, stored as a sha256 hash.

A token's name is unique (a taken name is refused) and never of the form ``token:…``: that
is the default identity of a token without a name (``token:<id>``), so a name of that form
could act as another token."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError

from tracejury.core.errors import Conflict, InvalidInput, NotFound, TracejuryError
from tracejury.store.tables import ApiToken

__all__ = [
    "DEFAULT_IDENTITY_PREFIX",
    "ROLES",
    "Principal",
    "authenticate",
    "check_name",
    "create_token",
    "list_tokens",
    "revoke_token",
]

ROLES = ("ingest", "reviewer", "admin")
"""``ingest`` may only ingest; ``reviewer`` may read traces and work the review queue;
``admin`` may do everything."""

_T = ApiToken.__table__

DEFAULT_IDENTITY_PREFIX = "token:"
"""A token without a name reviews as ``token:<id>``; no name may start with this (any case)."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's public id, its role and name."""

    token_id: str
    role: str
    name: str | None = None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> None:
    """A token name is a reviewer name: not blank, at most 128 characters, no control
    characters, and not of the reserved form ``token:…`` (``InvalidInput`` otherwise)."""
    if not name.strip():
        raise InvalidInput("--name: must not be blank")
    if len(name) > 128:
        raise InvalidInput(f"--name: at most 128 characters, got {len(name)}")
    if _CONTROL.search(name):
        raise InvalidInput(f"--name: control characters are not allowed: {name!r}")
    if name.lower().startswith(DEFAULT_IDENTITY_PREFIX):
        raise InvalidInput(f"--name: {name!r}: names starting with {DEFAULT_IDENTITY_PREFIX!r} are reserved "
                           "(the identity of tokens without a name)")  # fmt: skip


def _taken(name: str) -> Conflict:
    return Conflict(f"--name: a token named {name!r} already exists (names are unique; see tracejury token list)")


def create_token(engine: Engine, role: str, name: str | None = None) -> tuple[str, Principal]:
    """A new token with ``role``; returns the token (never stored) and its principal. A name
    already taken (by a live or a revoked token: labels keep naming it) is ``Conflict``."""
    if role not in ROLES:
        raise TracejuryError(f"--role: unknown role {role!r} (one of {', '.join(ROLES)})")
    if name is not None:
        check_name(name)
    token_id = secrets.token_hex(6)
    token = f"tj_{token_id}_{secrets.token_urlsafe(32)}"
    try:
        with engine.begin() as conn:
            if name is not None and conn.execute(select(func.count()).where(_T.c.name == name)).scalar_one():
                raise _taken(name)
            conn.execute(_T.insert().values(id=token_id, token_hash=_hash(token), role=role, name=name,
                                            created_at=datetime.now(UTC), revoked_at=None))  # fmt: skip
    except IntegrityError as exc:  # a concurrent create took the name: the unique index says so
        raise _taken(name or "") from exc
    return token, Principal(token_id, role, name)


def authenticate(engine: Engine, token: str) -> Principal | None:
    """The principal of a live (not revoked) token, else None."""
    with engine.connect() as conn:
        row = conn.execute(
            select(_T.c.id, _T.c.role, _T.c.name).where(_T.c.token_hash == _hash(token), _T.c.revoked_at.is_(None))
        ).first()
    return None if row is None else Principal(row.id, row.role, row.name)


def list_tokens(engine: Engine) -> list[dict[str, object]]:
    """Every token's id, role, name and dates (never the token)."""
    with engine.connect() as conn:
        rows = conn.execute(select(_T.c.id, _T.c.role, _T.c.name, _T.c.created_at, _T.c.revoked_at)
                            .order_by(_T.c.created_at)).all()  # fmt: skip
    return [{"id": r.id, "role": r.role, "name": r.name, "createdAt": r.created_at.isoformat(),
             "revokedAt": r.revoked_at.isoformat() if r.revoked_at else None} for r in rows]  # fmt: skip


def revoke_token(engine: Engine, token_id: str) -> None:
    """Revoke a token by its public id; it stops working at once."""
    with engine.begin() as conn:
        done = conn.execute(update(_T).where(_T.c.id == token_id, _T.c.revoked_at.is_(None))
                            .values(revoked_at=datetime.now(UTC))).rowcount  # fmt: skip
    if not done:
        raise NotFound(f"no live token {token_id!r}")
