"""/v1/models (versions and aliases), /v1/evaluations (stored scores, and scoring on the server) and
/v1/reports (a report drawn here, as a zip)."""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from anytune.client.inprocess import InProcessClient
from anytune.service.common import (
    API_PREFIX,
    INT_MAX,
    AliasBody,
    EvalBody,
    check_data_paths,
    scope,
    the_client,
)

router = APIRouter(prefix=API_PREFIX)


@router.get("/models", dependencies=[scope("read")])
def list_models(
    name: str | None = None,
    job_id: str | None = Query(None, description="only the versions this job registered"),
    client: InProcessClient = Depends(the_client),
) -> list[dict[str, Any]]:
    found = client.models_for_job(job_id) if job_id else client.list_models(name)
    return [m.model_dump(mode="json") for m in found if name is None or m.name == name]


@router.get("/models/{ref}", dependencies=[scope("read")])
def get_model(ref: str, client: InProcessClient = Depends(the_client)) -> dict[str, Any]:
    """`name` (newest version), `name@3` or `name@alias`."""
    return client.get_model(ref).model_dump(mode="json")  # type: ignore[no-any-return]


FILES_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/x-tar": {}}, "description": "the model's files as one tar"},
    206: {"content": {"application/x-tar": {}}, "description": "the bytes a Range asked for"},
    416: {"description": "a Range outside the archive"},
}


@router.head(
    "/models/{ref}/files",
    dependencies=[scope("read")],
    response_class=Response,
    responses=FILES_ANSWERS,
)
def model_files_size(ref: str, request: Request, client: InProcessClient = Depends(the_client)) -> Response:
    """The archive's size, SHA-256 and ETag, without its bytes (what a download that resumes asks first)."""
    return model_files(ref, request, client)


@router.get(
    "/models/{ref}/files",
    dependencies=[scope("read")],
    response_class=Response,
    responses=FILES_ANSWERS,
)
def model_files(ref: str, request: Request, client: InProcessClient = Depends(the_client)) -> Response:
    """The model's files (adapter, merged weights, tokenizer, its record) as one tar, its SHA-256 in
    `X-Content-SHA256` and the ETag; a dropped download resumes with `Range` (and `If-Range`). A hosted
    provider's model has no files: the error says how to call it."""
    from fastapi.responses import FileResponse

    from anytune.pipeline.archive import model_archive, version_of
    from anytune.storage import open_storage

    model = version_of(client.resolve_target(ref), ref)
    key, digest = model_archive(model)
    path = open_storage().local_file(key)
    filename = f"{model.name}-v{model.version}.tar"
    return FileResponse(
        path,
        media_type="application/x-tar",
        filename=filename,
        headers={"X-Content-SHA256": digest, "ETag": f'"{digest.removeprefix("sha256:")}"'},
    )


@router.put("/models/{name}/aliases/{alias}", dependencies=[scope("submit")])
def promote(
    name: str, alias: str, body: AliasBody, client: InProcessClient = Depends(the_client)
) -> dict[str, Any]:
    """Point an alias (production, candidate...) at a version: `anytune models promote`."""
    return client.set_alias(name, alias, body.version).model_dump(mode="json")  # type: ignore[no-any-return]


@router.delete("/models/{name}/aliases/{alias}", status_code=204, dependencies=[scope("submit")])
def demote(name: str, alias: str, client: InProcessClient = Depends(the_client)) -> Response:
    client.remove_alias(name, alias)
    return Response(status_code=204)


@router.get("/evaluations", dependencies=[scope("read")])
def evaluations(
    job_id: str | None = None,
    model_name: str | None = None,
    model_version: int | None = Query(None, ge=1, le=INT_MAX),
    dataset_fingerprint: str | None = None,
    subject: str | None = None,
    client: InProcessClient = Depends(the_client),
) -> list[dict[str, Any]]:
    found = client.evaluations(
        job_id=job_id,
        model_name=model_name,
        model_version=model_version,
        dataset_fingerprint=dataset_fingerprint,
        subject=subject,
    )
    return [e.model_dump(mode="json") for e in found]


@router.post("/evaluations", status_code=201, dependencies=[scope("submit")])
def evaluate(body: EvalBody, client: InProcessClient = Depends(the_client)) -> dict[str, Any]:
    """`anytune eval` on the server: every target scored on the same data, the scores stored there. It
    answers when the scoring is done (minutes for a large file: clients wait without a timeout)."""
    changes = body.model_dump(exclude_none=True, exclude={"targets"})
    if "data" in changes:
        check_data_paths([changes["data"]])
    result = client.evaluate_targets(body.targets, changes=changes)
    return result.model_dump(mode="json", exclude={"references"})  # type: ignore[no-any-return]


@router.get(
    "/reports",
    dependencies=[scope("read")],
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}, "description": "report.html, report.md, plots"}},
)
def report(
    target: list[str] = Query(..., min_length=1, max_length=20), client: InProcessClient = Depends(the_client)
) -> Response:
    """`anytune report` on the server, from its registry: a zip of report.html, report.md and the plots."""
    with tempfile.TemporaryDirectory(prefix="anytune-report-") as folder:
        written = client.report(target, Path(folder))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(Path(folder).iterdir()):
                archive.write(path, path.name)
            archive.writestr("warnings.json", json.dumps(written.warnings))
    return Response(buffer.getvalue(), media_type="application/zip")
