"""Token identity: unique token names; the token id beside the reviewer's name on claims and labels

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 00:00:00

Tokens that share a name are renamed, oldest first keeping the name: ``ana``, ``ana-2``,
``ana-3``… (skipping names already taken), and ``api_token.name`` gets a unique index.
``review_item.claimed_by_token`` and ``review_label.token_id`` hold the id of the token that
claimed or labelled (null for rows written before, or from the CLI); the name stays in
``claimed_by`` and ``reviewer``.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _suffix_duplicates() -> None:
    """Give every token but the oldest of each shared name a free ``<name>-<n>``."""
    conn = op.get_bind()
    tokens = sa.table("api_token", sa.column("id"), sa.column("name"), sa.column("created_at"))
    rows = conn.execute(
        sa.select(tokens.c.id, tokens.c.name).where(tokens.c.name.is_not(None))
        .order_by(tokens.c.created_at, tokens.c.id)
    ).all()  # fmt: skip
    taken = {r.name for r in rows}
    seen: set[str] = set()
    for row in rows:
        if row.name not in seen:
            seen.add(row.name)
            continue
        n = 2
        while f"{row.name}-{n}" in taken:
            n += 1
        new = f"{row.name}-{n}"
        taken.add(new)
        conn.execute(sa.update(tokens).where(tokens.c.id == row.id).values(name=new))


def upgrade() -> None:
    _suffix_duplicates()
    op.create_index("ux_api_token_name", "api_token", ["name"], unique=True)
    op.add_column("review_item", sa.Column("claimed_by_token", sqlmodel.sql.sqltypes.AutoString(length=32),
                                           nullable=True))  # fmt: skip
    op.add_column("review_label", sa.Column("token_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))


def downgrade() -> None:
    op.drop_column("review_label", "token_id")
    op.drop_column("review_item", "claimed_by_token")
    op.drop_index("ux_api_token_name", table_name="api_token")
