"""The local trainer's job folder: anytune's `JobDir` (the files parent and worker share), with the result the
local worker leaves in result.json."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from anytune.plugin import JobDir as _JobDir


class JobDir(_JobDir):
    def read_result(self) -> WorkerResult | None:
        raw = self.read_json("result.json")
        return None if raw is None else WorkerResult.model_validate(raw)

    def write_result(self, result: WorkerResult) -> None:
        self.write_json("result.json", result.model_dump(mode="json"))


class WorkerResult(BaseModel):
    """What a finished worker leaves in result.json (written last, before the final status): what it
    saved, from what, and what the run measured. The backend's result() and cost read it."""

    model_config = ConfigDict(extra="forbid")

    adapter_path: str
    merged_path: str | None = None
    base_model: str
    base_model_path: str
    base_model_source: str
    adapter_type: str
    kind: Literal["adapter", "merged", "full"] = "adapter"
    method: str
    trainable_parameters: int
    steps: int
    metrics: dict[str, float] = Field(default_factory=dict)
    hardware: str
    trained_tokens: int | None = None
    wall_seconds: float | None = Field(None, description="the worker's whole run, loading included")
    peak_rss_mb: float | None = None
