"""Uploaded datasets in a job: a spec's data fields may name `dataset:sha256:<hex>` instead of a path. The
stages read such a field through the file that holds the dataset on this machine (the storage layer's blob,
or its copy fetched from a bucket), while the job keeps the name it was given: the record says which dataset,
and a worker on another machine finds the same bytes through the same storage."""

from __future__ import annotations

import os

from anytune.hookspecs import DataBundle
from anytune.pipeline.context import Pipeline
from anytune.pipeline.datasets import is_dataset_ref, local_path
from anytune.spec import JobSpec


def local_file(p: Pipeline, value: str) -> str:
    """A data field as a path to read here: a path as it is, a dataset as the file that holds it."""
    if not is_dataset_ref(value):
        return value
    return str(local_path(p.registry, value))


def local_spec(p: Pipeline, spec: JobSpec) -> JobSpec:
    """`spec` with every dataset named by the file that holds it here (the same spec if it names none)."""
    data = {
        field: local_file(p, value)
        for field in ("train", "validation", "test")
        if is_dataset_ref(value := getattr(spec.data, field))
    }
    evaluation = spec.evaluation
    changes = {}
    if data:
        changes["data"] = spec.data.model_copy(update=data)
    if evaluation is not None and evaluation.data and is_dataset_ref(evaluation.data):
        changes["evaluation"] = evaluation.model_copy(update={"data": local_file(p, evaluation.data)})
    return spec.model_copy(update=changes) if changes else spec


def datasets_here(p: Pipeline, spec: JobSpec, bundle: DataBundle) -> DataBundle:
    """A recorded job's data bundle as it is on this machine: where the files recorded (on the machine that
    checked the job) are not here and the job names uploaded datasets, its data is checked again from the
    storage layer (the same bytes, and the same split where validation rows are carved out of them)."""
    recorded = [ref for ref in (bundle.train, bundle.validation, bundle.test) if ref is not None]
    named = [spec.data.train, spec.data.validation, spec.data.test]
    if all(os.path.exists(ref.path) for ref in recorded) or not any(is_dataset_ref(n) for n in named):
        return bundle
    from anytune.pipeline.datachecks import check_data

    caps = p.backend(spec.provider).capabilities()
    return check_data(p.data, None, local_spec(p, spec), caps).bundle


__all__ = ["datasets_here", "local_file", "local_spec"]
