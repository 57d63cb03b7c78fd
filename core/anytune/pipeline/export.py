"""A model written as full weights that load without anytune (an adapter merged into its base), through
its backend's `export()`, and registered as a new version of the same model with its lineage."""

from __future__ import annotations

from pathlib import Path

from anytune.errors import CapabilityError
from anytune.jobs import ModelArtifact
from anytune.pipeline.context import Pipeline
from anytune.pipeline.evaluate import resolve_target
from anytune.registry.records import ModelVersion


def export(
    p: Pipeline, ref: str, out_dir: Path, *, dtype: str = "float32", register: bool = True
) -> tuple[ModelArtifact, ModelVersion | None]:
    target = resolve_target(p, ref)
    backend = p.backend(target.provider)
    if not backend.capabilities().supports_export:
        raise CapabilityError(
            f"{target.label} lives on {target.provider}, which cannot write merged weights",
            hint="hosted fine-tunes are called through their provider (anytune serve proxies any of them)",
        )
    artifact = backend.export(target.artifact, out_dir, dtype=dtype)
    if not register or target.model is None:
        return artifact, None
    m = target.model
    version = p.registry.register_model(
        m.name,
        artifact,
        job_id=m.job_id,
        dataset_fingerprint=m.dataset_fingerprint,
        spec=m.spec,
        metrics=m.metrics,
        cost=m.cost,
        base_model_retires=m.base_model_retires,
        description=f"{m.ref} merged into {target.base_model} ({dtype})",
    )
    return artifact, version
