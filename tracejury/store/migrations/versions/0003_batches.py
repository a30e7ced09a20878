"""batches

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 13:28:16.417794
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batch_chunk",
        sa.Column("batch_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("chunk_no", sa.Integer(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("worker", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["batch.id"],
        ),
        sa.PrimaryKeyConstraint("batch_id", "chunk_no"),
    )
    op.create_table(
        "batch_trace",
        sa.Column("batch_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("trace_id", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("inclusion_prob", sa.Float(), nullable=False),
        sa.Column("chunk_no", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["batch.id"],
        ),
        sa.ForeignKeyConstraint(
            ["trace_id"],
            ["trace.trace_id"],
        ),
        sa.PrimaryKeyConstraint("batch_id", "trace_id"),
    )
    with op.batch_alter_table("batch_trace", schema=None) as batch_op:
        batch_op.create_index("ix_batch_trace_chunk", ["batch_id", "chunk_no"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("batch_trace", schema=None) as batch_op:
        batch_op.drop_index("ix_batch_trace_chunk")

    op.drop_table("batch_trace")
    op.drop_table("batch_chunk")
