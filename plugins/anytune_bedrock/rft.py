"""Bedrock's reinforcement fine-tuning settings: anytune's names mapped to `rftConfig.hyperParameters`,
range-checked before anything is uploaded, and the settings Bedrock has no field for said, not sent."""

from __future__ import annotations

from typing import Any

from anytune.plugin import JobSpec, Problem

# rftConfig.hyperParameters: (Bedrock's name, where it comes from, low, high); the ranges are those of
# CreateModelCustomizationJob's RFTHyperParameters (botocore's service model, 1.44)
RFT_HYPER = (
    ("epochCount", "hyperparameters.epochs", 1, 50),
    ("batchSize", "hyperparameters.batch_size", 16, 512),
    ("learningRate", "hyperparameters.learning_rate", 1e-7, 1e-3),
    ("trainingSamplePerPrompt", "method.samples_per_prompt", 2, 16),
    ("inferenceMaxTokens", "method.max_completion_tokens", 1, 131_072),
    ("evalInterval", "method.eval_interval", 1, 100),
)
RFT_IGNORED = ("compute_multiplier", "eval_samples", "kl_beta", "temperature")


def _rft_value(spec: JobSpec, where: str) -> Any:
    holder, _, name = where.partition(".")
    return getattr(spec.hyperparameters if holder == "hyperparameters" else spec.method, name, None)


def rft_problems(spec: JobSpec) -> list[Problem]:
    """RFT settings out of Bedrock's ranges (refused), and those Bedrock has no field for (said, not sent)."""
    problems = []
    for theirs, where, low, high in RFT_HYPER:
        value = _rft_value(spec, where)
        if value is not None and not low <= value <= high:
            problems.append(Problem("error", where, f"Bedrock's RFT takes {theirs} from {low:g} to {high:g}"))
    for name in RFT_IGNORED:
        if getattr(spec.method, name, None) is not None:
            problems.append(
                Problem("warning", f"method.{name}", "Bedrock's RFT has no such setting: not sent")
            )
    return problems


def rft_hyperparameters(spec: JobSpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        theirs: _rft_value(spec, where)
        for theirs, where, _, _ in RFT_HYPER
        if _rft_value(spec, where) is not None
    }
    for key in ("epochCount", "batchSize", "trainingSamplePerPrompt", "inferenceMaxTokens", "evalInterval"):
        if key in out:
            out[key] = int(out[key])
    if getattr(spec.method, "reasoning_effort", None):
        out["reasoningEffort"] = spec.method.reasoning_effort
    return out
