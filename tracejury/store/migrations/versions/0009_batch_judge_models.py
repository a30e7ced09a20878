"""batch.judge_models: the models the judge endpoints reported, per evaluator

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 03:30:00

Gates compare the judge of the two arms (profile content and the model the endpoint
reported). The reported models are summed up once, when a batch ends, so a gate run does not
scan a batch's evaluations for them. Batches that ended before this column are read the slow
way (NULL).
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("batch", sa.Column("judge_models", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    # a plain ALTER TABLE … DROP COLUMN (SQLite >= 3.35): a batch-mode table copy would have to
    # drop ``batch``, which evaluations reference
    op.drop_column("batch", "judge_models")
