"""The Job record: a neutral status machine, events, metrics, the artifact and the cost.

Every provider's status maps onto `JobStatus`; the provider's own word is kept beside it
(`Job.provider_status`) so that nothing is lost in translation. Transitions are checked: a job never goes
back from a terminal status, and an update that would move it backwards is refused, not applied.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from anytune.errors import InvalidTransitionError
from anytune.spec import JobSpec
from anytune.spec_upgrades import read_spec


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    """Time-ordered, unique, short enough to type a prefix of: job-<ms since epoch, hex><6 random hex>."""
    return f"job-{int(time.time() * 1000):011x}{secrets.token_hex(3)}"


class JobStatus(StrEnum):
    PENDING = "pending"  # recorded by anytune, not yet accepted by the backend
    VALIDATING = "validating"  # the provider checks the files
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def active(self) -> bool:
        return not self.terminal


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

# Polling can miss intermediate states (a short job may be found already finished), so forward jumps are
# allowed; moving back is not, except that a paused job resumes and a running one can be requeued after a
# provider restarts it.
_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset(
        {JobStatus.VALIDATING, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED} | TERMINAL_STATUSES
    ),
    JobStatus.VALIDATING: frozenset(
        {JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED} | TERMINAL_STATUSES
    ),
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.PAUSED} | TERMINAL_STATUSES),
    JobStatus.RUNNING: frozenset({JobStatus.QUEUED, JobStatus.PAUSED} | TERMINAL_STATUSES),
    JobStatus.PAUSED: frozenset({JobStatus.QUEUED, JobStatus.RUNNING} | TERMINAL_STATUSES),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def can_transition(current: JobStatus, new: JobStatus) -> bool:
    return new == current or new in _TRANSITIONS[current]


def check_transition(current: JobStatus, new: JobStatus) -> None:
    if not can_transition(current, new):
        raise InvalidTransitionError(f"a job cannot go from {current.value} to {new.value}")


class EventKind(StrEnum):
    STATUS = "status"
    LOG = "log"
    METRIC = "metric"
    CHECKPOINT = "checkpoint"


class Event(BaseModel):
    """One thing that happened to a job. `seq` orders a job's events; metrics carry `data` (step, loss...)."""

    model_config = ConfigDict(extra="forbid")

    seq: int = 0
    time: datetime = Field(default_factory=utcnow)
    kind: EventKind = EventKind.LOG
    level: Literal["debug", "info", "warning", "error"] = "info"
    message: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class ModelArtifact(BaseModel):
    """What a job produced, and how to call it.

    `model_id` is what the backend's `generate()` needs: a provider's model name, or a local path.
    `kind` says whether it is an adapter over `base_model`, merged/full weights, a provider-hosted model,
    or the base model itself (used to score the base in an A/B).
    """

    model_config = ConfigDict(extra="forbid")

    provider: str
    model_id: str
    kind: Literal["adapter", "merged", "full", "provider_model", "base"]
    base_model: str
    adapter_type: str | None = None
    path: str | None = None
    merged_path: str | None = None
    files: list[str] = Field(default_factory=list)
    metrics: dict[str, float] = Field(
        default_factory=dict,
        description="training summary the registry stores with the model: first_loss, final_loss, ...",
    )
    base_model_retires: date | None = Field(
        None, description="when the provider retires the base model (the fine-tune stops working then)"
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="the backend's own details, shown but never read by the core"
    )
    created_at: datetime = Field(default_factory=utcnow)

    @classmethod
    def base(cls, provider: str, base_model: str) -> ModelArtifact:
        return cls(provider=provider, model_id=base_model, kind="base", base_model=base_model)


class RecurringCost(BaseModel):
    """A cost that keeps running after training (hosting a deployment, storing a model), shown apart from
    the one-off training price: per hour or per month, with its source and the date it was seen."""

    model_config = ConfigDict(extra="forbid")

    what: str
    price: float
    unit: Literal["hour", "month"]
    currency: str = "USD"
    source: str | None = None
    seen: date | None = None

    def __str__(self) -> str:
        return f"{self.what}: {self.price:,.2f} {self.currency} per {self.unit}"


class Cost(BaseModel):
    """Quoted and actual cost of a job, with where the prices came from."""

    model_config = ConfigDict(extra="forbid")

    currency: str = "USD"
    quoted: float | None = None
    provider_quote: float | None = Field(None, description="the provider's own estimate, where it gives one")
    actual: float | None = Field(None, description="trained tokens (or billed time) at the catalog price")
    provider_actual: float | None = Field(None, description="what the provider says it billed, where it says")
    billable_tokens: int | None = None
    trained_tokens: int | None = None
    source: str | None = None
    notes: list[str] = Field(default_factory=list)
    recurring: list[RecurringCost] = Field(
        default_factory=list,
        description="what the result costs to keep (hosting, storage), apart from training",
    )

    @property
    def difference(self) -> float | None:
        """Actual minus quoted: how far off the quote was."""
        if self.actual is None or self.quoted is None:
            return None
        return round(self.actual - self.quoted, 6)


class Job(BaseModel):
    """A job as the registry records it."""

    model_config = ConfigDict(extra="forbid")

    id: str
    project: str = Field("default", description="the project it belongs to (a service's team)")
    name: str
    provider: str
    spec: JobSpec
    status: JobStatus = JobStatus.PENDING
    provider_status: str | None = None
    provider_job_id: str | None = None
    provider_ref: dict[str, Any] | None = None
    event_cursor: str | None = Field(None, description="where the last poll of the backend's events ended")
    data: dict[str, Any] | None = Field(
        None, description="the validated data given to the backend (DataBundle)"
    )
    progress: float | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    artifact: ModelArtifact | None = None
    cost: Cost | None = None
    error: str | None = None
    dataset_fingerprint: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @field_validator("spec", mode="before")
    @classmethod
    def _stored_spec(cls, value: Any) -> Any:
        """A spec as stored or sent (any known spec_version), upgraded to the current shape."""
        return read_spec(value) if isinstance(value, dict) else value

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or utcnow()
        return max(0.0, (end - self.started_at).total_seconds())
