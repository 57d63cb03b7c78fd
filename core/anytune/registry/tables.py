"""The registry's tables (SQLAlchemy 2). Schema changes go through an Alembic migration in migrations/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps in UTC going in and coming out (SQLite forgets the zone; PostgreSQL keeps it)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


DEFAULT_PROJECT = "default"  # where everything recorded before projects lives, and a lone user's work


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime()}


class ProjectRow(Base):
    """A team's corner of the registry: its jobs, models, datasets, evaluations, tokens and webhooks are seen
    by its tokens only. The caps are the operator's (None: no cap)."""

    __tablename__ = "projects"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    monthly_budget_usd: Mapped[float | None] = mapped_column(Float)
    max_concurrent_jobs: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project: Mapped[str] = mapped_column(
        String(100), default=DEFAULT_PROJECT, server_default=DEFAULT_PROJECT, index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(100), index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    provider_status: Mapped[str | None] = mapped_column(String(100))
    provider_job_id: Mapped[str | None] = mapped_column(String(200), index=True)
    provider_ref: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    progress: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    artifact: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    cost: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    event_cursor: Mapped[str | None] = mapped_column(String(200))
    dataset_fingerprint: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("job_id", "seq", name="uq_events_job_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(40), ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(20))
    level: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class DatasetRow(Base):
    __tablename__ = "datasets"

    fingerprint: Mapped[str] = mapped_column(String(80), primary_key=True)
    format: Mapped[str] = mapped_column(String(30))
    rows: Mapped[int] = mapped_column(Integer)
    tokens: Mapped[int | None] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class StoredDatasetRow(Base):
    """A data file uploaded to the service, kept in the storage layer under `datasets/<hex>`: its id is the
    SHA-256 of its bytes, so the same file uploaded twice is kept once (one row per project that has it, one
    blob for all)."""

    __tablename__ = "stored_datasets"

    project: Mapped[str] = mapped_column(String(100), primary_key=True, default="default")
    id: Mapped[str] = mapped_column(String(80), primary_key=True)  # sha256:<hex of the bytes>
    name: Mapped[str] = mapped_column(String(300))  # the file name it was uploaded as
    size: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(30))
    rows: Mapped[int] = mapped_column(Integer)
    tokens: Mapped[int | None] = mapped_column(BigInteger)
    fingerprint: Mapped[str] = mapped_column(String(80))  # the content fingerprint (anytune.data.fingerprint)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class UploadRow(Base):
    """A data file on its way up in parts: its bytes so far are a file on the server's disk (their count is
    the offset a resumed upload goes on from); the row says how long it will be and what it should hash to."""

    __tablename__ = "dataset_uploads"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project: Mapped[str] = mapped_column(String(100), default="default", index=True)
    name: Mapped[str] = mapped_column(String(300))
    length: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(80))  # what the client says it hashes to
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ModelRow(Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("project", "name", "version", name="uq_models_project_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project: Mapped[str] = mapped_column(String(100), default=DEFAULT_PROJECT, server_default=DEFAULT_PROJECT)
    name: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("jobs.id", ondelete="SET NULL"))
    provider: Mapped[str] = mapped_column(String(100))
    model_id: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(30))
    base_model: Mapped[str] = mapped_column(Text)
    base_model_retires: Mapped[datetime | None] = mapped_column(UTCDateTime())
    adapter_type: Mapped[str | None] = mapped_column(String(30))
    dataset_fingerprint: Mapped[str | None] = mapped_column(String(80))
    artifact: Mapped[dict[str, Any]] = mapped_column(JSON)
    spec: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    cost: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ModelAliasRow(Base):
    __tablename__ = "model_aliases"

    project: Mapped[str] = mapped_column(
        String(100), primary_key=True, default=DEFAULT_PROJECT, server_default=DEFAULT_PROJECT
    )
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    alias: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EvaluationRow(Base):
    __tablename__ = "evaluations"
    __table_args__ = (Index("ix_evaluations_model", "model_name", "model_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("jobs.id", ondelete="SET NULL"), index=True
    )
    project: Mapped[str] = mapped_column(
        String(100), default=DEFAULT_PROJECT, server_default=DEFAULT_PROJECT, index=True
    )
    model_name: Mapped[str | None] = mapped_column(String(200))
    model_version: Mapped[int | None] = mapped_column(Integer)
    subject: Mapped[str] = mapped_column(String(50))
    provider: Mapped[str] = mapped_column(String(100))
    model_id: Mapped[str] = mapped_column(Text)
    dataset_path: Mapped[str] = mapped_column(Text)
    dataset_fingerprint: Mapped[str] = mapped_column(String(80))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    n: Mapped[int] = mapped_column(Integer)
    samples: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TokenRow(Base):
    """An API token of the service: only its SHA-256 is kept; the token itself is shown once, at creation."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    project: Mapped[str] = mapped_column(
        String(100), default=DEFAULT_PROJECT, server_default=DEFAULT_PROJECT, index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class IdempotencyRow(Base):
    """A job create's Idempotency-Key: claimed (with the body's hash) before the job is submitted, completed
    with its job id after, so a repeated request returns the same job and never submits a second one."""

    __tablename__ = "idempotency_keys"

    project: Mapped[str] = mapped_column(
        String(100), primary_key=True, default=DEFAULT_PROJECT, server_default=DEFAULT_PROJECT
    )
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    body_hash: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # set when the request that claimed the key has answered; until then `job_id` is the id it will record
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class LeaseRow(Base):
    """Which worker follows a job, until when, and when it is next due. A worker takes a job only while no
    live lease holds it (`owner` unset or `expires_at` past), so two workers never poll one job at once and a
    dead worker's jobs are taken over when its leases run out."""

    __tablename__ = "job_leases"

    job_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    owner: Mapped[str | None] = mapped_column(String(120), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    next_poll_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    stage: Mapped[str] = mapped_column(String(20), default="follow")  # follow | evaluate | done
    polls: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # in a row, for the backoff
    errors: Mapped[int] = mapped_column(Integer, default=0)  # in all, for the metrics
    changes: Mapped[int] = mapped_column(Integer, default=0)  # status changes seen by polls, for the metrics


metadata = Base.metadata


class WebhookRow(Base):
    """A receiver of the registry's events: signed with `secret`, delivered in order from `cursor` (the last
    event row delivered), at least once; a worker holds it while delivering (`owner`, `expires_at`)."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    project: Mapped[str] = mapped_column(
        String(100), default=DEFAULT_PROJECT, server_default=DEFAULT_PROJECT, index=True
    )
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(200))
    kinds: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    cursor: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    owner: Mapped[str | None] = mapped_column(String(120), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    failures: Mapped[int] = mapped_column(Integer, default=0)
    delivered: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
