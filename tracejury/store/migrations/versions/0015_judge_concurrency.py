"""Judge concurrency: each process's view of its judge profiles' adaptive concurrency limits

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 02:30:00

``judge_concurrency`` holds one row per (process, profile): the limit on calls in flight the
process's judge client has learnt (or reads from Redis, where it is shared), its calls in
flight and when it last said so; ``/metrics`` and ``batch status`` read the fresh rows.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "judge_concurrency",
        sa.Column("holder", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("profile", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("endpoint", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.Column("concurrency_limit", sa.Integer(), nullable=False),
        sa.Column("in_flight", sa.Integer(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("holder"),
    )
    op.create_index(op.f("ix_judge_concurrency_updated_at"), "judge_concurrency", ["updated_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_judge_concurrency_updated_at"), table_name="judge_concurrency")
    op.drop_table("judge_concurrency")
