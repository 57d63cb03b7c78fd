"""Asking a running job to change course: cancel, pause, resume. Each asks the job's backend, notes the
request in the job's log and looks again; a job not yet submitted is cancelled here."""

from __future__ import annotations

from anytune.errors import CapabilityError, UsageError
from anytune.hookspecs import ProviderRef
from anytune.jobs import Event, EventKind, Job, JobStatus
from anytune.pipeline.context import Pipeline
from anytune.pipeline.derive import restart_from_checkpoint
from anytune.pipeline.follow import refresh
from anytune.pipeline.submit import resubmit


def cancel(p: Pipeline, job_id: str) -> Job:
    job = p.registry.get_job(job_id)
    if job.status.terminal:
        return job
    if job.provider_ref is None:
        p.note(job.id, [Event(kind=EventKind.STATUS, message="cancelled before it was submitted")])
        return p.registry.update_job(job.id, status=JobStatus.CANCELLED)
    return ask_backend(p, job, "cancel", "supports_cancel")


def pause(p: Pipeline, job_id: str) -> Job:
    job = refresh(p, job_id)
    if job.status not in (JobStatus.RUNNING, JobStatus.QUEUED) or job.provider_ref is None:
        raise UsageError(f"job {job.id} is {job.status.value}; only a running job can be paused")
    return ask_backend(p, job, "pause", "supports_pause")


def resume(p: Pipeline, job_id: str) -> Job:
    """Make a job go again: resume a paused job; restart a failed or cancelled one from its last checkpoint
    (as a new job, where the backend can); or finish submitting a job that was recorded but never confirmed
    (the process died in between), asking the backend first for the job it may already have created."""
    job = refresh(p, job_id)
    if job.status is JobStatus.PAUSED and job.provider_ref is not None:
        return ask_backend(p, job, "resume", None)
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED) and job.provider_ref is not None:
        return restart_from_checkpoint(p, job)
    if job.status is not JobStatus.PENDING or job.provider_ref is not None:
        raise UsageError(
            f"job {job.id} is {job.status.value} and was submitted; there is nothing to resume",
            hint="`anytune jobs logs -f` follows a running job",
        )
    return resubmit(p, job)


def ask_backend(p: Pipeline, job: Job, verb: str, capability: str | None) -> Job:
    """Ask the job's backend to `verb` (pause, resume, cancel) it, note that in the log, and look again."""
    backend = p.backend(job.provider)
    if capability and not getattr(backend.capabilities(), capability):
        raise CapabilityError(f"{job.provider} cannot {verb} jobs")
    getattr(backend, verb)(ProviderRef.model_validate(job.provider_ref))
    p.note(job.id, [Event(kind=EventKind.STATUS, message=f"{verb} requested")])
    return refresh(p, job.id)
