"""Uploaded datasets and the uploads on their way, each a project's (the registry's): the rows that say
what a blob in the storage layer is (`anytune.pipeline.datasets` receives, checks and keeps the bytes; this
module is only the SQL)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from anytune.errors import NotFoundError
from anytune.jobs import JobStatus
from anytune.registry.store import Registry
from anytune.registry.tables import JobRow, StoredDatasetRow, UploadRow


class StoredDataset(BaseModel):
    """A data file the service keeps: its id is the SHA-256 of its bytes (`sha256:<hex>`); a job names it as
    `dataset:sha256:<hex>`."""

    id: str = Field(..., description="sha256:<hex> of the file's bytes")
    name: str = Field(..., description="the file name it was uploaded as")
    size: int
    format: str
    rows: int
    tokens: int | None = None
    fingerprint: str = Field(..., description="the content fingerprint (the same rows give the same one)")
    created_at: datetime

    @property
    def ref(self) -> str:
        """What a job spec's data field names it as."""
        return f"dataset:{self.id}"


class Upload(BaseModel):
    id: str
    name: str
    length: int
    sha256: str | None = None
    created_at: datetime


def _stored(row: StoredDatasetRow) -> StoredDataset:
    return StoredDataset.model_validate(row, from_attributes=True)


def add_stored(registry: Registry, dataset: StoredDataset) -> StoredDataset:
    """Record a dataset (once: a second upload of the same bytes finds the first's row)."""
    try:
        with registry.session() as s, s.begin():
            row = s.get(StoredDatasetRow, (registry.owner, dataset.id))
            if row is not None:
                return _stored(row)
            s.add(StoredDatasetRow(project=registry.owner, **dataset.model_dump()))
    except IntegrityError:  # recorded by a request that finished first
        pass
    return get_stored(registry, dataset.id)


def get_stored(registry: Registry, dataset_id: str) -> StoredDataset:
    with registry.session() as s:
        row = s.get(StoredDatasetRow, (registry.owner, dataset_id))
        if row is None:
            raise NotFoundError(
                f"no dataset {dataset_id!r} on this server",
                hint="upload it: `anytune datasets upload FILE` (a job's local files are uploaded by themselves)",
            )
        return _stored(row)


def list_stored(registry: Registry) -> list[StoredDataset]:
    """Newest first."""
    with registry.session() as s:
        q = select(StoredDatasetRow).where(StoredDatasetRow.project == registry.owner)
        rows = s.scalars(q.order_by(StoredDatasetRow.created_at.desc(), StoredDatasetRow.id))
        return [_stored(r) for r in rows]


def remove_stored(registry: Registry, dataset_id: str) -> bool:
    """Forget a project's dataset; True if no project keeps the same bytes any more (the blob may go)."""
    with registry.session() as s, s.begin():
        s.execute(
            delete(StoredDatasetRow).where(
                StoredDatasetRow.project == registry.owner, StoredDatasetRow.id == dataset_id
            )
        )
        return s.scalar(select(StoredDatasetRow.id).where(StoredDatasetRow.id == dataset_id).limit(1)) is None


def jobs_using(registry: Registry, dataset_id: str) -> list[str]:
    """The project's jobs that have not ended and name the dataset in their spec (their workers will read
    it)."""
    ref = f"dataset:{dataset_id}"
    terminal = [s.value for s in JobStatus if s.terminal]
    with registry.session() as s:
        rows = s.execute(
            select(JobRow.id, JobRow.spec).where(JobRow.status.not_in(terminal), *registry.mine(JobRow))
        ).all()
    return [job_id for job_id, spec in rows if ref in _data_fields(spec)]


def _data_fields(spec: dict[str, object] | None) -> list[str]:
    data = (spec or {}).get("data") or {}
    evaluation = (spec or {}).get("evaluation") or {}
    fields = [*(data.values() if isinstance(data, dict) else [])]
    if isinstance(evaluation, dict):
        fields.append(evaluation.get("data"))
    return [f for f in fields if isinstance(f, str)]


def add_upload(registry: Registry, upload: Upload) -> Upload:
    with registry.session() as s, s.begin():
        s.add(UploadRow(project=registry.owner, **upload.model_dump()))
    return upload


def get_upload(registry: Registry, upload_id: str) -> Upload:
    with registry.session() as s:
        row = s.get(UploadRow, upload_id)
        if row is None or row.project != registry.owner:
            raise NotFoundError(
                f"no upload {upload_id!r}", hint="it finished, was cancelled, or expired: start a new one"
            )
        return Upload.model_validate(row, from_attributes=True)


def remove_upload(registry: Registry, upload_id: str) -> None:
    with registry.session() as s, s.begin():
        s.execute(delete(UploadRow).where(UploadRow.id == upload_id))


def stale_uploads(registry: Registry, before: datetime) -> list[str]:
    with registry.session() as s:
        return list(s.scalars(select(UploadRow.id).where(UploadRow.created_at < before)))


__all__ = [
    "StoredDataset",
    "Upload",
    "add_stored",
    "add_upload",
    "get_stored",
    "get_upload",
    "jobs_using",
    "list_stored",
    "remove_stored",
    "remove_upload",
    "stale_uploads",
]
