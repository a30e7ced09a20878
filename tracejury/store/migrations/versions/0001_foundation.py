"""foundation

Revision ID: 0001
Revises:
Create Date: 2026-11-26 12:54:15.927813
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("trace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("json_path", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("message", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("raw_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "line_no", "raw_hash", name="uq_quarantine_line"),
    )
    op.create_table(
        "trace",
        sa.Column("trace_id", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("release_id", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("ts", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("segment_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("segmentation_version", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("content_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("session_id_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("format_invalid", sa.Boolean(), nullable=False),
        sa.Column("fallback_used", sa.Boolean(), nullable=False),
        sa.Column("rag_on", sa.Boolean(), nullable=False),
        sa.Column("retrieval_empty", sa.Boolean(), nullable=False),
        sa.Column("tool_required", sa.Boolean(), nullable=True),
        sa.Column("tool_called", sa.Boolean(), nullable=False),
        sa.Column("tool_error", sa.Boolean(), nullable=False),
        sa.Column("tool_timeout", sa.Boolean(), nullable=False),
        sa.Column("guard_block", sa.Boolean(), nullable=False),
        sa.Column("negative_feedback", sa.Boolean(), nullable=False),
        sa.Column("has_sample", sa.Boolean(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("ingested_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("trace_id"),
    )
    with op.batch_alter_table("trace", schema=None) as batch_op:
        batch_op.create_index("ix_trace_release_segment", ["release_id", "segment_key"], unique=False)
        batch_op.create_index("ix_trace_release_ts", ["release_id", "ts"], unique=False)

    op.create_table(
        "trace_conflict",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trace_id", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("stored_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("incoming_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("trace_id", "incoming_hash", name="uq_conflict_trace_hash"),
    )
    with op.batch_alter_table("trace_conflict", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_trace_conflict_trace_id"), ["trace_id"], unique=False)

    op.create_table(
        "trace_stage",
        sa.Column("trace_id", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("stage", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["trace_id"],
            ["trace.trace_id"],
        ),
        sa.PrimaryKeyConstraint("trace_id", "stage"),
    )


def downgrade() -> None:
    op.drop_table("trace_stage")
    with op.batch_alter_table("trace_conflict", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trace_conflict_trace_id"))

    op.drop_table("trace_conflict")
    with op.batch_alter_table("trace", schema=None) as batch_op:
        batch_op.drop_index("ix_trace_release_ts")
        batch_op.drop_index("ix_trace_release_segment")

    op.drop_table("trace")
    op.drop_table("quarantine")
