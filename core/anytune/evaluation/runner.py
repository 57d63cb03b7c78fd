"""Running an evaluation: the same prompts through each model's backend, the same metrics on the answers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from anytune.data.records import content_text, prompt_and_target
from anytune.data.validate import RecordValidator, require_valid
from anytune.evaluation.metrics import Metric
from anytune.evaluation.spec import EvalSpec
from anytune.hookspecs import Backend, GenerationParams, Messages
from anytune.jobs import ModelArtifact

_KEEP_EXAMPLES = 50


class SubjectResult(BaseModel):
    subject: str
    provider: str
    model_id: str
    metrics: dict[str, float]
    n: int
    predictions: list[str] = Field(default_factory=list)


class EvalResult(BaseModel):
    dataset_path: str
    dataset_fingerprint: str
    n: int
    subjects: list[SubjectResult]
    examples: list[dict[str, object]] = Field(default_factory=list)

    def subject(self, name: str) -> SubjectResult:
        return next(s for s in self.subjects if s.subject == name)


def load_examples(path: str | Path, limit: int | None = None) -> tuple[list[Messages], list[str], str]:
    """Prompts and references of an eval file (any supervised format), and the file's fingerprint."""
    validator = RecordValidator(path, collect_stats=False)
    prompts: list[Messages] = []
    references: list[str] = []
    for _, record in validator:
        if limit is None or len(prompts) < limit:
            prompt, target = prompt_and_target(record, validator.format)  # type: ignore[arg-type]
            prompts.append([{**m, "content": content_text(m.get("content"))} for m in prompt])
            references.append(target)
    require_valid(validator.report, what="the evaluation data")
    return prompts, references, validator.report.fingerprint or ""


def evaluate(
    subjects: dict[str, tuple[Backend, ModelArtifact]],
    path: str | Path,
    spec: EvalSpec,
    metrics: dict[str, Metric],
    on_progress: Callable[[str], None] = lambda _s: None,
) -> EvalResult:
    prompts, references, fingerprint = load_examples(path, spec.limit)
    params = GenerationParams(max_new_tokens=spec.max_new_tokens, batch_size=spec.batch_size)
    results: list[SubjectResult] = []
    for name, (backend, artifact) in subjects.items():
        on_progress(name)
        predictions = backend.generate(artifact, prompts, params)
        scores = {
            metric: round(
                sum(fn(p, r) for p, r in zip(predictions, references, strict=True)) / len(references), 4
            )
            for metric, fn in metrics.items()
        }
        results.append(
            SubjectResult(
                subject=name,
                provider=artifact.provider,
                model_id=artifact.model_id,
                metrics=scores,
                n=len(references),
                predictions=predictions,
            )
        )
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
        examples=examples,
    )
