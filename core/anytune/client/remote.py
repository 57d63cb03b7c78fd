"""`Client(url="http://host:8000", token=...)`: the Client's interface over HTTP to `anytune server`.

The server does the work (its workers poll the providers and run the evaluations; data paths are paths on
the server); this side asks and shows, and writes nothing to a registry of its own. Errors come back as
the AnytuneError the server raised (same class, message, hint and details), so code and the CLI handle them
alike in both transports. A server that cannot be reached (restarting) is retried for up to a minute.
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from anytune import errors
from anytune.api import EvalTarget, ReportFiles, RunObserver, no_progress
from anytune.client import Client
from anytune.errors import AnytuneError, BackendError, UsageError
from anytune.jobs import Event, Job, JobStatus, ModelArtifact
from anytune.pipeline.follow import follow_loop
from anytune.registry.records import EvaluationRecord, ModelVersion
from anytune.settings import anytune_home
from anytune.spec import EvalSpec, JobSpec

if TYPE_CHECKING:
    import httpx

    from anytune.cost.table import QuoteTable
    from anytune.evaluation.runner import EvalResult

RETRY_S = 60.0  # how long a request is retried while the server cannot be reached (it may be restarting)


class RemoteClient(Client):
    def __init__(
        self,
        registry: Any = None,
        plugins: Any = None,
        *,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 120.0,
    ) -> None:
        import httpx

        if registry is not None or plugins is not None:
            raise UsageError("a client of a server uses the server's registry and plugins, not its own")
        if not url or not url.startswith(("http://", "https://")):
            raise UsageError(f"server {url!r} is not an http(s) URL", hint="e.g. http://127.0.0.1:8000")
        self.url = url.rstrip("/")
        token = token if token is not None else os.environ.get("ANYTUNE_TOKEN") or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    # ------------------------------------------------------------------------------------------ HTTP

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request, its JSON answer; an error answer is raised as the AnytuneError the server raised."""
        answer = self._send(method, path, **kwargs)
        return None if answer.status_code == 204 else answer.json()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        import httpx

        retrying = Retrying(
            retry=retry_if_exception_type(httpx.TransportError),
            stop=stop_after_delay(RETRY_S),
            wait=wait_fixed(0.5),
            reraise=True,
        )
        try:
            answer = retrying(self._http.request, method, path, **kwargs)
        except httpx.TransportError as exc:
            raise BackendError(
                f"the anytune server at {self.url} cannot be reached: {type(exc).__name__}",
                hint="is `anytune server` running there? (ANYTUNE_SERVER / --server name it)",
                retryable=True,
            ) from None
        if answer.status_code >= 400:
            try:
                body = answer.json()
            except ValueError:
                body = None
            raise server_error(answer.status_code, body, answer.text)
        return answer

    # ------------------------------------------------------------------------------------------- jobs

    def submit(self, spec: JobSpec, *, job_id: str | None = None) -> Job:
        """Sent with one Idempotency-Key however often it is retried: a retry after a lost answer returns the
        same job instead of submitting a second one."""
        if job_id is not None:
            raise UsageError("a job id cannot be chosen through the server")
        key = f"cli-{uuid.uuid4().hex}"
        body = spec.model_dump(mode="json", exclude_none=True)
        while True:
            try:
                answer = self.call("POST", "/v1/jobs", json=body, headers={"Idempotency-Key": key})
                return Job.model_validate(answer)
            except AnytuneError as exc:
                if getattr(exc, "status", None) != 409:
                    raise
                time.sleep(0.5)  # the first copy of this request is still being handled

    def _submit_for_run(self, spec: JobSpec, seen: RunObserver) -> Job:
        return self.submit(spec)  # the server checks it (no preflight to show here)

    def _evaluation_of_run(self, job: Job, seen: RunObserver, interval: float | None) -> EvalResult:
        """The server's worker evaluates the job; its result is the job's `evaluated` event."""
        from anytune.evaluation.runner import EvalResult

        seen.evaluating("on the server")
        after = 0
        while True:
            for event in self.events(job.id, after=after):
                after = event.seq
                if "evaluation" in event.data:
                    result = event.data["evaluation"]
                    if result is None:
                        raise AnytuneError(event.message)
                    return EvalResult.model_validate(result)
            time.sleep(self.poll_delay(job.id) if interval is None else interval)

    def follow(
        self,
        job_id: str,
        *,
        interval: float | None = None,
        timeout: float | None = None,
        on_update: Callable[[Job, list[Event]], None] | None = None,
    ) -> Job:
        return follow_loop(self, job_id, interval=interval, timeout=timeout, on_update=on_update)

    def refresh(self, job_id: str) -> Job:
        return self.get_job(job_id)  # the server's workers keep it current

    def poll_delay(self, job_id: str) -> float:
        return float(os.environ.get("ANYTUNE_POLL_INTERVAL") or 1.0)

    def get_job(self, job_id: str) -> Job:
        return Job.model_validate(self.call("GET", f"/v1/jobs/{job_id}"))

    def list_jobs(
        self,
        *,
        status: str | None = None,
        provider: str | None = None,
        active: bool | None = None,
        limit: int | None = 100,
        after: str | None = None,
    ) -> list[Job]:
        jobs: list[Job] = []
        cursor = after
        while limit is None or len(jobs) < limit:
            params: dict[str, Any] = {"limit": 500 if limit is None else min(500, limit - len(jobs))}
            params.update(
                {k: v for k, v in (("status", status), ("provider", provider), ("cursor", cursor)) if v}
            )
            if active is not None:
                params["active"] = str(active).lower()
            page = self.call("GET", "/v1/jobs", params=params)
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
                for e in self.call("GET", f"/v1/jobs/{job_id}/events", params={"after": after})
            ]
            found.extend(e for e in page if kind is None or e.kind.value == kind)
            if len(page) < 1000 or (limit is not None and len(found) >= limit):
                return found[:limit] if limit is not None else found
            after = page[-1].seq

    def cancel(self, job_id: str) -> Job:
        return Job.model_validate(self.call("POST", f"/v1/jobs/{job_id}/cancel"))

    def pause(self, job_id: str) -> Job:
        return Job.model_validate(self.call("POST", f"/v1/jobs/{job_id}/pause"))

    def resume(self, job_id: str) -> Job:
        return Job.model_validate(self.call("POST", f"/v1/jobs/{job_id}/resume"))

    def continue_job(self, job_id: str, *, step: int | None = None, overrides: Sequence[str] = ()) -> Job:
        body = {"step": step, "overrides": list(overrides)}
        return Job.model_validate(self.call("POST", f"/v1/jobs/{job_id}/continue", json=body))

    def migrate(self, job_id: str, to: str, *, overrides: Sequence[str] = ()) -> Job:
        body = {"to": to, "overrides": list(overrides)}
        return Job.model_validate(self.call("POST", f"/v1/jobs/{job_id}/migrate", json=body))

    # ----------------------------------------------------------------------------------------- models

    def list_models(self, name: str | None = None) -> list[ModelVersion]:
        answer = self.call("GET", "/v1/models", params={"name": name} if name else None)
        return [ModelVersion.model_validate(m) for m in answer]

    def get_model(self, ref: str) -> ModelVersion:
        return ModelVersion.model_validate(self.call("GET", f"/v1/models/{ref}"))

    def models_for_job(self, job_id: str) -> list[ModelVersion]:
        answer = self.call("GET", "/v1/models", params={"job_id": self.get_job(job_id).id})
        return sorted((ModelVersion.model_validate(m) for m in answer), key=lambda m: m.version)

    def set_alias(self, name: str, alias: str, version: int) -> ModelVersion:
        answer = self.call("PUT", f"/v1/models/{name}/aliases/{alias}", json={"version": version})
        return ModelVersion.model_validate(answer)

    def remove_alias(self, name: str, alias: str) -> None:
        self.call("DELETE", f"/v1/models/{name}/aliases/{alias}")

    def export(
        self, ref: str, out_dir: Path, *, dtype: str = "float32", register: bool = True
    ) -> tuple[ModelArtifact, ModelVersion | None]:
        raise UsageError(
            "exports write the model's files where its weights are, and the server holds them",
            hint="run `anytune export` on the server machine, or unset ANYTUNE_SERVER",
        )

    # ------------------------------------------------------------------------------------- evaluation

    def resolve_target(self, target: str) -> EvalTarget:
        if target.startswith("job-"):
            job = self.get_job(target)
            if job.status is not JobStatus.SUCCEEDED or job.artifact is None:
                raise UsageError(
                    f"job {job.id} has not succeeded (status: {job.status.value}); nothing to evaluate"
                )
            models = self.models_for_job(job.id)
            base = job.spec.model_for(job.provider)
            return EvalTarget(target, job.provider, job.artifact, base, job, models[-1] if models else None)
        model = self.get_model(target)
        job = self.get_job(model.job_id) if model.job_id else None
        return EvalTarget(model.ref, model.provider, model.artifact, model.base_model, job, model)

    def evaluate(
        self, job_id: str, spec: EvalSpec | None = None, on_progress: Callable[[str], None] = no_progress
    ) -> EvalResult:
        return self.evaluate_targets([job_id], spec, on_progress=on_progress)

    def evaluate_targets(
        self,
        targets: list[str],
        spec: EvalSpec | None = None,
        *,
        changes: dict[str, Any] | None = None,
        on_progress: Callable[[str], None] = no_progress,
    ) -> EvalResult:
        """Scored on the server, stored in its registry; waits, without a timeout, until the scoring ends."""
        from anytune.evaluation.runner import EvalResult

        sent = ("data", "metrics", "compare_base", "limit", "max_new_tokens", "judge")
        given = {**(spec.model_dump(mode="json") if spec else {}), **(changes or {})}
        body = {"targets": targets, **{k: v for k, v in given.items() if k in sent and v is not None}}
        on_progress("on the server")
        return EvalResult.model_validate(self.call("POST", "/v1/evaluations", json=body, timeout=None))

    def evaluations(
        self,
        *,
        job_id: str | None = None,
        model_name: str | None = None,
        model_version: int | None = None,
        dataset_fingerprint: str | None = None,
        subject: str | None = None,
    ) -> list[EvaluationRecord]:
        filters = {
            "job_id": job_id,
            "model_name": model_name,
            "model_version": model_version,
            "dataset_fingerprint": dataset_fingerprint,
            "subject": subject,
        }
        params = {k: v for k, v in filters.items() if v is not None}
        return [
            EvaluationRecord.model_validate(e) for e in self.call("GET", "/v1/evaluations", params=params)
        ]

    # ----------------------------------------------------------------------------- quotes and reports

    def quote(
        self,
        spec: JobSpec,
        providers: str | Sequence[str] = "all",
        *,
        hardware: str | Sequence[str] | None = None,
        prices: Sequence[str | Path] = (),
        processes: int | None = None,
    ) -> QuoteTable:
        """Priced on the server's backends and catalog (its installed plugins, its price files)."""
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
        body = spec.model_dump(mode="json", exclude_none=True)
        return QuoteTable.from_json(spec, self.call("POST", "/v1/quotes", json=body, params=params))

    def report(self, targets: list[str], out_dir: Path | None = None) -> ReportFiles:
        """Drawn by the server from its registry; the files are unpacked into `out_dir`."""
        from anytune.workflows.report import report_folder

        folder = Path(out_dir) if out_dir else report_folder(anytune_home(), targets)
        answer = self._send("GET", "/v1/reports", params=[("target", t) for t in targets]).content
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
        images = [f for f in written if f.suffix == ".png"]
        return ReportFiles(folder, folder / "report.html", folder / "report.md", images, warnings)

    def close(self) -> None:
        self._http.close()


def server_error(status: int, body: Any, text: str) -> AnytuneError:
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
