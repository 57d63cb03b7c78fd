"""Stage 4, record: the job row is written (`pending`) with its quote, data fingerprint and prepared data,
before the provider is called. From here on nothing is lost: a crash before the submit leaves a pending
job that `resume` finishes, without a second paid job."""

from __future__ import annotations

from anytune.api import Preflight
from anytune.jobs import Cost, Event, EventKind, Job
from anytune.pipeline.context import Pipeline


def record(p: Pipeline, pre: Preflight, *, job_id: str | None = None) -> Job:
    """`job_id`: the id to record it under (the service reserves one with a request's Idempotency-Key)."""
    quote = pre.quote
    cost = Cost(
        quoted=quote.price,
        currency=quote.currency,
        billable_tokens=quote.billable_tokens,
        source=quote.price_source,
        recurring=quote.recurring,
    )
    job = p.registry.create_job(
        pre.spec,
        job_id=job_id,
        cost=cost,
        dataset_fingerprint=pre.data.train.fingerprint,
        data=pre.prepared.model_dump(mode="json"),
    )
    p.note(
        job.id,
        [
            Event(kind=EventKind.STATUS, message=f"recorded; submitting to {pre.spec.provider}"),
            *(Event(level="warning", message=w) for w in pre.warnings),
        ],
    )
    return job
