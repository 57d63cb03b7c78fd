"""Workers' leases on jobs, and the job id an idempotency key will record, kept from the moment it is claimed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "job_leases",
        sa.Column("job_id", sa.String(40), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("owner", sa.String(120)),
        sa.Column("expires_at", TZ),
        sa.Column("next_poll_at", TZ, nullable=False),
        sa.Column("stage", sa.String(20), nullable=False, server_default="follow"),
        sa.Column("polls", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("errors", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_job_leases_next_poll_at", "job_leases", ["next_poll_at"])
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(sa.Column("completed_at", TZ))
    # keys completed before this revision had their job id set only on completion
    op.execute("UPDATE idempotency_keys SET completed_at = created_at WHERE job_id IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("completed_at")
    op.drop_index("ix_job_leases_next_poll_at", "job_leases")
    op.drop_table("job_leases")
