"""New jobs made from finished ones: continue training from a checkpoint, restart a failed or cancelled job
from its last checkpoint, migrate to another provider. The parent stays as it ended; each job's log names
the other. The new job walks every stage like any other (its spec is checked again)."""

from __future__ import annotations

from collections.abc import Sequence

from anytune.errors import CapabilityError, UsageError
from anytune.hookspecs import ProviderRef
from anytune.jobfile import apply_override, spec_from_dict
from anytune.jobs import Event, Job, JobStatus
from anytune.pipeline.context import Pipeline
from anytune.pipeline.follow import refresh
from anytune.pipeline.submit import submit_spec


def continue_job(p: Pipeline, job_id: str, *, step: int | None = None, overrides: Sequence[str] = ()) -> Job:
    """A new job that trains further from a finished job's checkpoint (the last one, or `step`): providers
    that can (Together's `from_checkpoint`) start from the saved weights; the new job records its parent in
    `provider_options.<provider>.from_checkpoint`."""
    parent = refresh(p, job_id)
    if parent.status is not JobStatus.SUCCEEDED or not parent.provider_job_id:
        raise UsageError(f"job {parent.id} is {parent.status.value}; only a succeeded job can be continued")
    if not p.backend(parent.provider).capabilities().supports_continue:
        raise CapabilityError(f"{parent.provider} cannot continue training from a checkpoint")
    point = parent.provider_job_id + (f":{step}" if step is not None else "")
    job = derived_job(
        p, parent, "from_checkpoint", point, name=f"{parent.name}-continued", overrides=overrides
    )
    p.note(job.id, [Event(message=f"continues {parent.id} from {point}")])
    return job


def migrate(p: Pipeline, job_id: str, to: str, *, overrides: Sequence[str] = ()) -> Job:
    """The same job (data, method, hyperparameters, evaluation) on another provider, as a new job: for
    moving off a provider that closes (OpenAI takes no new fine-tuning jobs after 2027-01-06; Azure OpenAI
    goes on). The new job's model registers as a new version of the same model name."""
    parent = refresh(p, job_id)
    if parent.status.active:
        raise UsageError(
            f"job {parent.id} is {parent.status.value}; migrate a finished or failed job",
            hint=f"`anytune jobs cancel {parent.id}` first, or wait for it to end",
        )
    if to == parent.provider:
        raise UsageError(f"job {parent.id} already runs on {to}", hint="`anytune jobs resume` or `continue`")
    job = derived_job(p, parent, provider=to, overrides=overrides)
    p.note(job.id, [Event(message=f"migrated from {parent.id} on {parent.provider}")])
    p.note(parent.id, [Event(message=f"migrated to {job.id} on {to}")])
    return job


def restart_from_checkpoint(p: Pipeline, job: Job) -> Job:
    """A failed or cancelled job, trained further from its last checkpoint: a new job (the old one stays as
    it ended), whose spec names the checkpoint in `provider_options.<provider>.resume_from`."""
    backend = p.backend(job.provider)
    if not backend.capabilities().supports_resume:
        raise CapabilityError(
            f"{job.provider} cannot restart a {job.status.value} job from a checkpoint",
            hint="submit the job again with `anytune run`",
        )
    point = backend.resume_point(ProviderRef.model_validate(job.provider_ref))
    if point is None:
        raise UsageError(
            f"job {job.id} ({job.status.value}) saved no checkpoint to resume from",
            hint="provider_options.local.checkpoint_steps sets how often checkpoints are saved",
        )
    new = derived_job(p, job, "resume_from", point)
    p.note(new.id, [Event(message=f"resumes {job.id} ({job.status.value}) from {point}")])
    p.note(job.id, [Event(message=f"resumed as {new.id} from {point}")])
    return new


def derived_job(
    p: Pipeline,
    parent: Job,
    option: str | None = None,
    value: str | None = None,
    *,
    name: str | None = None,
    provider: str | None = None,
    overrides: Sequence[str] = (),
) -> Job:
    """Submit a new job with `parent`'s spec, `provider_options.<provider>.<option> = value`, another provider
    if given, and the overrides; the parent stays as it is."""
    raw = parent.spec.model_dump(mode="json", exclude_none=True)
    if option is not None:
        raw.setdefault("provider_options", {}).setdefault(parent.provider, {})[option] = value
    if provider is not None:
        raw["provider"] = provider
    if name:
        raw["name"] = name
    for override in overrides:
        apply_override(raw, override)
    return submit_spec(p, spec_from_dict(raw, source=f"{option or 'migration'} of {parent.id}"))
