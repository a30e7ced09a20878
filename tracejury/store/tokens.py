"""API tokens: created with a role, shown once, stored as a sha256 hash."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select, update

from tracejury.core.errors import NotFound, TracejuryError
from tracejury.store.tables import ApiToken

__all__ = ["ROLES", "Principal", "authenticate", "create_token", "list_tokens", "revoke_token"]

ROLES = ("ingest", "reviewer", "admin")
"""``ingest`` may only ingest; ``reviewer`` may read traces and work the review queue;
``admin`` may do everything."""

_T = ApiToken.__table__


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's public id, its role and name."""

    token_id: str
    role: str
    name: str | None = None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: Engine, role: str, name: str | None = None) -> tuple[str, Principal]:
    """A new token with ``role``; returns the token (never stored) and its principal."""
    if role not in ROLES:
        raise TracejuryError(f"--role: unknown role {role!r} (one of {', '.join(ROLES)})")
    token_id = secrets.token_hex(6)
    token = f"tj_{token_id}_{secrets.token_urlsafe(32)}"
    with engine.begin() as conn:
        conn.execute(_T.insert().values(id=token_id, token_hash=_hash(token), role=role, name=name,
                                        created_at=datetime.now(UTC), revoked_at=None))  # fmt: skip
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
