"""Projects: every job, model, alias, evaluation, token, webhook and idempotency key belongs to one; what
was there before is moved into `default`. Model names (and aliases, and idempotency keys) are unique per
project. The projects table holds the operator's caps.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
OWNED = ("jobs", "models", "model_aliases", "evaluations", "api_tokens", "webhooks", "idempotency_keys")
INDEXED = ("jobs", "evaluations", "api_tokens", "webhooks")
# tables whose primary key gains the project (a name or a key is unique within its project only)
REKEYED = {"model_aliases": ("name", "alias"), "idempotency_keys": ("key",)}


def upgrade() -> None:
    projects = op.create_table(
        "projects",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("monthly_budget_usd", sa.Float),
        sa.Column("max_concurrent_jobs", sa.Integer),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.bulk_insert(projects, [{"name": "default", "created_at": datetime.now(UTC)}])
    for table in OWNED:
        op.add_column(table, sa.Column("project", sa.String(100), nullable=False, server_default="default"))
    for table in INDEXED:
        op.create_index(f"ix_{table}_project", table, ["project"])
    with op.batch_alter_table("models") as batch:
        batch.drop_constraint("uq_models_name_version", type_="unique")
        batch.create_unique_constraint("uq_models_project_name_version", ["project", "name", "version"])
    for table, key in REKEYED.items():
        _rekey(table, ("project", *key))


def _rekey(table: str, key: tuple[str, ...]) -> None:
    """A new primary key: PostgreSQL changes it in place; SQLite, which cannot, gets the table again, made
    from its columns as they are with the new key (`copy_from`: nothing reflected, nothing guessed)."""
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(f"{table}_pkey", table, type_="primary")
        op.create_primary_key(f"{table}_pkey", table, list(key))
        return
    columns = [
        sa.Column(c["name"], c["type"], nullable=c["nullable"], server_default=_default(c["default"]))
        for c in sa.inspect(op.get_bind()).get_columns(table)
    ]
    shape = sa.Table(table, sa.MetaData(), *columns, sa.PrimaryKeyConstraint(*key, name=f"{table}_pkey"))
    with op.batch_alter_table(table, recreate="always", copy_from=shape):
        pass


def _default(reflected: str | None) -> sa.TextClause | None:
    return sa.text(reflected) if reflected is not None else None  # as SQL, quotes and all


def downgrade() -> None:
    for table, key in REKEYED.items():
        _rekey(table, key)
    with op.batch_alter_table("models") as batch:
        batch.drop_constraint("uq_models_project_name_version", type_="unique")
        batch.create_unique_constraint("uq_models_name_version", ["name", "version"])
    for table in INDEXED:
        op.drop_index(f"ix_{table}_project", table)
    for table in OWNED:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("project")
    op.drop_table("projects")
