"""Stage 7, register: a succeeded job's artifact becomes an immutable model version named after the job,
with its lineage (job, spec, data fingerprint, cost, metrics). Once per job, whichever process gets there
first (`Registry.register_result`); asked again, it returns that version."""

from __future__ import annotations

from anytune.jobs import Job, JobStatus
from anytune.pipeline.context import Pipeline
from anytune.registry.records import ModelVersion


def register(p: Pipeline, job: Job) -> ModelVersion | None:
    """The job's model version (registered now if it was not yet); None unless it succeeded with an
    artifact."""
    if job.status is not JobStatus.SUCCEEDED or job.artifact is None:
        return None
    known = p.registry.models_for_job(job.id)  # a read first: a finished job is looked at often
    if known:
        return known[0]
    return p.registry.register_result(job.id, job.name)
