"""64-bit ids for evaluation and quarantine on PostgreSQL

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 15:46:00

A 32-bit serial runs out after 2^31 rows: ~25 days of evaluations at 1,000 judge calls/s.
PostgreSQL widens the column and its sequence (a sequence at the old type's maximum moves to
the new type's); SQLite's INTEGER PRIMARY KEY is already 64-bit, so nothing changes there.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_TABLES = ("evaluation", "quarantine")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        op.alter_column(table, "id", type_=sa.BigInteger(), existing_type=sa.Integer(), existing_nullable=False)
        op.execute(f"ALTER SEQUENCE {table}_id_seq AS bigint")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        op.execute(f"ALTER SEQUENCE {table}_id_seq AS integer")
        op.alter_column(table, "id", type_=sa.Integer(), existing_type=sa.BigInteger(), existing_nullable=False)
