"""Judge spend: evaluation.cost_usd and saved_usd; the spend ledger of cost caps

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 23:00:00

``cost_usd`` is what an evaluation's judge calls cost by the usage the endpoint reported and
the profile's price (NULL: no price, or no usage reported); ``saved_usd`` what its cached
verdicts would have cost. ``spend_ledger`` holds reservations and settled spend against the
cost caps (a batch's ``--max-cost``, a profile's ``max_cost_per_day``) when the broker is the
embedded one; with Redis the ledger is in Redis.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("evaluation", sa.Column("cost_usd", sa.Float(), nullable=True))
    op.add_column("evaluation", sa.Column("saved_usd", sa.Float(), nullable=True))
    op.create_table(
        "spend_ledger",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=200), primary_key=True),
        sa.Column("reserved_nusd", sa.BigInteger(), nullable=False),
        sa.Column("spent_nusd", sa.BigInteger(), nullable=False),
        sa.Column("admitted_nusd", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("spend_ledger")
    op.drop_column("evaluation", "saved_usd")
    op.drop_column("evaluation", "cost_usd")
