"""Stage 8, evaluate: the same held-out prompts through each model's own backend (`generate()`), the same
metrics on the answers, with intervals and paired comparisons (`anytune.evaluation`), stored with the data's
fingerprint so later comparisons use only like with like. A job's own evaluation after success is noted in
its log with its scores (what a client following the job through a server reads)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anytune.api import EvalTarget, no_progress
from anytune.errors import AnytuneError, UsageError
from anytune.evaluation.metrics import MetricDef, resolve_metrics
from anytune.evaluation.runner import EvalResult, evaluate
from anytune.graders.spec import as_one, grader_files
from anytune.hookspecs import Backend
from anytune.jobs import Cost, Event, JobStatus, ModelArtifact
from anytune.pipeline.context import Pipeline
from anytune.pipeline.datarefs import local_file
from anytune.pipeline.follow import refresh
from anytune.spec import EvalSpec, JobSpec

Progress = Callable[[str], None]


def resolve_target(p: Pipeline, target: str) -> EvalTarget:
    """A job id (or prefix) or a model reference (NAME, NAME@VERSION, NAME@ALIAS) as something to score."""
    if target.startswith("job-"):
        job = refresh(p, target)
        if job.status is not JobStatus.SUCCEEDED or job.artifact is None:
            raise UsageError(
                f"job {job.id} has not succeeded (status: {job.status.value}); nothing to evaluate"
            )
        models = p.registry.models_for_job(job.id)
        model = models[-1] if models else None
        return EvalTarget(target, job.provider, job.artifact, job.spec.model_for(job.provider), job, model)
    model = p.registry.get_model(target)
    job = p.registry.get_job(model.job_id) if model.job_id else None
    return EvalTarget(model.ref, model.provider, model.artifact, model.base_model, job, model)


def resolve_judge(p: Pipeline, ref: str) -> tuple[Backend, ModelArtifact]:
    """A judge model: a registered model or job, or `provider:model` for a provider's own model."""
    provider, sep, model = ref.partition(":")
    if sep and "@" not in ref and provider in p.plugins.backend_names():
        return p.backend(provider), ModelArtifact.base(provider, model)
    target = resolve_target(p, ref)
    return p.backend(target.provider), target.artifact


def metric_defs(p: Pipeline, spec: EvalSpec, job_spec: JobSpec | None = None) -> dict[str, MetricDef]:
    """The evaluation's metrics in order: built-in and plugins' ones by name, and graders (the evaluation's
    own, and `grader` for an RFT job's: a model is scored by the definition it was trained on)."""
    from anytune.graders import Grader

    graders = dict(spec.graders)
    if "grader" in spec.metrics and "grader" not in graders:
        own = getattr(job_spec.method, "grader", None) if job_spec is not None else None
        if own is None:
            raise UsageError(
                "metric 'grader' is an RFT job's own grader, and there is none here",
                hint="name a grader: evaluation.metrics: [{grader: {...}}], or `anytune eval --grader FILE`",
            )
        graders["grader"] = as_one(own)
    p.may_read([f for g in graders.values() for f in grader_files(g)])
    named = resolve_metrics([m for m in spec.metrics if m not in graders], p.plugins.metrics())
    return {
        name: named[name] if name in named else MetricDef(name, item_example=Grader(graders[name]).score)
        for name in spec.metrics
    }


def evaluate_job(
    p: Pipeline, job_id: str, spec: EvalSpec | None = None, on_progress: Progress = no_progress
) -> EvalResult:
    """A succeeded job's model (and by default its base model) scored on held-out data; the scores, or why
    there are none, noted in the job's log."""
    job = p.registry.get_job(job_id)
    try:
        result = evaluate_targets(p, [job.id], spec, on_progress=on_progress)
    except AnytuneError as exc:
        failed = Event(level="error", message=f"evaluation failed: {exc.message}", data={"evaluation": None})
        p.note(job.id, [failed], job.status)
        raise
    shown = result.model_copy(update={"examples": result.examples[:3], "references": []})
    p.note(
        job.id, [Event(message="evaluated", data={"evaluation": shown.model_dump(mode="json")})], job.status
    )
    return result


def evaluate_targets(
    p: Pipeline,
    targets: list[str],
    spec: EvalSpec | None = None,
    *,
    changes: dict[str, Any] | None = None,
    on_progress: Progress = no_progress,
) -> EvalResult:
    """Score models from any provider on the same held-out data, with the same metrics, each through its own
    backend's `generate()`; by default the first one's base model too, as the A in an A/B. `changes` (EvalSpec
    fields) apply on top of `spec`, or of the first job's own evaluation settings."""
    resolved = [resolve_target(p, t) for t in targets]
    first = resolved[0]
    spec = spec or (first.job.spec.evaluation if first.job else None) or EvalSpec()
    if changes:
        spec = EvalSpec.model_validate({**spec.model_dump(), **changes})
    data = spec.data or (first.job.spec.data.test if first.job else None)
    if not data:
        raise UsageError(
            f"{first.label}: no evaluation data",
            hint="pass --data FILE, or set evaluation.data or data.test in the job file",
        )
    p.may_read([data])
    named, data = data, local_file(p, data)  # an uploaded dataset keeps its name in the result
    single_job = len(resolved) == 1 and first.label.startswith("job-")
    labels = {("fine-tuned" if single_job else t.label): t for t in resolved}
    subjects: dict[str, tuple[Backend, ModelArtifact]] = {}
    if spec.compare_base:
        backend = p.backend(first.provider)
        subjects["base"] = (backend, backend.base_artifact(first.artifact))
    subjects.update({label: (p.backend(t.provider), t.artifact) for label, t in labels.items()})
    metrics = metric_defs(p, spec, first.job.spec if first.job else None)
    judge = resolve_judge(p, spec.judge) if spec.judge else None
    result = evaluate(subjects, data, spec, metrics, on_progress, judge=judge)
    if named != data:
        result.dataset_path = named
    add_serving_costs(p, resolved)
    _store(p, result, labels, first)
    return result


def _store(p: Pipeline, result: EvalResult, labels: dict[str, EvalTarget], first: EvalTarget) -> None:
    """Every subject's scores, with the data's fingerprint, the job and the model version they belong to."""
    for subject in result.subjects:
        t = labels.get(subject.subject)
        p.registry.add_evaluation(
            subject=subject.subject,
            provider=subject.provider,
            model_id=subject.model_id,
            dataset_path=result.dataset_path,
            dataset_fingerprint=result.dataset_fingerprint,
            metrics=subject.metrics,
            n=subject.n,
            job_id=(t.job.id if t and t.job else first.job.id if first.job else None),
            model_name=t.model.name if t and t.model else None,
            model_version=t.model.version if t and t.model else None,
            samples={
                "predictions": subject.predictions,
                "scores": subject.scores,
                "ci": subject.ci,
                "comparisons": [c.model_dump() for c in result.comparisons if subject.subject in (c.a, c.b)],
            },
        )


def add_serving_costs(p: Pipeline, targets: list[EvalTarget]) -> None:
    """What serving each job's model for this evaluation cost (a deployment billed per hour), added to the
    job's actual cost and noted in its log."""
    for t in targets:
        if t.job is None:
            continue
        cost = p.backend(t.provider).serving_cost(t.artifact)
        if not cost:
            continue
        job = p.registry.get_job(t.job.id)
        before = job.cost or Cost()
        note = f"serving for evaluation: {cost:.4f} {before.currency}"
        updated = before.model_copy(
            update={"actual": (before.actual or 0.0) + cost, "notes": [*before.notes, note]}
        )
        p.registry.update_job(job.id, cost=updated)
        p.note(job.id, [Event(message=f"{note} (added to the actual cost)")])
