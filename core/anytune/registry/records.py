"""What the registry hands back: plain pydantic records, detached from the database session."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from anytune.jobs import ModelArtifact
from anytune.spec_upgrades import upgraded_dict


class ModelVersion(BaseModel):
    """An immutable version of a registered model, with its lineage and how to call it."""

    project: str = "default"
    name: str
    version: int
    aliases: list[str] = Field(default_factory=list)
    job_id: str | None = None
    provider: str
    model_id: str
    kind: str
    base_model: str
    base_model_retires: datetime | None = None
    adapter_type: str | None = None
    dataset_fingerprint: str | None = None
    artifact: ModelArtifact
    spec: dict[str, Any] | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    cost: dict[str, Any] | None = None
    description: str | None = None
    created_at: datetime

    @field_validator("spec", mode="before")
    @classmethod
    def _stored_spec(cls, value: Any) -> Any:
        """The job's spec as recorded, in the current version's shape (`anytune.spec_upgrades`)."""
        return upgraded_dict(value) if isinstance(value, dict) else value

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class DatasetRecord(BaseModel):
    fingerprint: str
    format: str
    rows: int
    tokens: int | None = None
    path: str
    stats: dict[str, Any] | None = None
    created_at: datetime


class EvaluationRecord(BaseModel):
    id: int
    job_id: str | None = None
    model_name: str | None = None
    model_version: int | None = None
    subject: str
    provider: str
    model_id: str
    dataset_path: str
    dataset_fingerprint: str
    metrics: dict[str, Any]
    n: int
    samples: dict[str, Any] | None = None
    created_at: datetime

    @property
    def ci(self) -> dict[str, tuple[float, float]]:
        return {k: (v[0], v[1]) for k, v in ((self.samples or {}).get("ci") or {}).items()}

    def scores(self, metric: str) -> list[float] | None:
        return ((self.samples or {}).get("scores") or {}).get(metric)
