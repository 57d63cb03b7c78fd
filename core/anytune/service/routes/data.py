"""/v1/data/validate, /v1/quotes, /v1/plugins and /v1/prices: what a job's data and price would be, and what
this server can run, before anything is submitted."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from anytune.client.inprocess import InProcessClient
from anytune.pipeline.datarefs import local_file
from anytune.service.common import (
    API_PREFIX,
    SPEC_BODY,
    ValidateBody,
    check_data_paths,
    scope,
    spec_of,
    spec_paths,
    the_client,
)
from anytune.spec import DataFormat

router = APIRouter(prefix=API_PREFIX)


@router.post("/data/validate", dependencies=[scope("submit")])
def validate_data(body: ValidateBody, client: InProcessClient = Depends(the_client)) -> dict[str, Any]:
    """`anytune validate` on a file on the server or an uploaded dataset (`dataset:sha256:...`): every issue
    with its line and field (the first 200)."""
    from anytune.data.tokens import get_token_counter
    from anytune.data.validate import validate_file

    named = body.tokenizer and not body.tokenizer.startswith(("quicktok:", "tiktoken:", "approx"))
    check_data_paths(
        [body.path, *([body.tokenizer] if named and body.tokenizer else [])]
    )  # a folder read too
    fmt = None if body.format == "auto" else DataFormat(body.format)
    path = local_file(client.pipeline, body.path)  # an uploaded dataset: the file that holds it
    report = validate_file(
        path,
        format=fmt,
        token_counter=get_token_counter(body.tokenizer),
        max_seq_length=body.max_seq_length,
        max_issues=200,
    )
    if path != body.path:
        report.path = body.path
    return report.model_dump(mode="json")  # type: ignore[no-any-return]


@router.post("/quotes", dependencies=[scope("read")], openapi_extra=SPEC_BODY)
async def quotes(
    request: Request,
    providers: str = "all",
    hardware: str | None = None,
    client: InProcessClient = Depends(the_client),
) -> Any:
    """A spec priced on every provider named (or all), as `anytune quote --json`."""
    spec = await spec_of(request)
    check_data_paths(spec_paths(spec))
    table = await run_in_threadpool(client.quote, spec, providers, hardware=hardware)
    return json.loads(table.to_json())


@router.get("/plugins", dependencies=[scope("read")])
def plugins(client: InProcessClient = Depends(the_client)) -> list[dict[str, Any]]:
    return [
        {
            "name": p.name,
            "distribution": p.distribution,
            "version": p.version,
            "backends": p.backends,
            "emulators": p.emulators,
            "ok": p.ok,
            "error": p.error,
        }
        for p in client.plugins.plugins()
    ]
