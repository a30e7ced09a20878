"""Judge claims: the judge calls in flight per cache key, for single flight across workers

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 02:00:00

``judge_claim`` holds one row per question a worker process is asking the judge right now,
keyed by the sha256 of its cache key (model, rubric fingerprint, evidence hash, sample);
another process with the same question waits for the verdict in ``judge_cache`` instead of
paying for the call twice. Rows live seconds.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "judge_claim",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("done", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index(op.f("ix_judge_claim_expires_at"), "judge_claim", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_judge_claim_expires_at"), table_name="judge_claim")
    op.drop_table("judge_claim")
