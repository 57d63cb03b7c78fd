"""Running an evaluation: the same prompts through each model's backend, the same metrics on the answers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from anytune.data.records import content_text, prompt_and_target
from anytune.data.validate import RecordValidator, require_valid
from anytune.evaluation.metrics import MetricDef
from anytune.evaluation.stats import Comparison, bootstrap_ci, example_scores, loss_metric, paired
from anytune.hookspecs import Backend, GenerationParams, Messages
from anytune.jobs import ModelArtifact
from anytune.spec import EvalSpec

_KEEP_EXAMPLES = 50


class SubjectResult(BaseModel):
    subject: str
    provider: str
    model_id: str
    metrics: dict[str, float]
    ci: dict[str, tuple[float, float]] = Field(default_factory=dict, description="95% bootstrap intervals")
    n: int
    predictions: list[str] = Field(default_factory=list)
    scores: dict[str, list[float]] = Field(default_factory=dict, description="per example, per metric")


class EvalResult(BaseModel):
    dataset_path: str
    dataset_fingerprint: str
    n: int
    subjects: list[SubjectResult]
    comparisons: list[Comparison] = Field(default_factory=list)
    examples: list[dict[str, object]] = Field(default_factory=list)
    references: list[str] = Field(default_factory=list)

    def subject(self, name: str) -> SubjectResult:
        return next(s for s in self.subjects if s.subject == name)


def load_examples(path: str | Path, limit: int | None = None) -> tuple[list[Messages], list[str], str]:
    """Prompts and references of an eval file (any supervised format), and the file's fingerprint."""
    prompts, references, _items, fingerprint = load_items(path, limit)
    return prompts, references, fingerprint


def load_items(
    path: str | Path, limit: int | None = None
) -> tuple[list[Messages], list[str], list[dict[str, Any]], str]:
    """`load_examples`, and each line as a grader reads it (its fields, its answer as `reference`)."""
    validator = RecordValidator(path, collect_stats=False)
    prompts: list[Messages] = []
    references: list[str] = []
    items: list[dict[str, Any]] = []
    for _, record in validator:
        if limit is None or len(prompts) < limit:
            prompt, target = prompt_and_target(record, validator.format)  # type: ignore[arg-type]
            prompts.append([{**m, "content": content_text(m.get("content"))} for m in prompt])
            references.append(target)
            items.append({**record, "reference": target})  # as anytune.graders.datacheck.grader_item
    require_valid(validator.report, what="the evaluation data")
    return prompts, references, items, validator.report.fingerprint or ""


def evaluate(
    subjects: dict[str, tuple[Backend, ModelArtifact]],
    path: str | Path,
    spec: EvalSpec,
    metrics: dict[str, MetricDef],
    on_progress: Callable[[str], None] = lambda _s: None,
    judge: tuple[Backend, ModelArtifact] | None = None,
) -> EvalResult:
    """Generate with every subject, score with every metric (with 95% intervals), and compare every subject
    with the first one (the base model, where there is one) on the same examples."""
    prompts, references, items, fingerprint = load_items(path, spec.limit)
    params = GenerationParams(max_new_tokens=spec.max_new_tokens, batch_size=spec.batch_size)
    results: list[SubjectResult] = []
    for name, (backend, artifact) in subjects.items():
        on_progress(name)
        results.append(_score(name, backend, artifact, prompts, references, metrics, params, items))
    comparisons = _compared(results, metrics, references)
    if judge is not None and len(results) > 1:
        on_progress("the judge")
        comparisons += _judged(judge, prompts, references, results, spec)
    examples = [
        {
            "prompt": content_text(prompts[i][-1].get("content")) if prompts[i] else "",
            "reference": references[i],
            **{s.subject: s.predictions[i] for s in results},
        }
        for i in range(min(_KEEP_EXAMPLES, len(references)))
    ]
    return EvalResult(
        dataset_path=str(path),
        dataset_fingerprint=fingerprint,
        n=len(references),
        subjects=results,
        comparisons=comparisons,
        examples=examples,
        references=references,
    )


def _score(
    name: str,
    backend: Backend,
    artifact: ModelArtifact,
    prompts: list[Messages],
    references: list[str],
    metrics: dict[str, MetricDef],
    params: GenerationParams,
    items: list[dict[str, Any]] | None = None,
) -> SubjectResult:
    """One subject's answers (and the loss of each reference, for loss metrics), scored with every metric."""
    generating = [m for m in metrics.values() if not m.from_loss]
    predictions = backend.generate(artifact, prompts, params) if generating else [""] * len(references)
    losses = None
    if any(m.from_loss for m in metrics.values()):
        losses = backend.target_loss(artifact, prompts, references)  # CapabilityError says who cannot
    values, intervals, per_example = {}, {}, {}
    for metric, definition in metrics.items():
        if definition.from_loss:
            assert losses is not None
            value, (low, high), scores = loss_metric(metric, losses)
            values[metric], intervals[metric] = round(value, 4), (round(low, 4), round(high, 4))
        elif definition.item_example is not None:  # a grader: the answer against the whole data line
            assert items is not None
            scores = [
                float(definition.item_example(p, item)) for p, item in zip(predictions, items, strict=True)
            ]
            values[metric] = round(sum(scores) / len(scores), 4) if scores else 0.0
            low, high = bootstrap_ci(definition, predictions, references, scores)
            intervals[metric] = (round(low, 4), round(high, 4))
        else:
            scores = example_scores(definition, predictions, references)
            values[metric] = round(definition(predictions, references), 4) if references else 0.0
            low, high = bootstrap_ci(definition, predictions, references, scores)
            intervals[metric] = (round(low, 4), round(high, 4))
        if scores is not None:
            per_example[metric] = scores
    return SubjectResult(
        subject=name,
        provider=artifact.provider,
        model_id=artifact.model_id,
        metrics=values,
        ci=intervals,
        n=len(references),
        predictions=predictions,
        scores=per_example,
    )


def _compared(
    results: list[SubjectResult], metrics: dict[str, MetricDef], references: list[str]
) -> list[Comparison]:
    """Every subject against the first, metric by metric, example by example (paired)."""
    if len(results) < 2:
        return []
    first = results[0]
    comparisons = []
    for other in results[1:]:
        for metric, definition in metrics.items():
            if definition.from_loss and metric not in first.scores:
                continue  # perplexity is a set-level figure: its comparison is eval_loss's
            comparisons.append(
                paired(
                    definition,
                    (first.subject, first.predictions, first.scores.get(metric)),
                    (other.subject, other.predictions, other.scores.get(metric)),
                    references,
                )
            )
    return comparisons


def _judged(
    judge: tuple[Backend, ModelArtifact],
    prompts: list[Messages],
    references: list[str],
    results: list[SubjectResult],
    spec: EvalSpec,
) -> list[Comparison]:
    """Each subject against the first, as a judge model sees them (answers swapped and judged twice)."""
    from anytune.evaluation.judge import judge_pairs
    from anytune.evaluation.metrics import MetricDef
    from anytune.evaluation.stats import bootstrap_ci

    asked = [content_text(p[-1].get("content")) if p else "" for p in prompts]
    first = results[0]
    out = []
    for other in results[1:]:
        scores, unreadable = judge_pairs(
            judge[0],
            judge[1],
            asked,
            references,
            first.predictions,
            other.predictions,
            batch_size=spec.batch_size,
        )
        mean = MetricDef("judge", example=lambda _p, _r: 0.0)
        low, high = bootstrap_ci(mean, [""] * len(scores), [""] * len(scores), scores)
        wins, losses = scores.count(1.0), scores.count(-1.0)
        out.append(
            Comparison(
                metric="judge",
                a=first.subject,
                b=other.subject,
                delta=round(sum(scores) / len(scores), 4) if scores else 0.0,
                low=round(low, 4),
                high=round(high, 4),
                wins=wins,
                ties=len(scores) - wins - losses,
                losses=losses,
                note=f"judged by {judge[1].model_id}, each pair twice with the answers swapped"
                + (f"; {unreadable} unreadable verdict(s) counted as ties" if unreadable else ""),
            )
        )
    return out
