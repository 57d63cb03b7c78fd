"""What to evaluate after a job, in a job file's `evaluation:` section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EvalSpec(BaseModel):
    """A held-out evaluation run on the fine-tuned model and, by default, on its base model too.

    The same spec runs against every backend through its `generate()`, so that the numbers of a local
    adapter and of a provider's fine-tune mean the same thing.
    """

    model_config = ConfigDict(extra="forbid")

    data: str | None = Field(None, description="Evaluation file; defaults to the job's data.test.")
    metrics: list[str] = Field(default_factory=lambda: ["exact_match"], min_length=1)
    compare_base: bool = Field(True, description="Also score the base model, for an A/B.")
    max_new_tokens: int = Field(64, ge=1, le=4096)
    limit: int | None = Field(None, ge=1, description="Score only the first N examples.")
    batch_size: int = Field(16, ge=1, le=512)
    judge: str | None = Field(
        None,
        description="A model that judges each pair of answers (a model reference, a job id, or provider:model "
        "for a provider's base model, e.g. openai:gpt-4o-mini); adds a `judge` head-to-head.",
    )
