"""The registry of jobs, data sets, model versions and evaluations (SQLite by default, PostgreSQL by URL)."""

from anytune.registry.records import DatasetRecord, EvaluationRecord, ModelVersion
from anytune.registry.store import Registry, new_job_id

__all__ = ["DatasetRecord", "EvaluationRecord", "ModelVersion", "Registry", "new_job_id"]
