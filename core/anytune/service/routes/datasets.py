"""/v1/datasets: data files uploaded to the server, kept by the SHA-256 of their bytes, named in job specs
as `dataset:sha256:<hex>`.

Two ways up, both streamed to disk and hashed while the bytes arrive (constant memory whatever the size):
`POST /v1/datasets` with the file as the body, for one request; or an upload in parts that survives a
dropped connection (docs/service.md says why this protocol): `POST /v1/datasets/uploads` announces the
length (and the SHA-256 the file should have), `PATCH /v1/datasets/uploads/{id}` with `Upload-Offset` sends
bytes from there on, `GET /v1/datasets/uploads/{id}` says how far the server has them. The request that
completes the length answers the dataset. Either way the file is validated before it is kept: a refusal
names line and field, and nothing is kept.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from anytune.errors import NotFoundError, UsageError
from anytune.jobs import utcnow
from anytune.pipeline.datasets import (
    HASHES,
    TooLarge,
    WrongOffset,
    dataset_id,
    expire_uploads,
    forget,
    keep,
    max_upload_bytes,
    receive,
    uploads_dir,
)
from anytune.registry import Registry
from anytune.registry.datasets import (
    Upload,
    add_upload,
    get_stored,
    get_upload,
    list_stored,
    remove_upload,
)
from anytune.service.common import API_PREFIX, scope, the_registry

router = APIRouter(prefix=f"{API_PREFIX}/datasets")

# the paths whose bodies are streamed to the route, not read (and capped at 1 MB) first
STREAMED = (("POST", f"{API_PREFIX}/datasets"), ("PATCH", f"{API_PREFIX}/datasets/uploads/"))

FILE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary", "description": "the data file's bytes"}
            }
        },
    }
}


class DatasetInfo(BaseModel):
    id: str = Field(..., description="sha256:<hex> of the file's bytes")
    ref: str = Field(..., description="what a job spec's data fields name it as: dataset:sha256:<hex>")
    name: str
    size: int
    format: str
    rows: int
    tokens: int | None = None
    fingerprint: str
    created_at: str


class UploadBody(BaseModel):
    name: str = Field(..., min_length=1, max_length=300, description="the file's name (shown in messages)")
    length: int = Field(..., ge=1, description="the file's size in bytes")
    sha256: str | None = Field(
        None, description="sha256:<hex> the bytes must hash to; checked when the last byte arrives"
    )


class UploadInfo(BaseModel):
    id: str
    name: str
    length: int
    offset: int = Field(..., description="bytes the server has; the next PATCH sends from here")
    sha256: str | None = None


def _info(stored: Any) -> dict[str, Any]:
    return {**stored.model_dump(mode="json"), "ref": stored.ref}


def _name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 300 or not name.isprintable():
        raise UsageError("a dataset's name must be 1 to 300 printable characters", hint="e.g. train.jsonl")
    return name


def _announced(request: Request, limit: int) -> None:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise TooLarge(f"the upload is over the server's limit ({limit:,} bytes, ANYTUNE_MAX_UPLOAD_BYTES)")


@router.post("", status_code=201, dependencies=[scope("submit")], openapi_extra=FILE_BODY)
async def upload_dataset(
    request: Request,
    name: str = Query("data.jsonl", description="the file's name (shown in messages and lists)"),
    sha256: str | None = Query(None, description="sha256:<hex> the bytes must hash to"),
    registry: Registry = Depends(the_registry),
) -> JSONResponse:
    """Upload a data file in one request (its bytes as the body): validated, then kept (201), or found
    already kept (200). For large files the resumable `/v1/datasets/uploads` is safer."""
    name, limit = _name(name), max_upload_bytes()
    expected = dataset_id(sha256) if sha256 else None
    _announced(request, limit)
    part = uploads_dir() / f"{uuid.uuid4().hex}.part"
    h = hashlib.sha256()
    try:
        await receive(request.stream(), part, h, offset=0, limit=limit, what="the server's limit")
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    digest = f"sha256:{h.hexdigest()}"
    existed = _held(registry, digest)
    stored = await run_in_threadpool(keep, registry, part, digest, name, expected=expected)
    return JSONResponse(_info(stored), 200 if existed else 201)


def _held(registry: Registry, digest: str) -> bool:
    try:
        get_stored(registry, digest)
        return True
    except NotFoundError:
        return False


@router.post("/uploads", status_code=201, dependencies=[scope("submit")])
def start_upload(body: UploadBody, registry: Registry = Depends(the_registry)) -> JSONResponse:
    """Announce a file to send in parts; the answer's Location is where its bytes go (PATCH). Uploads not
    finished within a day (ANYTUNE_UPLOAD_EXPIRY_HOURS) are forgotten, their bytes too."""
    expire_uploads(registry)
    limit = max_upload_bytes()
    if body.length > limit:
        raise TooLarge(
            f"{body.name} is {body.length:,} bytes, over the server's limit ({limit:,} bytes)",
            hint="the operator sets ANYTUNE_MAX_UPLOAD_BYTES; split the file",
        )
    upload = Upload(
        id=f"up-{uuid.uuid4().hex}",
        name=_name(body.name),
        length=body.length,
        sha256=dataset_id(body.sha256) if body.sha256 else None,
        created_at=utcnow(),
    )
    add_upload(registry, upload)
    info = UploadInfo(id=upload.id, name=upload.name, length=upload.length, offset=0, sha256=upload.sha256)
    location = f"{API_PREFIX}/datasets/uploads/{upload.id}"
    return JSONResponse(info.model_dump(), 201, headers={"Location": location, "Upload-Offset": "0"})


def _offset(upload_id: str) -> int:
    part = uploads_dir() / f"{upload_id}.part"
    return part.stat().st_size if part.exists() else 0


@router.get("/uploads/{upload_id}", dependencies=[scope("submit")])
def upload_status(upload_id: str, registry: Registry = Depends(the_registry)) -> JSONResponse:
    """How far the server has the file: a client that lost its connection sends from `offset` on."""
    upload = get_upload(registry, upload_id)
    offset = _offset(upload.id)
    info = UploadInfo(**upload.model_dump(exclude={"created_at"}), offset=offset)
    return JSONResponse(info.model_dump(), headers={"Upload-Offset": str(offset)})


@router.patch(
    "/uploads/{upload_id}",
    dependencies=[scope("submit")],
    openapi_extra=FILE_BODY,
    responses={
        201: {"model": DatasetInfo, "description": "the last byte arrived: the dataset, validated and kept"},
        204: {"description": "bytes kept; Upload-Offset says how many the server has"},
    },
)
async def send_part(
    upload_id: str,
    request: Request,
    upload_offset: int = Header(..., ge=0, description="the byte this request's body starts at"),
    registry: Registry = Depends(the_registry),
) -> Response:
    """Bytes of the file from `Upload-Offset` on (the whole rest, or a part of it)."""
    upload = get_upload(registry, upload_id)
    part = uploads_dir() / f"{upload.id}.part"
    offset = _offset(upload.id)
    if upload_offset != offset:
        raise WrongOffset(offset, upload_offset)
    _announced(request, upload.length - offset)
    h = await run_in_threadpool(HASHES.at, upload.id, part)
    try:
        offset = await receive(
            request.stream(), part, h, offset=offset, limit=upload.length, what="the length announced"
        )
    finally:
        HASHES.keep(upload.id, _offset(upload.id), h)
    if offset < upload.length:
        return Response(status_code=204, headers={"Upload-Offset": str(offset)})
    HASHES.forget(upload.id)
    digest = f"sha256:{h.hexdigest()}"
    existed = _held(registry, digest)
    try:
        stored = await run_in_threadpool(keep, registry, part, digest, upload.name, expected=upload.sha256)
    finally:
        remove_upload(registry, upload.id)
    return JSONResponse(_info(stored), 200 if existed else 201, headers={"Upload-Offset": str(offset)})


@router.delete("/uploads/{upload_id}", status_code=204, dependencies=[scope("submit")])
def cancel_upload(upload_id: str, registry: Registry = Depends(the_registry)) -> Response:
    upload = get_upload(registry, upload_id)
    HASHES.forget(upload.id)
    (uploads_dir() / f"{upload.id}.part").unlink(missing_ok=True)
    remove_upload(registry, upload.id)
    return Response(status_code=204)


@router.get("", dependencies=[scope("read")], response_model=list[DatasetInfo])
def datasets(registry: Registry = Depends(the_registry)) -> list[dict[str, Any]]:
    """The datasets kept here, newest first."""
    return [_info(d) for d in list_stored(registry)]


@router.get("/{dataset}", dependencies=[scope("read")], response_model=DatasetInfo)
def dataset(dataset: str, registry: Registry = Depends(the_registry)) -> dict[str, Any]:
    """One dataset by its id (`sha256:<hex>`, or `dataset:sha256:<hex>`): a client asks this before an upload
    to learn whether the server has the file already."""
    return _info(get_stored(registry, dataset_id(dataset)))


@router.delete("/{dataset}", status_code=204, dependencies=[scope("submit")])
def delete_dataset(dataset: str, registry: Registry = Depends(the_registry)) -> Response:
    """Forget a dataset (refused while a job that has not ended reads it)."""
    forget(registry, dataset)
    return Response(status_code=204)
