"""Stage 6, follow: poll the backend, record what changed (`result`), register the model of a succeeded
job (`register`), until the job ends. `follow_loop` is the loop both transports share: in this process it
polls the provider; through a server it reads what the server's workers recorded."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from anytune.errors import BackendError
from anytune.hookspecs import ProviderRef
from anytune.jobs import Event, Job, JobStatus
from anytune.pipeline.context import Pipeline
from anytune.pipeline.register import register
from anytune.pipeline.result import read_poll

if TYPE_CHECKING:
    from anytune.api import ClientAPI

OUTAGE_FIRST_PAUSE_S = 0.5  # while a provider (or the server) cannot be reached, polls back off from this...
OUTAGE_MAX_PAUSE_S = 60.0  # ...to this


def refresh(p: Pipeline, job_id: str) -> Job:
    """Ask the backend where the job is; record new events, status, metrics, and the artifact.

    Safe to call from several processes at once: a poll whose events another process already recorded is
    dropped (see `Registry.record_poll`), and the model is registered once (`Registry.register_result`)."""
    job = p.registry.get_job(job_id)
    finished = job.status.terminal and (job.status is not JobStatus.SUCCEEDED or job.artifact is not None)
    if job.provider_ref is None or finished:
        register(p, job)  # a crash may have come between the artifact and its registration
        return job
    backend = p.backend(job.provider)
    ref = ProviderRef.model_validate(job.provider_ref)
    snap = backend.poll(ref, job.event_cursor)
    if snap.poll_after is not None:
        p.poll_after[job.id] = snap.poll_after
    found = read_poll(job, snap, backend, ref)
    recorded = p.registry.record_poll(
        job.id,
        cursor_before=job.event_cursor,
        cursor_after=snap.cursor,
        events=found.events,
        status=found.status,
        **found.updates,
    )
    if recorded is None:  # another process recorded this poll first
        job = p.registry.get_job(job.id)
    else:
        job, stored = recorded
        p.tell(job.id, stored, job.status)
    register(p, job)
    return job


def follow_loop(
    client: ClientAPI,
    job_id: str,
    *,
    interval: float | None = None,
    timeout: float | None = None,
    on_update: Callable[[Job, list[Event]], None] | None = None,
    on_outage: Callable[[Job, Event], None] | None = None,
) -> Job:
    """Look at the job (`client.refresh`) until it ends or `timeout` seconds pass; `on_update` sees each
    state and the events recorded since the last look.

    Looks are paced by `client.poll_delay` unless `interval` fixes the pause. A provider or server that
    cannot be reached (after its own retries) does not end the follow: the job goes on there. The outage is
    told once to `on_outage` (in this process: a warning event on the job), looks back off up to a minute,
    and the outage's end is told too. Errors that retrying cannot mend (a refused key, an unknown job)
    still raise."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last_seq, failures = 0, 0
    job: Job | None = None
    while True:
        try:
            job = client.refresh(job_id)
        except BackendError as exc:
            if not exc.retryable:
                raise
            failures += 1
            job = job or client.get_job(job_id)
            if failures == 1 and on_outage is not None:
                message = f"{job.provider} unreachable, still following: {exc.message}"
                on_outage(job, Event(level="warning", message=message))
        else:
            if failures and on_outage is not None:
                message = f"{job.provider} answers again (after {failures} failed poll(s))"
                on_outage(job, Event(message=message))
            failures = 0
        events: list[Event] = []
        if failures == 0 or on_outage is not None:  # a server that is away has no events to give
            events = client.events(job.id, after=last_seq)
            if events:
                last_seq = events[-1].seq
        if on_update is not None:
            on_update(job, events)
        if job.status.terminal or (deadline is not None and time.monotonic() > deadline):
            return job
        pause = interval if interval is not None else client.poll_delay(job.id)
        if failures:
            pause = min(OUTAGE_MAX_PAUSE_S, max(pause, OUTAGE_FIRST_PAUSE_S) * 2 ** (failures - 1))
        time.sleep(pause)
