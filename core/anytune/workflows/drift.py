"""Drift: does a model still do as well on new data as on the data it was first judged on?"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from anytune.errors import UsageError
from anytune.evaluation.stats import permutation_test

if TYPE_CHECKING:
    from anytune.api import ClientAPI, EvalTarget
    from anytune.evaluation.runner import EvalResult
    from anytune.registry.records import EvaluationRecord


class DriftNumbers(BaseModel):
    """The permutation test on the first metric's per-example scores."""

    baseline_mean: float
    new_mean: float
    baseline_n: int
    new_n: int
    delta: float
    p_value: float
    alpha: float
    tolerance: float
    drifted: bool


class DriftReport(BaseModel):
    """A drift check's answer: which evaluations were compared, the numbers, and the verdict in words."""

    model: str
    metric: str
    baseline_evaluation: int
    baseline_data: str
    baseline_fingerprint: str
    new_data: str
    new_fingerprint: str
    test: DriftNumbers
    statement: str
    verdict: str


def _stored(client: ClientAPI, target: EvalTarget) -> list[EvaluationRecord]:
    if target.model is not None:
        rows = client.evaluations(model_name=target.model.name, model_version=target.model.version)
    elif target.job is not None:
        rows = client.evaluations(job_id=target.job.id, subject="fine-tuned")
    else:
        rows = []
    return [r for r in rows if r.subject != "base"]


def drift_check(
    client: ClientAPI,
    target: EvalTarget,
    result: EvalResult,
    against: str,
    alpha: float = 0.05,
    tolerance: float = 0.0,
) -> DriftReport:
    """Compare the just-stored evaluation with a baseline evaluation of the same model.

    `against`: `baseline` (the model's first evaluation on other data), a data fingerprint, or an evaluation
    id. The test is on the first metric's per-example scores."""
    subject = result.subjects[-1]
    metric = next(iter(subject.metrics))
    new_scores = subject.scores.get(metric)
    if new_scores is None:
        raise UsageError(
            f"drift checks need a per-example metric; {metric} is computed over the whole set",
            hint="put a per-example metric first, e.g. --metrics exact_match",
        )
    candidates = [
        r
        for r in _stored(client, target)
        if r.dataset_fingerprint != result.dataset_fingerprint and r.scores(metric)
    ]
    if against == "baseline":
        baseline = candidates[0] if candidates else None
    elif against.isdigit():
        baseline = next((r for r in candidates if r.id == int(against)), None)
    else:
        baseline = next((r for r in candidates if r.dataset_fingerprint.startswith(against)), None)
    if baseline is None:
        raise UsageError(
            f"{target.label}: no stored evaluation to compare with ({against}) that has per-example {metric} scores",
            hint=f"evaluate it on the reference data first: anytune eval {target.label} --data REFERENCE.jsonl",
        )
    test = permutation_test(
        baseline.scores(metric) or [], new_scores, metric=metric, alpha=alpha, tolerance=tolerance
    )
    return DriftReport(
        model=target.label,
        metric=metric,
        baseline_evaluation=baseline.id,
        baseline_data=baseline.dataset_path,
        baseline_fingerprint=baseline.dataset_fingerprint,
        new_data=result.dataset_path,
        new_fingerprint=result.dataset_fingerprint,
        test=DriftNumbers(
            baseline_mean=test.baseline_mean,
            new_mean=test.new_mean,
            baseline_n=test.baseline_n,
            new_n=test.new_n,
            delta=test.delta,
            p_value=test.p_value,
            alpha=alpha,
            tolerance=tolerance,
            drifted=test.drifted,
        ),
        statement=test.statement,
        verdict=test.verdict,
    )
