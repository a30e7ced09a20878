"""evaluation denormalised for gates

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 14:07:19.905745
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("evaluation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("release_id", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True))
        batch_op.add_column(sa.Column("segment_key", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column("trace_ts", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("weight", sa.Float(), nullable=False, server_default="1.0"))
        batch_op.create_index("ix_evaluation_gate", ["evaluator_id", "release_id", "trace_id", "id"], unique=False)
    # backfill what gates read from the trace and the batch sample
    op.execute(
        "UPDATE evaluation SET"
        " release_id = (SELECT t.release_id FROM trace t WHERE t.trace_id = evaluation.trace_id),"
        " segment_key = (SELECT t.segment_key FROM trace t WHERE t.trace_id = evaluation.trace_id),"
        " trace_ts = (SELECT t.ts FROM trace t WHERE t.trace_id = evaluation.trace_id),"
        " weight = COALESCE((SELECT 1.0 / bt.inclusion_prob FROM batch_trace bt"
        " WHERE bt.batch_id = evaluation.batch_id AND bt.trace_id = evaluation.trace_id), 1.0)"
    )


def downgrade() -> None:
    with op.batch_alter_table("evaluation", schema=None) as batch_op:
        batch_op.drop_index("ix_evaluation_gate")
        batch_op.drop_column("weight")
        batch_op.drop_column("trace_ts")
        batch_op.drop_column("segment_key")
        batch_op.drop_column("release_id")
