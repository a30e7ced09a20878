"""api tokens and review queue

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 15:11:43.495996
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "api_token",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "review_item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trace_id", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("evaluator_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("evaluator_version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("batch_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("release_id", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("segment_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reasons", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("evaluation_ids", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("lease_expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["batch.id"],
        ),
        sa.ForeignKeyConstraint(
            ["trace_id"],
            ["trace.trace_id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("trace_id", "evaluator_id", name="uq_review_item"),
    )
    with op.batch_alter_table("review_item", schema=None) as batch_op:
        batch_op.create_index("ix_review_item_state_priority", ["state", "priority", "id"], unique=False)

    op.create_table(
        "review_label",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("trace_id", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("evaluator_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("evaluator_version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("reviewer", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("label", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("rationale", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["review_item.id"],
        ),
        sa.ForeignKeyConstraint(
            ["trace_id"],
            ["trace.trace_id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("review_label", schema=None) as batch_op:
        batch_op.create_index("ix_review_label_trace_evaluator", ["evaluator_id", "trace_id", "id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("review_label", schema=None) as batch_op:
        batch_op.drop_index("ix_review_label_trace_evaluator")

    op.drop_table("review_label")
    with op.batch_alter_table("review_item", schema=None) as batch_op:
        batch_op.drop_index("ix_review_item_state_priority")

    op.drop_table("review_item")
    op.drop_table("api_token")
