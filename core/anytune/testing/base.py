"""What every emulator shares: its state lock, clock, faults and recorder, Bearer auth, error bodies in the
common `{"error": {...}}` shape, and turning an `ApiError` raised by a handler into that answer."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from anytune.jobs import JobStatus
from anytune.testing.asgi import EmulatorMiddleware, Recorder
from anytune.testing.clock import Clock, RealClock
from anytune.testing.faults import Faults


def error_body(
    status: int, message: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    kind = "server_error" if status >= 500 else ("requests" if status == 429 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class ApiError(Exception):
    """Raised by a handler to answer with an error (status, the provider's error shape, and any headers the
    provider sends with it). An emulator whose provider has another shape sets `body` in a subclass."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.body = status, error_body(status, message, code, param)
        self.headers: dict[str, str] = {}


class EmulatorBase:
    """What the conformance suite (`anytune.testing.conformance`) asks of an emulator, besides its routes:

    - `statuses`: every status the provider's jobs can show, each with the neutral status it means, written
      from the provider's documentation (not from the backend's map: the suite compares the two);
    - `methods` / `adapters`: what the provider offers (its documentation's words: sft, dpo, cpt; lora,
      full...), or None where it does not say; a backend that declares more is caught accepting what the
      provider would not run;
    - `create_route`: (method, path regex) of the request that creates a paid job, for fault injection;
    - `job_ids()`: the provider jobs created so far; `hold(job_id, status)`: put a job in a status and keep
      it there (the emulator's `_advance` must skip the jobs in `self.held`).
    """

    statuses: ClassVar[Mapping[str, JobStatus]] = {}
    create_route: ClassVar[tuple[str, str] | None] = None
    methods: ClassVar[frozenset[str] | None] = None
    adapters: ClassVar[frozenset[str] | None] = None

    def job_ids(self) -> list[str]:
        """The default reads `self.jobs` (id -> job), the convention of anytune's emulators."""
        jobs = getattr(self, "jobs", None)
        if not isinstance(jobs, dict):
            raise NotImplementedError(
                f"{type(self).__name__}.job_ids(): return the ids of the jobs created so far"
            )
        with self._lock:
            return list(jobs)

    def hold(self, job_id: str, status: str) -> None:
        """The default sets `self.jobs[job_id].status`; `_advance` must then skip the ids in `self.held`."""
        jobs = getattr(self, "jobs", None)
        if not isinstance(jobs, dict) or not hasattr(jobs.get(job_id), "status"):
            raise NotImplementedError(
                f"{type(self).__name__}.hold(): set the job's status and add its id to self.held"
            )
        with self._lock:
            jobs[job_id].status = status
            self.held.add(job_id)

    def __init__(
        self,
        *,
        api_key: str | None,
        clock: Clock | None,
        routes: list[Any],
        extra_headers: Callable[[], dict[str, str]] = dict,
        api_prefix: str | tuple[str, ...] = "/v1",
    ) -> None:
        from starlette.applications import Starlette

        self.api_key = api_key
        self.clock = clock or RealClock()
        self.faults = Faults()
        self.recorder = Recorder()
        self._lock = threading.RLock()
        self.held: set[str] = set()  # jobs `hold()` keeps in the status it set
        self.app = EmulatorMiddleware(
            Starlette(routes=routes),
            faults=self.faults,
            recorder=self.recorder,
            error_body=lambda status, message, code: self._error_body(status, message, code),
            authorize=self._authorized,
            extra_headers=extra_headers,
            api_prefix=api_prefix,
        )

    def _error_body(self, status: int, message: str, code: str | None) -> Any:
        """The body of an error the emulator's middleware answers (a refused key, an injected fault): OpenAI's
        shape unless the provider has its own."""
        return error_body(status, message, code)

    def _authorized(self, headers: dict[str, str]) -> bool:
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.startswith("Bearer ") else ""
        return bool(token) and (self.api_key is None or token == self.api_key)

    def _now(self) -> int:
        return int(self.clock.now())

    @staticmethod
    def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse(body, status_code=status, headers=headers)

    def _handle(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a handler body under the state lock; an ApiError becomes the provider's error answer."""
        with self._lock:
            try:
                return fn(*args)
            except ApiError as exc:
                return self._json(exc.status, exc.body, exc.headers)

    async def _with_body(self, request: Any, fn: Callable[[dict[str, Any]], Any]) -> Any:
        """Parse the JSON body (an unparsable one is a 400 in the provider's shape), then `_handle(fn, body)`."""
        try:
            body = await self._body(request)
        except ApiError as exc:
            return self._json(exc.status, exc.body)
        return self._handle(fn, body)

    @staticmethod
    async def _body(request: Any) -> dict[str, Any]:
        import json

        try:
            body = await request.json()
        except json.JSONDecodeError:
            raise ApiError(400, "We could not parse the JSON body of your request.") from None
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        return body
