"""Export a registered model version to MLflow: a run that carries anytune's lineage as tags and params, its
weights (local adapters) or how to call it (hosted models) as artifacts, and a version in MLflow's Model
Registry with the same aliases. For teams whose dashboards already live in MLflow; anytune's registry stays
the source of truth (MLflow knows nothing of providers, training cost or base-model retirement: the tags do).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anytune.errors import UsageError

if TYPE_CHECKING:
    from anytune.registry import Registry


def lineage_tags(registry: Registry, ref: str) -> tuple[Any, dict[str, str], dict[str, float]]:
    """(model version, tags, metrics) for `ref`: everything MLflow should know, as strings and numbers."""
    m = registry.get_model(ref)
    job = registry.get_job(m.job_id) if m.job_id else None
    tags = {
        "anytune.model": m.ref,
        "anytune.provider": m.provider,
        "anytune.model_id": m.model_id,
        "anytune.kind": m.kind,
        "anytune.base_model": m.base_model,
        "anytune.aliases": ",".join(m.aliases),
    }
    if m.adapter_type:
        tags["anytune.adapter_type"] = m.adapter_type
    if m.base_model_retires:
        tags["anytune.base_model_retires"] = m.base_model_retires.date().isoformat()
    if m.dataset_fingerprint:
        tags["anytune.dataset_fingerprint"] = m.dataset_fingerprint
    if job is not None:
        tags["anytune.job_id"] = job.id
        if job.provider_job_id:
            tags["anytune.provider_job_id"] = job.provider_job_id
        if job.cost is not None:
            for key in ("quoted", "actual", "provider_actual", "trained_tokens"):
                value = getattr(job.cost, key)
                if value is not None:
                    tags[f"anytune.cost.{key}"] = str(value)
            tags["anytune.cost.currency"] = job.cost.currency
    metrics = {k: float(v) for k, v in m.metrics.items() if isinstance(v, int | float)}
    for e in registry.evaluations(model_name=m.name, model_version=m.version):
        for k, v in e.metrics.items():
            metrics[f"eval.{k}"] = float(v)  # the latest evaluation wins
        tags["anytune.eval.dataset_fingerprint"] = e.dataset_fingerprint
    return m, tags, metrics


def export_to_mlflow(
    registry: Registry,
    ref: str,
    *,
    tracking_uri: str | None = None,
    experiment: str = "anytune",
    artifact_location: str | None = None,
) -> dict[str, str]:
    """Log `ref` as an MLflow run and register it; returns the run id and the MLflow model version.

    `artifact_location` is where a new experiment keeps its artifacts (MLflow's default for a database
    tracking URI is ./mlruns in the current folder)."""
    try:
        import mlflow
        from mlflow import MlflowClient
    except ImportError:
        raise UsageError("exporting to MLflow needs mlflow", hint="pip install 'anytune[mlflow]'") from None
    m, tags, metrics = lineage_tags(registry, ref)
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    if artifact_location and MlflowClient().get_experiment_by_name(experiment) is None:
        MlflowClient().create_experiment(experiment, artifact_location=artifact_location)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=m.ref) as run:
        mlflow.set_tags(tags)
        mlflow.log_params({"provider": m.provider, "base_model": m.base_model, "kind": m.kind})
        if metrics:
            mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            card = Path(tmp) / "anytune_model.json"
            card.write_text(json.dumps(m.model_dump(mode="json"), indent=2, default=str))
            mlflow.log_artifact(str(card), artifact_path="model")
        weights = m.artifact.path
        if m.provider == "local" and weights and Path(weights).is_dir():
            mlflow.log_artifacts(weights, artifact_path="model/weights")
    client = MlflowClient()
    try:
        client.get_registered_model(m.name)
    except Exception:  # not registered in MLflow yet
        client.create_registered_model(m.name, tags={"anytune.source": "anytune registry"})
    version = client.create_model_version(
        m.name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id, tags=tags
    )
    for alias in m.aliases:
        client.set_registered_model_alias(m.name, alias, version.version)
    return {"run_id": run.info.run_id, "mlflow_version": str(version.version), "name": m.name}
