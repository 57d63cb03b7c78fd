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

import json
from typing import Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from anytune import __version__
from anytune.client import Client
from anytune.errors import (
    AnytuneError,
    BackendError,
    CapabilityError,
    DataError,
    NotFoundError,
    SpecError,
    UsageError,
)
from anytune.registry.access import (
    AccessDenied,
    IdempotencyConflict,
    check_token,
    claim_key,
    complete_key,
    release_key,
)
from anytune.registry.store import new_job_id

MAX_BODY_BYTES = 1 * 2**20  # a job spec or a quote request; data files are paths on the server
API_PREFIX = "/v1"


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
    )
    state: dict[str, Client] = {}

    def the_client() -> Client:
        if "client" not in state:
            state["client"] = client or Client()
        return state["client"]

    @app.exception_handler(AnytuneError)
    async def anytune_error(_request: Request, exc: AnytuneError) -> JSONResponse:
        return JSONResponse(
            error_body(type(exc).__name__, exc.message, exc.hint, exc.details), status_code=status_of(exc)
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
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

    @app.post(f"{API_PREFIX}/jobs", status_code=201, dependencies=[scope("submit")])
    async def create_job(request: Request, idempotency_key: str | None = Header(None)) -> JSONResponse:
        spec = await spec_of(request)
        registry = the_client().registry
        job_id = new_job_id()
        if idempotency_key:
            existing = claim_key(registry, idempotency_key, await request.body(), job_id)
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

    @app.get(f"{API_PREFIX}/jobs", dependencies=[scope("read")])
    def list_jobs(
        status: str | None = None, provider: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> dict[str, Any]:
        """Newest first; `cursor` is the last job id of the previous page (`next_cursor`)."""
        limit = max(1, min(limit, 500))
        jobs = the_client().registry.list_jobs(
            status=status, provider=provider, limit=limit + 1, after=cursor
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

    # ------------------------------------------------------------------------------- quotes, catalog

    @app.post(f"{API_PREFIX}/quotes", dependencies=[scope("read")])
    async def quotes(request: Request, providers: str = "all", hardware: str | None = None) -> Any:
        from anytune.workflows.compare import quote

        spec = await spec_of(request)
        table = quote(spec, providers, hardware=hardware, client=the_client())
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

    @app.get(f"{API_PREFIX}/prices", dependencies=[scope("read")])
    def prices() -> list[dict[str, Any]]:
        from anytune.cost.catalog import load_catalog

        return [e.model_dump(mode="json") for e in load_catalog().entries]

    return app
