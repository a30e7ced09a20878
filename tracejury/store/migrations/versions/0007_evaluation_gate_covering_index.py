"""evaluation gate covering index

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 15:20:56.898258

Gates aggregate an arm from ``ix_evaluation_gate_cover`` alone (every column they read, in
the order they seek and group), and find the batch an arm reads through
``ix_evaluation_release_latest``. ``ix_evaluation_gate`` (trace id before id) served neither.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_COVER = ["evaluator_id", "release_id", "batch_id", "evaluator_version", "segment_key", "status", "passed",
          "trace_ts", "weight"]  # fmt: skip


def upgrade() -> None:
    op.drop_index("ix_evaluation_gate", table_name="evaluation")
    op.create_index("ix_evaluation_gate_cover", "evaluation", _COVER, unique=False)
    op.create_index("ix_evaluation_release_latest", "evaluation", ["evaluator_id", "release_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_evaluation_release_latest", table_name="evaluation")
    op.drop_index("ix_evaluation_gate_cover", table_name="evaluation")
    op.create_index("ix_evaluation_gate", "evaluation", ["evaluator_id", "release_id", "trace_id", "id"], unique=False)
