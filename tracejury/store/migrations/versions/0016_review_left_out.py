"""Review left out: what each batch's review budget left out, per rubric and reason

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 10:40:00

``review_left_out`` holds one row per (batch, rubric, reason) with the count of escalated
judgments the review budget left out; ``/metrics`` sums it instead of reading every batch's
config. The counts of batches escalated before this revision are copied from their configs.
"""

import orjson
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    left_out = op.create_table(
        "review_left_out",
        sa.Column("batch_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("evaluator_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["batch.id"]),
        sa.PrimaryKeyConstraint("batch_id", "evaluator_id", "reason"),
    )
    conn = op.get_bind()
    batch = sa.table("batch", sa.column("id", sa.String), sa.column("config", sa.LargeBinary))
    rows = []
    for batch_id, raw in conn.execute(sa.select(batch.c.id, batch.c.config)):
        record = orjson.loads(raw).get("escalation") or {}
        for evaluator_id, reasons in (record.get("leftOut") or {}).items():
            rows += [{"batch_id": batch_id, "evaluator_id": evaluator_id, "reason": r, "n": int(n)}
                     for r, n in reasons.items() if n]  # fmt: skip
    if rows:
        op.bulk_insert(left_out, rows)


def downgrade() -> None:
    op.drop_table("review_left_out")
