"""/v1/jobs: create (idempotent with an Idempotency-Key), list, read, cancel, pause, resume, continue,
migrate, and a job's events (JSON, or server-sent events while it runs)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from anytune.client.inprocess import InProcessClient
from anytune.errors import UsageError
from anytune.jobs import new_job_id
from anytune.registry import Registry
from anytune.registry.access import claim_key, complete_key, release_key
from anytune.service.common import (
    API_PREFIX,
    INT_MAX,
    SPEC_BODY,
    ContinueBody,
    MigrateBody,
    check_data_paths,
    scope,
    spec_of,
    spec_paths,
    the_client,
    the_registry,
)
from anytune.service.observe import event_stream

router = APIRouter(prefix=f"{API_PREFIX}/jobs")


@router.post("", status_code=201, dependencies=[scope("submit")], openapi_extra=SPEC_BODY)
async def create_job(
    request: Request,
    idempotency_key: str | None = Header(None),
    client: InProcessClient = Depends(the_client),
    registry: Registry = Depends(the_registry),
) -> JSONResponse:
    """Check, record and submit a job (201 with the job); the same Idempotency-Key and body give the
    same job (200)."""
    if idempotency_key is not None and not (
        0 < len(idempotency_key) <= 200 and idempotency_key.isprintable()
    ):
        raise UsageError(
            "the Idempotency-Key must be 1 to 200 printable characters", hint="a UUID is a good key"
        )
    spec = await spec_of(request)
    check_data_paths(spec_paths(spec))
    body = await request.body()

    def create() -> JSONResponse:  # on a worker thread: checking and submitting take seconds
        job_id = new_job_id()
        if idempotency_key:
            existing = claim_key(registry, idempotency_key, body, job_id)
            if existing is not None:
                return JSONResponse(client.get_job(existing).model_dump(mode="json"), 200)
        try:
            job = client.submit(spec, job_id=job_id)
        except BaseException:
            if idempotency_key:
                release_key(registry, idempotency_key)
            raise
        if idempotency_key:
            complete_key(registry, idempotency_key, job.id)
        return JSONResponse(job.model_dump(mode="json"), 201)

    # the event loop stays free for every other request meanwhile (p99 latency under load)
    return await run_in_threadpool(create)


@router.get("", dependencies=[scope("read")])
def list_jobs(
    status: str | None = None,
    provider: str | None = None,
    active: bool | None = Query(None, description="only jobs that have not ended (or only those that have)"),
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    client: InProcessClient = Depends(the_client),
) -> dict[str, Any]:
    """Newest first; `cursor` is the last job id of the previous page (`next_cursor`)."""
    jobs = client.list_jobs(status=status, provider=provider, active=active, limit=limit + 1, after=cursor)
    page = jobs[:limit]
    more = len(jobs) > limit
    return {"jobs": [j.model_dump(mode="json") for j in page], "next_cursor": page[-1].id if more else None}


@router.get("/{job_id}", dependencies=[scope("read")])
def get_job(job_id: str, client: InProcessClient = Depends(the_client)) -> dict[str, Any]:
    return client.get_job(job_id).model_dump(mode="json")  # type: ignore[no-any-return]


@router.post("/{job_id}/cancel", dependencies=[scope("submit")])
def cancel_job(job_id: str, client: InProcessClient = Depends(the_client)) -> dict[str, Any]:
    return client.cancel(job_id).model_dump(mode="json")  # type: ignore[no-any-return]


@router.post("/{job_id}/pause", dependencies=[scope("submit")])
def pause_job(job_id: str, client: InProcessClient = Depends(the_client)) -> dict[str, Any]:
    return client.pause(job_id).model_dump(mode="json")  # type: ignore[no-any-return]


@router.post("/{job_id}/resume", dependencies=[scope("submit")])
def resume_job(job_id: str, client: InProcessClient = Depends(the_client)) -> dict[str, Any]:
    """Resume a paused job, restart a failed or cancelled one from its checkpoint (a new job), or finish
    submitting one that was recorded but never confirmed."""
    return client.resume(job_id).model_dump(mode="json")  # type: ignore[no-any-return]


@router.post("/{job_id}/continue", status_code=201, dependencies=[scope("submit")])
def continue_job(
    job_id: str, body: ContinueBody | None = None, client: InProcessClient = Depends(the_client)
) -> dict[str, Any]:
    """A new job training further from a finished job's checkpoint (the last, or `step`)."""
    body = body or ContinueBody()
    job = client.continue_job(job_id, step=body.step, overrides=body.overrides)
    return job.model_dump(mode="json")  # type: ignore[no-any-return]


@router.post("/{job_id}/migrate", status_code=201, dependencies=[scope("submit")])
def migrate_job(
    job_id: str, body: MigrateBody, client: InProcessClient = Depends(the_client)
) -> dict[str, Any]:
    """The same job on another provider (`to`), as a new job linked to it."""
    job = client.migrate(job_id, body.to, overrides=body.overrides)
    return job.model_dump(mode="json")  # type: ignore[no-any-return]


@router.get(
    "/{job_id}/events",
    dependencies=[scope("read")],
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
def job_events(
    job_id: str,
    request: Request,
    after: int = Query(0, ge=0, le=INT_MAX),
    stream: bool = False,
    last_event_id: str | None = Header(None),
    client: InProcessClient = Depends(the_client),
) -> Any:
    """The job's events after `after` (their `seq`). With `stream=true` (or `Accept: text/event-stream`)
    they come as server-sent events, each with its seq as the event id, until the job has ended and
    every event is sent; a reconnecting client's `Last-Event-ID` resumes after the last one it got."""
    client.get_job(job_id)  # 404 before a stream starts
    if last_event_id and last_event_id.strip().isdigit():
        after = max(after, int(last_event_id))
    if not stream and "text/event-stream" not in request.headers.get("accept", ""):
        return [e.model_dump(mode="json") for e in client.events(job_id, after=after, limit=1000)]
    return StreamingResponse(
        event_stream(client, job_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
