"""otlp_fragment, otlp_staged_trace, otlp_assembled, otlp_counter: OTLP traces assembled across requests

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 20:00:00

Spans of one trace arrive over many OTLP requests; each request's share of a trace is staged
as a fragment until the sweeper assembles the trace; one summary row per staged trace (root
seen, first and last arrival, size, late, a sweeper's claim) is what the sweeper scans.
Finished traces leave a tombstone so a span arriving afterwards is counted as late (or as a
re-sent duplicate), not a second trace.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "otlp_fragment",
        sa.Column("id", BIGINT_ID, primary_key=True, autoincrement=True),
        sa.Column("trace_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sqlite_autoincrement=True,  # ids never reused: quarantined lines name the fragment by id
    )
    op.create_index("ix_otlp_fragment_trace", "otlp_fragment", ["trace_id"])
    op.create_table(
        "otlp_staged_trace",
        sa.Column("trace_id", sqlmodel.sql.sqltypes.AutoString(length=32), primary_key=True),
        sa.Column("has_root", sa.Boolean(), nullable=False),
        sa.Column("first_at", sa.Float(), nullable=False),
        sa.Column("last_at", sa.Float(), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("claimed_until", sa.Float(), nullable=True),
    )
    op.create_table(
        "otlp_assembled",
        sa.Column("trace_id", sqlmodel.sql.sqltypes.AutoString(length=32), primary_key=True),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("span_ids", sa.LargeBinary(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.create_index("ix_otlp_assembled_at", "otlp_assembled", ["at"])
    op.create_table(
        "otlp_counter",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("otlp_counter")
    op.drop_table("otlp_staged_trace")
    op.drop_index("ix_otlp_assembled_at", table_name="otlp_assembled")
    op.drop_table("otlp_assembled")
    op.drop_index("ix_otlp_fragment_trace", table_name="otlp_fragment")
    op.drop_table("otlp_fragment")
