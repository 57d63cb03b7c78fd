"""Initial schema: jobs, events, datasets, models, model aliases, evaluations.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("provider_status", sa.String(100)),
        sa.Column("provider_job_id", sa.String(200)),
        sa.Column("provider_ref", sa.JSON()),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("data", sa.JSON()),
        sa.Column("progress", sa.Float()),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("artifact", sa.JSON()),
        sa.Column("cost", sa.JSON()),
        sa.Column("error", sa.Text()),
        sa.Column("event_cursor", sa.String(200)),
        sa.Column("dataset_fingerprint", sa.String(80)),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("started_at", TZ),
        sa.Column("finished_at", TZ),
    )
    op.create_index("ix_jobs_provider", "jobs", ["provider"])
    op.create_index("ix_jobs_status", "jobs", ["status"])
    op.create_index("ix_jobs_provider_job_id", "jobs", ["provider_job_id"])
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"])

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(40), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("time", TZ, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("level", sa.String(10), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.UniqueConstraint("job_id", "seq", name="uq_events_job_seq"),
    )
    op.create_index("ix_events_job_id", "events", ["job_id"])

    op.create_table(
        "datasets",
        sa.Column("fingerprint", sa.String(80), primary_key=True),
        sa.Column("format", sa.String(30), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.Integer()),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("stats", sa.JSON()),
        sa.Column("created_at", TZ, nullable=False),
    )

    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(40), sa.ForeignKey("jobs.id", ondelete="SET NULL")),
        sa.Column("provider", sa.String(100), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("base_model", sa.Text(), nullable=False),
        sa.Column("base_model_retires", TZ),
        sa.Column("adapter_type", sa.String(30)),
        sa.Column("dataset_fingerprint", sa.String(80)),
        sa.Column("artifact", sa.JSON(), nullable=False),
        sa.Column("spec", sa.JSON()),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("cost", sa.JSON()),
        sa.Column("description", sa.Text()),
        sa.Column("created_at", TZ, nullable=False),
        sa.UniqueConstraint("name", "version", name="uq_models_name_version"),
    )
    op.create_index("ix_models_name", "models", ["name"])

    op.create_table(
        "model_aliases",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("alias", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )

    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(40), sa.ForeignKey("jobs.id", ondelete="SET NULL")),
        sa.Column("model_name", sa.String(200)),
        sa.Column("model_version", sa.Integer()),
        sa.Column("subject", sa.String(50), nullable=False),
        sa.Column("provider", sa.String(100), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.Column("dataset_path", sa.Text(), nullable=False),
        sa.Column("dataset_fingerprint", sa.String(80), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("samples", sa.JSON()),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index("ix_evaluations_job_id", "evaluations", ["job_id"])
    op.create_index("ix_evaluations_model", "evaluations", ["model_name", "model_version"])


def downgrade() -> None:
    for index, table in (
        ("ix_evaluations_model", "evaluations"),
        ("ix_evaluations_job_id", "evaluations"),
        ("ix_models_name", "models"),
        ("ix_events_job_id", "events"),
        ("ix_jobs_created_at", "jobs"),
        ("ix_jobs_provider_job_id", "jobs"),
        ("ix_jobs_status", "jobs"),
        ("ix_jobs_provider", "jobs"),
    ):
        op.drop_index(index, table_name=table)
    for table in ("evaluations", "model_aliases", "models", "datasets", "events", "jobs"):
        op.drop_table(table)
