"""The Client's interface over HTTP: `Client(url="http://host:8000", token=...)` talks to `anytune server`.

The same methods as the in-process Client, for what a client of a service does: submit and run jobs, follow
them, cancel, pause, resume and continue them, quote, and read the registry (`client.registry.get_job`,
`list_jobs`, `events`, models and evaluations). The server does the work (its workers poll the providers and
run the evaluations); this side only asks and shows, and writes nothing to a local registry.

Errors come back as the AnytuneError the server raised (same class, message, hint and details), so code and
the CLI handle them alike in both transports.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anytune import errors
from anytune.errors import AnytuneError, BackendError, UsageError
from anytune.jobs import Event, Job, JobStatus
from anytune.registry.records import EvaluationRecord, ModelVersion
from anytune.spec import EvalSpec, JobSpec

if TYPE_CHECKING:
    from anytune.cost.table import QuoteTable
    from anytune.evaluation.runner import EvalResult

RETRY_S = 60.0  # how long a request is retried while the server cannot be reached (it may be restarting)


@dataclass
class RunResult:
    """What `run` did: the job as it ended (or as submitted, detached) and its evaluation, if any (the
    in-process Client's RunResult, whose module this one cannot import: that would be an import loop)."""

    job: Job
    evaluation: Any = None


class RemoteRegistry:
    """The registry's read methods (and alias moves), answered by the server."""

    def __init__(self, client: RemoteClient) -> None:
        self._c = client

    def get_job(self, job_id: str) -> Job:
        return Job.model_validate(self._c.call("GET", f"/v1/jobs/{job_id}"))

    def list_jobs(
        self,
        *,
        status: str | None = None,
        provider: str | None = None,
        active: bool | None = None,
        limit: int | None = 100,
    ) -> list[Job]:
        jobs: list[Job] = []
        cursor = None
        while limit is None or len(jobs) < limit:
            params: dict[str, Any] = {"limit": 500 if limit is None else min(500, limit - len(jobs))}
            params.update(
                {k: v for k, v in (("status", status), ("provider", provider), ("cursor", cursor)) if v}
            )
            if active is not None:
                params["active"] = str(active).lower()
            page = self._c.call("GET", "/v1/jobs", params=params)
            jobs.extend(Job.model_validate(j) for j in page["jobs"])
            cursor = page["next_cursor"]
            if not cursor:
                break
        return jobs

    def events(
        self, job_id: str, *, after: int = 0, kind: str | None = None, limit: int | None = None
    ) -> list[Event]:
        found: list[Event] = []
        while True:
            page = [
                Event.model_validate(e)
                for e in self._c.call("GET", f"/v1/jobs/{job_id}/events", params={"after": after})
            ]
            found.extend(e for e in page if kind is None or e.kind.value == kind)
            if len(page) < 1000 or (limit is not None and len(found) >= limit):
                return found[:limit] if limit is not None else found
            after = page[-1].seq

    def list_models(self, name: str | None = None) -> list[ModelVersion]:
        answer = self._c.call("GET", "/v1/models", params={"name": name} if name else None)
        return [ModelVersion.model_validate(m) for m in answer]

    def models_for_job(self, job_id: str) -> list[ModelVersion]:
        return [m for m in self.list_models() if m.job_id == job_id]

    def get_model(self, ref: str) -> ModelVersion:
        return ModelVersion.model_validate(self._c.call("GET", f"/v1/models/{ref}"))

    def set_alias(self, name: str, alias: str, version: int) -> ModelVersion:
        answer = self._c.call("PUT", f"/v1/models/{name}/aliases/{alias}", json={"version": version})
        return ModelVersion.model_validate(answer)

    def remove_alias(self, name: str, alias: str) -> None:
        self._c.call("DELETE", f"/v1/models/{name}/aliases/{alias}")

    def evaluations(self, **filters: Any) -> list[EvaluationRecord]:
        params = {k: v for k, v in filters.items() if v is not None}
        return [
            EvaluationRecord.model_validate(e) for e in self._c.call("GET", "/v1/evaluations", params=params)
        ]


class RemoteClient:
    """`Client(url=..., token=...)`: the Client over HTTP (see the module's docstring)."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 120.0) -> None:
        import httpx

        if not url.startswith(("http://", "https://")):
            raise UsageError(f"server {url!r} is not an http(s) URL", hint="e.g. http://127.0.0.1:8000")
        self.url = url.rstrip("/")
        token = token if token is not None else os.environ.get("ANYTUNE_TOKEN") or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self.registry = RemoteRegistry(self)

    # ------------------------------------------------------------------------------------------ HTTP

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request, its JSON answer; while the server cannot be reached (restarting) it is retried for up
        to a minute; an error answer is raised as the AnytuneError the server raised."""
        answer = self._send(method, path, **kwargs)
        return None if answer.status_code == 204 else answer.json()

    def _http_bytes(self, method: str, path: str, **kwargs: Any) -> bytes:
        return self._send(method, path, **kwargs).content  # type: ignore[no-any-return]

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        deadline = time.monotonic() + RETRY_S
        while True:
            try:
                answer = self._http.request(method, path, **kwargs)
                break
            except httpx.TransportError as exc:
                if time.monotonic() > deadline:
                    raise BackendError(
                        f"the anytune server at {self.url} cannot be reached: {type(exc).__name__}",
                        hint="is `anytune server` running there? (ANYTUNE_SERVER / --server name it)",
                        retryable=True,
                    ) from None
                time.sleep(0.5)
        if answer.status_code >= 400:
            try:
                body = answer.json()
            except ValueError:
                body = None
            raise _error(answer.status_code, body, answer.text)
        return answer

    # ------------------------------------------------------------------------------------------- jobs

    def submit(self, spec: JobSpec, *, job_id: str | None = None) -> Job:
        """Check, record and submit on the server; retried with one Idempotency-Key, so a retry after a lost
        answer returns the same job instead of submitting a second one."""
        if job_id is not None:
            raise UsageError("a job id cannot be chosen through the server")
        key = f"cli-{uuid.uuid4().hex}"
        body = spec.model_dump(mode="json", exclude_none=True)
        while True:
            try:
                return Job.model_validate(
                    self.call("POST", "/v1/jobs", json=body, headers={"Idempotency-Key": key})
                )
            except AnytuneError as exc:
                if getattr(exc, "status", None) != 409:
                    raise
                time.sleep(0.5)  # the first copy of this request is still being handled

    def run(
        self,
        spec: JobSpec,
        *,
        evaluate: bool = True,
        detach: bool = False,
        interval: float | None = None,
        on_preflight: Callable[[Any], None] | None = None,
        on_submitted: Callable[[Job], None] | None = None,
        on_update: Callable[[Job, list[Event]], None] | None = None,
        on_evaluation: Callable[[str], None] | None = None,
    ) -> Any:
        """Submit on the server, follow it there, and wait for the evaluation its worker runs."""
        from anytune.evaluation.runner import EvalResult

        job = self.submit(spec)
        if on_submitted is not None:
            on_submitted(job)
        if detach:
            return RunResult(job)
        job = self.follow(job.id, interval=interval, on_update=on_update)
        if not evaluate or job.status is not JobStatus.SUCCEEDED or job.spec.evaluation is None:
            return RunResult(job)
        if on_evaluation is not None:
            on_evaluation("on the server")
        seen = 0
        while True:
            for event in self.registry.events(job.id, after=seen):
                seen = event.seq
                if "evaluation" in event.data:
                    result = event.data["evaluation"]
                    if result is None:
                        raise AnytuneError(event.message)
                    return RunResult(job, EvalResult.model_validate(result))
            time.sleep(self._interval(interval))

    def follow(
        self,
        job_id: str,
        *,
        interval: float | None = None,
        timeout: float | None = None,
        on_update: Callable[[Job, list[Event]], None] | None = None,
    ) -> Job:
        """Until the job ends (or `timeout`): its state and new events, as the server's workers record them."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = 0
        while True:
            job = self.registry.get_job(job_id)
            events = self.registry.events(job_id, after=seen)
            if events:
                seen = events[-1].seq
            if on_update is not None:
                on_update(job, events)
            if job.status.terminal or (deadline is not None and time.monotonic() > deadline):
                return job
            time.sleep(self._interval(interval))

    def refresh(self, job_id: str) -> Job:
        return self.registry.get_job(job_id)  # the server's workers keep it current

    def cancel(self, job_id: str) -> Job:
        return Job.model_validate(self.call("POST", f"/v1/jobs/{job_id}/cancel"))

    def pause(self, job_id: str) -> Job:
        return Job.model_validate(self.call("POST", f"/v1/jobs/{job_id}/pause"))

    def resume(self, job_id: str) -> Job:
        return Job.model_validate(self.call("POST", f"/v1/jobs/{job_id}/resume"))

    def continue_job(
        self, job_id: str, *, step: int | None = None, overrides: list[str] | None = None
    ) -> Job:
        body = {"step": step, "overrides": overrides or []}
        return Job.model_validate(self.call("POST", f"/v1/jobs/{job_id}/continue", json=body))

    def migrate(self, job_id: str, to: str, *, overrides: Any = ()) -> Job:
        raise UsageError(
            "migrating a job runs in this process, on its own registry",
            hint="run `anytune jobs migrate` on the server machine, or unset ANYTUNE_SERVER",
        )

    def quote(
        self,
        spec: JobSpec,
        providers: str | Sequence[str] = "all",
        *,
        hardware: str | Sequence[str] | None = None,
        prices: Sequence[str | Path] = (),
    ) -> QuoteTable:
        """`spec` priced on the server's backends and catalog (its installed plugins, its price files);
        `anytune.quote(spec, client=Client(url=...))` calls this."""
        from anytune.cost.table import QuoteTable

        if prices:
            raise UsageError(
                "price override files are read where the quote is made, and the server makes this one",
                hint="put them in the server's ANYTUNE_PRICES, or unset ANYTUNE_SERVER for this quote",
            )
        params = {  # comma-separated, as `anytune quote --providers a,b` takes them
            k: v if isinstance(v, str) else ",".join(v)
            for k, v in (("providers", providers), ("hardware", hardware))
            if v
        }
        answer = self.call(
            "POST", "/v1/quotes", json=spec.model_dump(mode="json", exclude_none=True), params=params
        )
        return QuoteTable.from_json(spec, answer)

    def evaluate_targets(
        self,
        targets: list[str],
        spec: EvalSpec | None = None,
        *,
        changes: dict[str, Any] | None = None,
        on_progress: Callable[[str], None] = lambda _s: None,
    ) -> EvalResult:
        """Scored on the server, stored in its registry; waits, without a timeout, until the scoring ends."""
        from anytune.evaluation.runner import EvalResult

        sent = ("data", "metrics", "compare_base", "limit", "max_new_tokens", "judge")
        given = {**(spec.model_dump(mode="json") if spec else {}), **(changes or {})}
        body = {"targets": targets, **{k: v for k, v in given.items() if k in sent and v is not None}}
        on_progress("on the server")
        return EvalResult.model_validate(self.call("POST", "/v1/evaluations", json=body, timeout=None))

    def evaluate(
        self, job_id: str, spec: EvalSpec | None = None, on_progress: Callable[[str], None] = lambda _s: None
    ) -> EvalResult:
        return self.evaluate_targets([job_id], spec, on_progress=on_progress)

    def fetch_report(self, targets: list[str], folder: Path) -> tuple[list[Path], list[str]]:
        """The server's report on `targets` unpacked into `folder`: the files written, and the report's
        warnings (`anytune.workflows.report.write_report` calls this for a remote client)."""
        import io
        import json
        import zipfile

        answer = self._http_bytes("GET", "/v1/reports", params=[("target", t) for t in targets])
        folder.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        warnings: list[str] = []
        with zipfile.ZipFile(io.BytesIO(answer)) as archive:
            for name in archive.namelist():
                if name != Path(name).name or name.startswith("."):
                    continue  # only plain file names: nothing is written outside the folder
                if name == "warnings.json":
                    warnings = [str(w) for w in json.loads(archive.read(name))]
                    continue
                (folder / name).write_bytes(archive.read(name))
                written.append(folder / name)
        return written, warnings

    def close(self) -> None:
        self._http.close()

    @staticmethod
    def _interval(interval: float | None) -> float:
        if interval is not None:
            return interval
        return float(os.environ.get("ANYTUNE_POLL_INTERVAL") or 1.0)


def _error(status: int, body: Any, text: str) -> AnytuneError:
    """The server's error as the AnytuneError class it names (a generic one if it names none)."""
    detail = body.get("error") if isinstance(body, dict) else None
    if not isinstance(detail, dict):
        return BackendError(f"the anytune server answered {status}: {text[:300]}", status=status)
    cls = getattr(errors, str(detail.get("type")), None)
    message, hint, details = detail.get("message", ""), detail.get("hint"), detail.get("details") or []
    exc: AnytuneError
    if cls is BackendError:
        exc = BackendError(message, hint=hint, status=status)
    elif isinstance(cls, type) and issubclass(cls, AnytuneError):
        try:
            exc = cls(message, hint=hint, details=details)
        except TypeError:  # an error class with other arguments: its words all the same
            exc = AnytuneError(message, hint=hint, details=details)
    else:  # AccessDenied, IdempotencyConflict, RequestError: the service's own
        exc = AnytuneError(message, hint=hint, details=details)
    exc.details = list(details)
    exc.status = status  # type: ignore[attr-defined]
    return exc
