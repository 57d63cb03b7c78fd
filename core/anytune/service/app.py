"""The service's REST API (FastAPI), on top of the Client: no second code path for the same work. Imported
only by `anytune server` (and tests), so FastAPI is imported at the top, where it resolves the annotations.

The routes live one module per resource in `anytune.service.routes`; what they share (scopes, the error
shape, bodies) in `anytune.service.common`. A job create with an `Idempotency-Key` header returns the same
job for the same key and body, and refuses the key with another body; the key is claimed before the job is
submitted, so a retried request never submits a second job.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from anytune import __version__
from anytune.asgi import replay_body
from anytune.client.inprocess import InProcessClient
from anytune.errors import AnytuneError
from anytune.registry import Registry
from anytune.service.common import (
    ERRORS,
    MAX_BODY_BYTES,
    check_data_paths,
    error_body,
    status_of,
)
from anytune.service.routes import admin, data, datasets, jobs, models

__all__ = ["check_data_paths", "create_app"]


def create_app(
    client: InProcessClient | None = None, *, registry: Registry | None = None, auth: bool = True
) -> FastAPI:
    """The API over `client` (this machine's registry by default); `registry` holds the service's own
    records (tokens, idempotency keys, webhooks) and is the client's unless another is given."""
    app = FastAPI(
        title="anytune",
        version=__version__,
        description="One API over fine-tuning providers: jobs, quotes, data checks, models, evaluations.",
        responses=ERRORS,
    )
    app.state.client = client = client or InProcessClient(registry)
    client.pipeline.may_read = check_data_paths  # whatever route names a file: only ANYTUNE_DATA_ROOT's
    app.state.registry = registry if registry is not None else client.pipeline.registry
    app.state.auth = auth
    _handle_errors(app)
    for router in (admin.health, jobs.router, data.router, datasets.router, models.router, admin.router):
        app.include_router(router)
    app.add_middleware(RequestGuard, max_body=MAX_BODY_BYTES)
    return app


def _handle_errors(app: FastAPI) -> None:
    """anytune's errors, Starlette's, FastAPI's request validation and oversized bodies, all answered in the
    one error shape with a 4xx status (a 5xx only for what is really the server's fault)."""

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


class RequestGuard:
    """What no route should have to think about, refused before any route runs: a NUL character in the path
    or the query (no database takes one: PostgreSQL refused the query with a 500), and a body over
    `max_body` bytes, however it is sent (with a Content-Length, or chunked: the body is read up to the limit
    and no further, so a 60 MB chunked body costs the server 1 MB, not 142)."""

    def __init__(self, app: Any, *, max_body: int) -> None:
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"")
        if "\x00" in scope["path"] or b"%00" in query or b"\x00" in query:
            await _answer(send, 400, "UsageError", "a NUL character in the path or the query")
            return
        if _streamed(scope["method"], scope["path"]):  # an upload: the route reads it as it arrives
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body:
            await _answer(send, 413, "RequestTooLarge", f"the body is over {self.max_body} bytes")
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: the route never runs
                return
            body += message.get("body", b"")
            if len(body) > self.max_body:
                await _answer(send, 413, "RequestTooLarge", f"the body is over {self.max_body} bytes")
                return
            if not message.get("more_body"):
                break
        await self.app(scope, replay_body(bytes(body), receive), send)


def _streamed(method: str, path: str) -> bool:
    return any(
        method == m and (path == p or (p.endswith("/") and path.startswith(p) and "/" not in path[len(p) :]))
        for m, p in datasets.STREAMED
    )


async def _answer(send: Any, status: int, kind: str, message: str) -> None:
    import json

    hint = "send data as paths" if status == 413 else None
    body = json.dumps(error_body(kind, message, hint)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 413:
        headers.append((b"connection", b"close"))  # the rest of the body is not read
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
