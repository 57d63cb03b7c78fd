"""Uploaded datasets (kept in the storage layer by the SHA-256 of their bytes) and uploads in progress.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "stored_datasets",
        sa.Column("project", sa.String(100), primary_key=True, server_default="default"),
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("format", sa.String(30), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("tokens", sa.BigInteger),
        sa.Column("fingerprint", sa.String(80), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "dataset_uploads",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("project", sa.String(100), nullable=False, server_default="default", index=True),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("length", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(80)),
        sa.Column("created_at", TZ, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("dataset_uploads")
    op.drop_table("stored_datasets")
