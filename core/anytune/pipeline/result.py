"""Stage 6, follow, its second half: what one poll of the backend means for the job record. The status
change if the status machine allows it (a refused one becomes a warning event), progress, metrics, cost, the
error of a failed job, and for a succeeded job its artifact, fetched from the backend once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from anytune.hookspecs import Backend, ProviderRef, Snapshot
from anytune.jobs import Cost, Event, Job, JobStatus, can_transition


@dataclass
class PollResult:
    """A poll read against the job as recorded: the new status (None: unchanged), the events to append and
    the job's fields to update (`Registry.record_poll` stores them in one transaction)."""

    status: JobStatus | None
    events: list[Event]
    updates: dict[str, Any] = field(default_factory=dict)


def read_poll(job: Job, snap: Snapshot, backend: Backend, ref: ProviderRef) -> PollResult:
    updates: dict[str, Any] = {"provider_status": snap.provider_status}
    if snap.progress is not None:
        updates["progress"] = snap.progress
    if snap.metrics:
        updates["metrics"] = {**job.metrics, **snap.metrics}
    new_status = None
    events = list(snap.events)
    if snap.status != job.status:
        if can_transition(job.status, snap.status):
            new_status = snap.status
        else:
            message = (
                f"ignored a status change from {job.status.value} to {snap.status.value} "
                f"(provider said {snap.provider_status!r})"
            )
            events.append(Event(level="warning", message=message))
    status_after = new_status or job.status
    if snap.error and status_after is JobStatus.FAILED:
        updates["error"] = snap.error
    cost = _cost(job, snap)
    if cost is not None:
        updates["cost"] = cost
    if status_after is JobStatus.SUCCEEDED and job.artifact is None:
        updates["artifact"] = backend.result(ref)
    return PollResult(new_status, events, updates)


def _cost(job: Job, snap: Snapshot) -> Cost | None:
    """The job's cost with what the provider said it trained and billed, where it said anything."""
    known = {
        "trained_tokens": snap.trained_tokens,
        "actual": snap.cost,
        "provider_actual": snap.provider_cost,
    }
    known = {k: v for k, v in known.items() if v is not None}
    if not known:
        return None
    return (job.cost or Cost()).model_copy(update=known)
