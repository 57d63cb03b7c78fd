"""What every route of the service shares: its error shape and status codes, scopes, the request bodies,
the Client and registry the routes work through, and the data-folder check.

Every route is scoped (`read` < `submit` < `admin`) and needs `Authorization: Bearer <token>` unless the app
is made with `auth=False` (only for 127.0.0.1; `anytune server` warns on any other address). Errors are one
JSON shape, `{"error": {"type", "message", "hint", "details"}}`, carrying anytune's own message and hint.
"""

from __future__ import annotations

import json
import os
from typing import Any, Literal

from fastapi import Depends, Header, Request
from pydantic import BaseModel, Field

from anytune.client.inprocess import InProcessClient
from anytune.errors import (
    AnytuneError,
    BackendError,
    CapabilityError,
    DataError,
    NotFoundError,
    SpecError,
    UsageError,
)
from anytune.graders.spec import GraderSpec
from anytune.paths import resolved
from anytune.registry import Registry
from anytune.registry.access import AccessDenied, IdempotencyConflict, check_token
from anytune.spec import DataFormat, JobSpec

MAX_BODY_BYTES = 1 * 2**20  # a job spec or a quote request; data files come up as uploads (/v1/datasets)
INT_MAX = 2**31 - 1  # every integer a request may carry fits the databases' INTEGER
API_PREFIX = "/v1"


class ContinueBody(BaseModel):
    step: int | None = Field(
        None, ge=0, le=INT_MAX, description="the checkpoint's step; the last one if omitted"
    )
    overrides: list[str] = Field(default_factory=list, description="KEY=VALUE changes to the spec")


class MigrateBody(BaseModel):
    to: str = Field(..., min_length=1, max_length=100, description="the provider to run the job on")
    overrides: list[str] = Field(default_factory=list, description="KEY=VALUE changes to the spec")


class WebhookBody(BaseModel):
    url: str = Field(..., description="where to POST each event (http or https)")
    secret: str | None = Field(None, description="the signing secret; one is made if omitted")
    kinds: list[str] | None = Field(None, description="only these event kinds (status, log, metric...)")
    from_start: bool = Field(False, description="deliver the events recorded before this webhook too")


class ValidateBody(BaseModel):
    path: str = Field(..., description="an uploaded dataset (dataset:sha256:<hex>) or a file on the server")
    format: DataFormat | Literal["auto"] = Field(
        "auto", description="the file's format, or auto to detect it"
    )
    tokenizer: str | None = Field(None, description="quicktok:<encoding>, a tokenizer folder, or approx")
    max_seq_length: int | None = Field(None, ge=1, le=INT_MAX)


class EvalBody(BaseModel):
    """`anytune eval`'s options; the first target's own evaluation settings fill what is not given."""

    targets: list[str] = Field(
        ...,
        min_length=1,
        max_length=20,
        description="jobs (job-...) or models (NAME, NAME@VERSION, NAME@ALIAS)",
    )
    data: str | None = Field(
        None, description="the evaluation file on the server (default: the job's test data)"
    )
    metrics: list[str] | None = Field(None, min_length=1, max_length=20)
    compare_base: bool | None = Field(None, description="also score the first model's base model")
    limit: int | None = Field(None, ge=1, le=INT_MAX, description="score only the first N examples")
    max_new_tokens: int | None = Field(None, ge=1, le=4096)
    judge: str | None = Field(None, description="a model that judges each pair of answers")
    graders: dict[str, GraderSpec] | None = Field(
        None, max_length=20, description="graders scored as metrics, by name (each name also in metrics)"
    )


class AliasBody(BaseModel):
    version: int = Field(..., ge=1, le=INT_MAX, description="the version the alias points at")


# a job spec: the job file's fields as JSON (docs/job-spec.md), documented here and read by anytune's own
# checks (spec_from_dict), whose messages name the field, rather than by FastAPI's
SPEC_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "A job spec: the job file's fields as a JSON object (docs/job-spec.md). "
                    "Data fields name uploaded datasets (dataset:sha256:<hex>) or paths on the server.",
                    "example": {
                        "name": "demo",
                        "base_model": "gpt-4o-mini",
                        "data": {"train": "/data/t.jsonl"},
                    },
                }
            }
        },
    }
}


class ErrorDetail(BaseModel):
    type: str = Field(..., description="anytune's error class, e.g. DataError, CapabilityError")
    message: str
    hint: str | None = None
    details: list[str] = Field(default_factory=list, description="each problem, e.g. file:line: field: what")


class ErrorBody(BaseModel):
    error: ErrorDetail


# every route can answer these, all in the one error shape (documented so clients and testers can rely on it)
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "bad input (a usage error)",
        401: "no token, or an unknown or revoked one",
        403: "the token's scope is too narrow",
        404: "no such job, model, dataset, webhook or route in the token's project",
        405: "a method the path does not have (Allow lists those it has)",
        409: "an Idempotency-Key whose first request is still being handled, an upload sent from "
        "another offset than the server's, or a dataset a running job reads",
        413: "the body is over 1 MB (an upload: over the server's upload limit)",
        422: "an invalid spec, data a provider refuses, or a key reused with another body",
        429: "a job over its project's cap: its spend this month, or its jobs at once (QuotaExceeded)",
        502: "a provider's error",
    }.items()
}


def status_of(exc: AnytuneError) -> int:
    if isinstance(exc, AccessDenied | IdempotencyConflict):
        return exc.status
    own = getattr(type(exc), "http_status", None)  # an error of the service's own routes (409, 413)
    if isinstance(own, int):
        return own
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, SpecError | DataError | CapabilityError):
        return 422
    if isinstance(exc, UsageError) or exc.exit_code == 2:  # the caller's input (an unknown provider too)
        return 400
    if isinstance(exc, BackendError):
        return 502
    return 500


def error_body(
    kind: str, message: str, hint: str | None = None, details: list[str] | None = None
) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, "hint": hint, "details": details or []}}


def the_client(request: Request) -> InProcessClient:
    """The Client every route works through: the app's, seen from the project of the request's token."""
    client: InProcessClient = request.app.state.client
    project = getattr(request.state, "project", None)
    return client if project is None else client.in_project(project)


def the_registry(request: Request) -> Registry:
    """The registry of the service's own records (tokens, idempotency keys, webhooks), seen from the
    project of the request's token."""
    registry: Registry = request.app.state.registry
    project = getattr(request.state, "project", None)
    return registry if project is None else registry.in_project(project)


def scope(needed: str) -> Any:
    """A route's dependency: the request's token must have `needed` (or a wider) scope. The token's project
    is then the request's: every route after this sees that project's objects only (another project's ids
    are not found, 404, so its names do not leak)."""

    def check(request: Request, authorization: str | None = Header(None)) -> None:
        if not request.app.state.auth:
            return
        token = authorization[7:].strip() if authorization and authorization.startswith("Bearer ") else None
        request.state.project = check_token(request.app.state.registry, token, needed).project

    return Depends(check)


async def spec_of(request: Request) -> JobSpec:
    """The request's body as a job spec, refused with anytune's own messages (file: field: what)."""
    from anytune.jobfile import spec_from_dict

    try:
        raw = json.loads(await request.body() or b"null")
    except json.JSONDecodeError as exc:
        raise UsageError(f"the body is not JSON: {exc.msg}") from None
    except UnicodeDecodeError as exc:  # bytes that are not text at all (found by schemathesis)
        raise UsageError(f"the body is not JSON: not UTF-8 text at byte {exc.start}") from None
    except RecursionError:
        raise UsageError("the body is not a job spec: JSON nested too deeply") from None
    except ValueError as exc:  # an integer of thousands of digits: Python's limit on converting one
        raise UsageError(f"the body is not a job spec: {exc}") from None
    if not isinstance(raw, dict):
        raise UsageError("the body must be a job spec (a JSON object)")
    return spec_from_dict(raw, source="request body")


def check_data_paths(paths: list[str]) -> None:
    """Data files are uploaded datasets (`dataset:sha256:...`, always allowed) or paths on the server: with
    ANYTUNE_DATA_ROOT set, only files under it may be read (a request must not make the server read, and
    quote back, any file its user can read)."""
    root = os.environ.get("ANYTUNE_DATA_ROOT")
    if not root:
        return
    base = resolved(root)
    for path in paths:
        if path.startswith("dataset:"):
            continue
        if not resolved(path).is_relative_to(base):
            raise UsageError(
                f"{path}: outside the server's data folder",
                hint=f"put data files under {base} (ANYTUNE_DATA_ROOT)",
            )


def spec_paths(spec: JobSpec) -> list[str]:
    """Every file a spec makes the server read: its data, its evaluation data, its Python graders' files."""
    return spec.files_read()
