"""The service's REST API (FastAPI), on top of the Client: no second code path for the same work. Imported
only by `anytune server` (and tests), so FastAPI is imported at the top, where it resolves the annotations.

Every route is scoped (`read` < `submit` < `admin`) and needs `Authorization: Bearer <token>` unless the app
is made with `auth=False` (only for 127.0.0.1; `anytune server` warns on any other address). Errors are one
JSON shape, `{"error": {"type", "message", "hint", "details"}}`, carrying anytune's own message and hint.
A job create with an `Idempotency-Key` header returns the same job for the same key and body, and refuses
the key with another body; the key is claimed before the job is submitted, so a retried request never
submits a second job.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from anytune import __version__
from anytune.client import Client
from anytune.data.formats import DataFormat
from anytune.errors import (
    AnytuneError,
    BackendError,
    CapabilityError,
    DataError,
    NotFoundError,
    SpecError,
    UsageError,
)
from anytune.paths import resolved
from anytune.registry.access import (
    AccessDenied,
    IdempotencyConflict,
    check_token,
    claim_key,
    complete_key,
    release_key,
)
from anytune.registry.store import new_job_id
from anytune.service.observe import event_stream, prometheus_text
from anytune.service.webhooks import add_webhook, list_webhooks, remove_webhook

MAX_BODY_BYTES = 1 * 2**20  # a job spec or a quote request; data files are paths on the server
INT_MAX = 2**31 - 1  # every integer a request may carry fits the databases' INTEGER
API_PREFIX = "/v1"


class ContinueBody(BaseModel):
    step: int | None = Field(
        None, ge=0, le=INT_MAX, description="the checkpoint's step; the last one if omitted"
    )
    overrides: list[str] = Field(default_factory=list, description="KEY=VALUE changes to the spec")


class WebhookBody(BaseModel):
    url: str = Field(..., description="where to POST each event (http or https)")
    secret: str | None = Field(None, description="the signing secret; one is made if omitted")
    kinds: list[str] | None = Field(None, description="only these event kinds (status, log, metric...)")
    from_start: bool = Field(False, description="deliver the events recorded before this webhook too")


class ValidateBody(BaseModel):
    path: str = Field(..., description="a data file on the server")
    format: DataFormat | Literal["auto"] = Field(
        "auto", description="the file's format, or auto to detect it"
    )
    tokenizer: str | None = Field(None, description="quicktok:<encoding>, a tokenizer folder, or approx")
    max_seq_length: int | None = Field(None, ge=1, le=INT_MAX)


def check_data_paths(paths: list[str]) -> None:
    """Data files are paths on the server: with ANYTUNE_DATA_ROOT set, only files under it may be read
    (a request must not make the server read, and quote back, any file its user can read)."""
    root = os.environ.get("ANYTUNE_DATA_ROOT")
    if not root:
        return
    base = resolved(root)
    for path in paths:
        if not resolved(path).is_relative_to(base):
            raise UsageError(
                f"{path}: outside the server's data folder",
                hint=f"put data files under {base} (ANYTUNE_DATA_ROOT)",
            )


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
                    "Data paths are paths on the server.",
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
        404: "no such job, model, webhook or route",
        405: "a method the path does not have (Allow lists those it has)",
        409: "an Idempotency-Key whose first request is still being handled",
        413: "the body is over 1 MB",
        422: "an invalid spec, data a provider refuses, or a key reused with another body",
        502: "a provider's error",
    }.items()
}


def status_of(exc: AnytuneError) -> int:
    if isinstance(exc, AccessDenied | IdempotencyConflict):
        return exc.status
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, SpecError | DataError | CapabilityError):
        return 422
    if isinstance(exc, UsageError):
        return 400
    if isinstance(exc, BackendError):
        return 502
    return 500


def error_body(
    kind: str, message: str, hint: str | None = None, details: list[str] | None = None
) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, "hint": hint, "details": details or []}}


def create_app(client: Client | None = None, *, auth: bool = True) -> FastAPI:
    app = FastAPI(
        title="anytune",
        version=__version__,
        description="One API over fine-tuning providers: jobs, quotes, data checks, models, evaluations.",
        responses=ERRORS,
    )
    app.state.client = client  # the Client every route works through (made on first use if not given)

    def the_client() -> Client:
        if app.state.client is None:
            app.state.client = Client()
        return app.state.client  # type: ignore[no-any-return]

    @app.exception_handler(AnytuneError)
    async def anytune_error(_request: Request, exc: AnytuneError) -> JSONResponse:
        return JSONResponse(
            error_body(type(exc).__name__, exc.message, exc.hint, exc.details), status_code=status_of(exc)
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Starlette's own errors (404 no route, 405 wrong method) in anytune's error shape; a 405 names
        every method of the path (Starlette names only those of the first route that matched it)."""
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allowed = set()
            for route in app.router.routes:
                match, _ = route.matches({"type": "http", "path": request.url.path, "method": "__none__"})
                if match is not Match.NONE and getattr(route, "methods", None):
                    allowed |= set(route.methods)  # type: ignore[attr-defined]
            headers["Allow"] = ", ".join(sorted(allowed))
        kind = {404: "NotFoundError", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
        return JSONResponse(error_body(kind, str(exc.detail)), exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        broken = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if broken is not None:  # not a spec with a wrong field: not JSON at all
            reason = (broken.get("ctx") or {}).get("error", broken["msg"])
            return JSONResponse(error_body("UsageError", f"the body is not JSON: {reason}"), 400)
        details = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors]
        return JSONResponse(error_body("RequestError", "the request is not valid", None, details), 422)

    @app.middleware("http")
    async def limit_size(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return JSONResponse(
                error_body(
                    "RequestTooLarge", f"the body is over {MAX_BODY_BYTES} bytes", "send data as paths"
                ),
                413,
            )
        return await call_next(request)

    def scope(needed: str) -> Any:
        def check(authorization: str | None = Header(None)) -> None:
            if not auth:
                return
            token = (
                authorization[7:].strip() if authorization and authorization.startswith("Bearer ") else None
            )
            check_token(the_client().registry, token, needed)

        return Depends(check)

    async def spec_of(request: Request) -> Any:
        from anytune.jobfile import spec_from_dict

        try:
            raw = json.loads(await request.body() or b"null")
        except json.JSONDecodeError as exc:
            raise UsageError(f"the body is not JSON: {exc.msg}") from None
        except UnicodeDecodeError as exc:  # bytes that are not text at all (found by schemathesis)
            raise UsageError(f"the body is not JSON: not UTF-8 text at byte {exc.start}") from None
        if not isinstance(raw, dict):
            raise UsageError("the body must be a job spec (a JSON object)")
        return spec_from_dict(raw, source="request body")

    # ---------------------------------------------------------------------------------------- health

    @app.get(f"{API_PREFIX}/health/live")
    def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(f"{API_PREFIX}/health/ready")
    def ready() -> JSONResponse:
        from sqlalchemy import text

        try:
            with the_client().registry.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # the database is what readiness is about
            return JSONResponse({"status": "unavailable", "database": type(exc).__name__}, 503)
        return JSONResponse({"status": "ready", "database": "ok"})

    # ------------------------------------------------------------------------------------------ jobs

    @app.post(f"{API_PREFIX}/jobs", status_code=201, dependencies=[scope("submit")], openapi_extra=SPEC_BODY)
    async def create_job(request: Request, idempotency_key: str | None = Header(None)) -> JSONResponse:
        """Check, record and submit a job (201 with the job); the same Idempotency-Key and body give the
        same job (200)."""
        spec = await spec_of(request)
        evaluation = spec.evaluation.data if spec.evaluation is not None else None
        check_data_paths(
            [p for p in (spec.data.train, spec.data.validation, spec.data.test, evaluation) if p]
        )
        body = await request.body()

        def create() -> JSONResponse:  # on a worker thread: checking and submitting take seconds
            registry = the_client().registry
            job_id = new_job_id()
            if idempotency_key:
                existing = claim_key(registry, idempotency_key, body, job_id)
                if existing is not None:
                    return JSONResponse(registry.get_job(existing).model_dump(mode="json"), 200)
            try:
                job = the_client().submit(spec, job_id=job_id)
            except BaseException:
                if idempotency_key:
                    release_key(registry, idempotency_key)
                raise
            if idempotency_key:
                complete_key(registry, idempotency_key, job.id)
            return JSONResponse(job.model_dump(mode="json"), 201)

        # the event loop stays free for every other request meanwhile (p99 latency under load)
        return await run_in_threadpool(create)

    @app.get(f"{API_PREFIX}/jobs", dependencies=[scope("read")])
    def list_jobs(
        status: str | None = None,
        provider: str | None = None,
        active: bool | None = Query(
            None, description="only jobs that have not ended (or only those that have)"
        ),
        limit: int = Query(50, ge=1, le=500),
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Newest first; `cursor` is the last job id of the previous page (`next_cursor`)."""
        jobs = the_client().registry.list_jobs(
            status=status, provider=provider, active=active, limit=limit + 1, after=cursor
        )
        page = jobs[:limit]
        more = len(jobs) > limit
        return {
            "jobs": [j.model_dump(mode="json") for j in page],
            "next_cursor": page[-1].id if more else None,
        }

    @app.get(f"{API_PREFIX}/jobs/{{job_id}}", dependencies=[scope("read")])
    def get_job(job_id: str) -> dict[str, Any]:
        return the_client().registry.get_job(job_id).model_dump(mode="json")  # type: ignore[no-any-return]

    @app.post(f"{API_PREFIX}/jobs/{{job_id}}/cancel", dependencies=[scope("submit")])
    def cancel_job(job_id: str) -> dict[str, Any]:
        return the_client().cancel(job_id).model_dump(mode="json")  # type: ignore[no-any-return]

    @app.post(f"{API_PREFIX}/jobs/{{job_id}}/pause", dependencies=[scope("submit")])
    def pause_job(job_id: str) -> dict[str, Any]:
        return the_client().pause(job_id).model_dump(mode="json")  # type: ignore[no-any-return]

    @app.post(f"{API_PREFIX}/jobs/{{job_id}}/resume", dependencies=[scope("submit")])
    def resume_job(job_id: str) -> dict[str, Any]:
        """Resume a paused job, restart a failed or cancelled one from its checkpoint (a new job), or finish
        submitting one that was recorded but never confirmed."""
        return the_client().resume(job_id).model_dump(mode="json")  # type: ignore[no-any-return]

    @app.post(f"{API_PREFIX}/jobs/{{job_id}}/continue", status_code=201, dependencies=[scope("submit")])
    def continue_job(job_id: str, body: ContinueBody | None = None) -> dict[str, Any]:
        """A new job training further from a finished job's checkpoint (the last, or `step`)."""
        body = body or ContinueBody()
        job = the_client().continue_job(job_id, step=body.step, overrides=body.overrides or None)
        return job.model_dump(mode="json")  # type: ignore[no-any-return]

    @app.get(
        f"{API_PREFIX}/jobs/{{job_id}}/events",
        dependencies=[scope("read")],
        responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
    )
    def job_events(
        job_id: str,
        request: Request,
        after: int = Query(0, ge=0, le=INT_MAX),
        stream: bool = False,
        last_event_id: str | None = Header(None),
    ) -> Any:
        """The job's events after `after` (their `seq`). With `stream=true` (or `Accept: text/event-stream`)
        they come as server-sent events, each with its seq as the event id, until the job has ended and
        every event is sent; a reconnecting client's `Last-Event-ID` resumes after the last one it got."""
        registry = the_client().registry
        registry.get_job(job_id)  # 404 before a stream starts
        if last_event_id and last_event_id.strip().isdigit():
            after = max(after, int(last_event_id))
        if not stream and "text/event-stream" not in request.headers.get("accept", ""):
            return [e.model_dump(mode="json") for e in registry.events(job_id, after=after, limit=1000)]
        return StreamingResponse(
            event_stream(registry, job_id, after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    # ---------------------------------------------------------------------------------------- data

    @app.post(f"{API_PREFIX}/data/validate", dependencies=[scope("submit")])
    def validate_data(body: ValidateBody) -> dict[str, Any]:
        """`anytune validate` on a file on the server: every issue with its line and field (the first 200)."""
        from anytune.data.tokens import get_token_counter
        from anytune.data.validate import validate_file

        check_data_paths([body.path])
        fmt = None if body.format == "auto" else DataFormat(body.format)
        report = validate_file(
            body.path,
            format=fmt,
            token_counter=get_token_counter(body.tokenizer),
            max_seq_length=body.max_seq_length,
            max_issues=200,
        )
        return report.model_dump(mode="json")  # type: ignore[no-any-return]

    # ------------------------------------------------------------------------------- quotes, catalog

    @app.post(f"{API_PREFIX}/quotes", dependencies=[scope("read")])
    async def quotes(
        request: Request,
        _spec: dict[str, Any] = SPEC_BODY,
        providers: str = "all",
        hardware: str | None = None,
    ) -> Any:
        """A spec priced on every provider named (or all), as `anytune quote --json`."""
        from anytune.workflows.compare import quote

        spec = await spec_of(request)
        table = await run_in_threadpool(quote, spec, providers, hardware=hardware, client=the_client())
        return json.loads(table.to_json())

    @app.get(f"{API_PREFIX}/plugins", dependencies=[scope("read")])
    def plugins() -> list[dict[str, Any]]:
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
            for p in the_client().plugins.plugins()
        ]

    # ------------------------------------------------------------------------ models and evaluations

    @app.get(f"{API_PREFIX}/models", dependencies=[scope("read")])
    def list_models(name: str | None = None) -> list[dict[str, Any]]:
        return [m.model_dump(mode="json") for m in the_client().registry.list_models(name)]

    @app.get(f"{API_PREFIX}/models/{{ref}}", dependencies=[scope("read")])
    def get_model(ref: str) -> dict[str, Any]:
        """`name` (newest version), `name@3` or `name@alias`."""
        return the_client().registry.get_model(ref).model_dump(mode="json")  # type: ignore[no-any-return]

    @app.put(f"{API_PREFIX}/models/{{name}}/aliases/{{alias}}", dependencies=[scope("submit")])
    def promote(name: str, alias: str, body: AliasBody) -> dict[str, Any]:
        """Point an alias (production, candidate...) at a version: `anytune models promote`."""
        model = the_client().registry.set_alias(name, alias, body.version)
        return model.model_dump(mode="json")  # type: ignore[no-any-return]

    @app.delete(
        f"{API_PREFIX}/models/{{name}}/aliases/{{alias}}", status_code=204, dependencies=[scope("submit")]
    )
    def demote(name: str, alias: str) -> Response:
        the_client().registry.remove_alias(name, alias)
        return Response(status_code=204)

    @app.get(f"{API_PREFIX}/evaluations", dependencies=[scope("read")])
    def evaluations(
        job_id: str | None = None,
        model_name: str | None = None,
        model_version: int | None = Query(None, ge=1, le=INT_MAX),
        dataset_fingerprint: str | None = None,
        subject: str | None = None,
    ) -> list[dict[str, Any]]:
        found = the_client().registry.evaluations(
            job_id=job_id,
            model_name=model_name,
            model_version=model_version,
            dataset_fingerprint=dataset_fingerprint,
            subject=subject,
        )
        return [e.model_dump(mode="json") for e in found]

    @app.post(f"{API_PREFIX}/evaluations", status_code=201, dependencies=[scope("submit")])
    def evaluate(body: EvalBody) -> dict[str, Any]:
        """`anytune eval` on the server: every target scored on the same data, the scores stored there. It
        answers when the scoring is done (minutes for a large file: clients wait without a timeout)."""
        changes = body.model_dump(exclude_none=True, exclude={"targets"})
        if "data" in changes:
            check_data_paths([changes["data"]])
        result = the_client().evaluate_targets(body.targets, changes=changes)
        return result.model_dump(mode="json", exclude={"references"})  # type: ignore[no-any-return]

    @app.get(
        f"{API_PREFIX}/reports",
        dependencies=[scope("read")],
        response_class=Response,
        responses={200: {"content": {"application/zip": {}}, "description": "report.html, report.md, plots"}},
    )
    def report(target: list[str] = Query(..., min_length=1, max_length=20)) -> Response:
        """`anytune report` on the server, from its registry: a zip of report.html, report.md and the plots."""
        import io
        import tempfile
        import zipfile

        from anytune.workflows.report import write_report

        with tempfile.TemporaryDirectory(prefix="anytune-report-") as folder:
            written = write_report(the_client(), target, Path(folder))
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for path in sorted(Path(folder).iterdir()):
                    archive.write(path, path.name)
                archive.writestr("warnings.json", json.dumps(written.warnings))
        return Response(buffer.getvalue(), media_type="application/zip")

    # ------------------------------------------------------------------------------------ webhooks

    @app.post(f"{API_PREFIX}/webhooks", status_code=201, dependencies=[scope("admin")])
    def create_webhook(body: WebhookBody) -> dict[str, Any]:
        """A receiver of every job event (or of `kinds`), signed with the secret returned here once."""
        info, secret = add_webhook(
            the_client().registry, body.url, secret=body.secret, kinds=body.kinds, from_start=body.from_start
        )
        return {**dataclasses.asdict(info), "secret": secret}

    @app.get(f"{API_PREFIX}/webhooks", dependencies=[scope("admin")])
    def webhooks() -> list[dict[str, Any]]:
        return [dataclasses.asdict(w) for w in list_webhooks(the_client().registry)]

    @app.delete(f"{API_PREFIX}/webhooks/{{webhook_id}}", status_code=204, dependencies=[scope("admin")])
    def delete_webhook(webhook_id: str) -> Response:
        remove_webhook(the_client().registry, webhook_id)
        return Response(status_code=204)

    # ------------------------------------------------------------------------------------- metrics

    @app.get("/metrics", dependencies=[scope("read")], response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """Prometheus' text format: jobs by status and provider, polls and provider errors by provider."""
        return PlainTextResponse(prometheus_text(the_client().registry))

    @app.get(f"{API_PREFIX}/prices", dependencies=[scope("read")])
    def prices() -> list[dict[str, Any]]:
        from anytune.cost.catalog import load_catalog

        return [e.model_dump(mode="json") for e in load_catalog().entries]

    return app
