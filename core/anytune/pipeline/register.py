"""Stage 7, register: a succeeded job's artifact becomes an immutable model version named after the job,
with its lineage (job, spec, data fingerprint, cost, metrics). Once per job, whichever process gets there
first (`Registry.register_result`); asked again, it returns that version. With a shared storage
(`ANYTUNE_STORAGE_URL`), the files of a version trained here are put there, so that a server on another
machine can hand them out."""

from __future__ import annotations

import os

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
    version = p.registry.register_result(job.id, job.name)
    if version is not None and os.environ.get("ANYTUNE_STORAGE_URL"):
        from anytune.pipeline.archive import share

        share(version)  # trained on this machine: its files go where every machine can pull them
    return version
