"""review_item.audit_rate and inclusion_p: the audit draw's probabilities

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 06:00:00

The audit share of the review queue is a probability sample: a scored judgment is audited
with probability ``audit_rate`` (the rubric's), so a trace drawn by its batch with probability
p is audited with p × audit_rate. Calibrated gates weight audit labels by its inverse. NULL
on items that were not drawn for audit, and on audit items escalated before this column
(read with the batch's weight alone: one audit rate per rubric version cancels in the ratio).
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("review_item", sa.Column("audit_rate", sa.Float(), nullable=True))
    op.add_column("review_item", sa.Column("inclusion_p", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("review_item", "inclusion_p")
    op.drop_column("review_item", "audit_rate")
