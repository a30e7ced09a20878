"""gates

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 13:39:25.309020
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gate_run",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("release_id", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("decision", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column("config_hash", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("gate_run", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gate_run_release_id"), ["release_id"], unique=False)

    op.create_table(
        "gate_outcome",
        sa.Column("run_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("gate_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("segment", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("decision", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("audit", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["gate_run.id"],
        ),
        sa.PrimaryKeyConstraint("run_id", "gate_id", "segment"),
    )
    with op.batch_alter_table("gate_outcome", schema=None) as batch_op:
        batch_op.create_index("ix_gate_outcome_gate_segment", ["gate_id", "segment"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("gate_outcome", schema=None) as batch_op:
        batch_op.drop_index("ix_gate_outcome_gate_segment")

    op.drop_table("gate_outcome")
    with op.batch_alter_table("gate_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gate_run_release_id"))

    op.drop_table("gate_run")
