"""Stage 5, submit: only now is the backend called, with anytune's job id and the prepared data. It uploads
and creates, never converts or checks again, and tags the provider's job with the id so that a crash can be
resumed without a second paid job (`resubmit` asks `find_existing` first)."""

from __future__ import annotations

from typing import Any

from anytune.api import Preflight
from anytune.errors import AnytuneError, BackendError, UsageError
from anytune.hookspecs import Backend, DataBundle, PreparedData, SubmitRequest
from anytune.jobs import Cost, Event, EventKind, Job, JobStatus
from anytune.pipeline.context import Pipeline
from anytune.pipeline.datarefs import datasets_here
from anytune.pipeline.follow import refresh
from anytune.pipeline.preflight import preflight
from anytune.pipeline.prepare import data_refusal, mapped_prepare
from anytune.pipeline.record import record
from anytune.spec import JobSpec


def submit_spec(p: Pipeline, spec: JobSpec, *, job_id: str | None = None) -> Job:
    """Check, record and submit: the walk up to the provider's acceptance."""
    return submit_preflight(p, preflight(p, spec), job_id=job_id)


QUEUED = "queued for a worker"


def submit_preflight(p: Pipeline, pre: Preflight, *, job_id: str | None = None) -> Job:
    """Record a job that passed its preflight, then submit it (or leave that to a worker: `defer_submit`)."""
    job = record(p, pre, job_id=job_id)
    if p.defer_submit:
        p.note(
            job.id, [Event(kind=EventKind.STATUS, message=f"{QUEUED}: the worker that takes it submits it")]
        )
        return p.registry.update_job(job.id, provider_status=QUEUED)
    request = SubmitRequest(job_id=job.id, spec=pre.spec, prepared=pre.prepared)
    return submit(p, job, pre.backend, request)


def submit(p: Pipeline, job: Job, backend: Backend, request: SubmitRequest) -> Job:
    """Hand a recorded job to its backend. A failing submit leaves a `failed` job with the reason; an
    outage right after the provider accepted it leaves the job to the follow, which rides it out."""
    try:
        ref = backend.submit(request)
    except Exception as exc:
        error = (
            exc
            if isinstance(exc, AnytuneError)
            else BackendError(f"{job.provider} failed to start the job: {type(exc).__name__}: {exc}")
        )
        if isinstance(error, BackendError) and error.retryable:
            raise _not_yet(p, job, error) from exc
        p.registry.update_job(job.id, status=JobStatus.FAILED, error=error.message)
        p.note(
            job.id, [Event(kind=EventKind.STATUS, level="error", message=f"submit failed: {error.message}")]
        )
        raise error from exc
    updates: dict[str, Any] = {"provider_ref": ref.model_dump(mode="json"), "provider_job_id": ref.id}
    if ref.provider_quote is not None:
        cost = job.cost or Cost()
        updates["cost"] = cost.model_copy(update={"provider_quote": ref.provider_quote})
        p.note(
            job.id,
            [Event(message=f"{job.provider}'s own estimate: {ref.provider_quote:.4f} {cost.currency}")],
        )
    p.registry.update_job(job.id, **updates)
    try:
        return refresh(p, job.id)
    except BackendError as exc:
        if not exc.retryable:
            raise
        return p.registry.get_job(job.id)  # submitted; the follow will ride out the outage


def _not_yet(p: Pipeline, job: Job, error: BackendError) -> BackendError:
    """A submit the provider put off (rate limited, an outage that outlasted the retries): the job stays
    `pending`, resumable, instead of failing; a resume asks the provider first for a job it may have made."""
    when = f" in {error.retry_after:.0f} s" if error.retry_after else " later"
    p.note(
        job.id,
        [
            Event(
                kind=EventKind.STATUS,
                level="warning",
                message=f"not submitted yet: {error.message}; the job stays pending, to resume{when}",
            )
        ],
    )
    told = f"{error.hint}; " if error.hint and error.retry_after is None else ""
    return BackendError(
        f"{job.provider} did not take job {job.id} yet: {error.message}",
        hint=f"{told}the job is recorded and nothing was paid for: `anytune jobs resume {job.id}`{when} "
        "submits it (a server's worker tries again by itself)",
        retryable=True,
        provider_message=error.provider_message,
        status=error.status,
        retry_after=error.retry_after,
    )


def resubmit(p: Pipeline, job: Job) -> Job:
    """Finish submitting a job recorded before a crash: adopt the provider's job if an earlier attempt made
    it (`find_existing`), else submit it now, preparing the data again if its files left the cache."""
    if job.data is None:
        raise UsageError(f"job {job.id} has no recorded data to resubmit")
    backend = p.backend(job.provider)
    request = SubmitRequest(job_id=job.id, spec=job.spec, prepared=recorded_data(p, job, backend))
    existing = backend.find_existing(request)
    if existing is not None:
        p.note(job.id, [Event(kind=EventKind.STATUS, message=f"found the job on {job.provider}")])
        p.registry.update_job(
            job.id, provider_ref=existing.model_dump(mode="json"), provider_job_id=existing.id
        )
        return refresh(p, job.id)
    # a resubmit cut short (a crash while uploading) is tried again: each attempt is its own event
    before = sum(e.message.startswith("resubmitting to") for e in p.registry.events(job.id, kind="status"))
    attempt = f" (attempt {before + 1})" if before else ""
    p.note(job.id, [Event(kind=EventKind.STATUS, message=f"resubmitting to {job.provider}{attempt}")])
    return submit(p, job, backend, request)


def recorded_data(p: Pipeline, job: Job, backend: Backend) -> PreparedData:
    """The prepared data recorded with a job; prepared again (same content, same file names) where the files
    left the cache, or where the job was recorded before prepare() existed. On another machine than the one
    that recorded it (a worker), uploaded datasets are read from the storage layer there."""
    assert job.data is not None
    if "provider" in job.data:
        prepared = PreparedData.model_validate(job.data)
        if not prepared.missing_files():
            return prepared
        bundle = prepared.data
    else:
        bundle = DataBundle.model_validate(job.data)
    bundle = datasets_here(p, job.spec, bundle)
    prepared = mapped_prepare(backend, job.spec, bundle)
    if prepared.errors:
        raise data_refusal(job.provider, prepared.errors)
    return prepared
