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

from anytune.api import EvalTarget, ReportFiles, RunObserver, no_progress
from anytune.client import Client
from anytune.client.answers import server_error
from anytune.errors import AnytuneError, BackendError, UsageError
from anytune.graders.spec import inline_sources
from anytune.jobs import Event, Job, JobStatus, ModelArtifact
from anytune.pipeline.follow import follow_loop
from anytune.registry.records import EvaluationRecord, ModelVersion
from anytune.settings import anytune_home
from anytune.spec import EvalSpec, JobSpec

if TYPE_CHECKING:
    import httpx

    from anytune.cost.table import QuoteTable
    from anytune.evaluation.runner import EvalResult
    from anytune.registry.datasets import StoredDataset

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
        # told of each upload's progress (name, bytes sent, bytes in all): the CLI draws a bar
        self.on_upload: Callable[[str, int, int], None] | None = None

    # ------------------------------------------------------------------------------------------ HTTP

    @property
    def http(self) -> httpx.Client:
        """The connection to the server (`anytune.client.transfers` streams files through it)."""
        return self._http

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
        body = self._uploaded(spec).model_dump(mode="json", exclude_none=True)
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

    # --------------------------------------------------------------------------------------- datasets

    def _uploaded(self, spec: JobSpec) -> JobSpec:
        """The spec with each data file of this machine uploaded (unless the server has its bytes already)
        and named by its dataset; a path that is no file here is left as it is (a path on the server)."""
        data = {
            field: self._uploaded_file(value)
            for field in ("train", "validation", "test")
            if (value := getattr(spec.data, field))
        }
        changes: dict[str, Any] = {"data": spec.data.model_copy(update=data)}
        evaluation = spec.evaluation
        if evaluation is not None and (evaluation.data or evaluation.graders):
            changes["evaluation"] = evaluation.model_copy(
                update={
                    "data": self._uploaded_file(evaluation.data) if evaluation.data else None,
                    "graders": {k: inline_sources(g) for k, g in evaluation.graders.items()},
                }
            )
        grader = getattr(spec.method, "grader", None)
        if grader is not None:  # a Python grader's file travels as its source
            changes["method"] = spec.method.model_copy(update={"grader": inline_sources(grader)})
        return spec.model_copy(update=changes)

    def _uploaded_file(self, value: str) -> str:
        if value.startswith("dataset:") or not Path(value).expanduser().is_file():
            return value
        name = Path(value).name

        def shown(done: int, total: int) -> None:
            if self.on_upload is not None:
                self.on_upload(name, done, total)

        return self.upload(value, on_progress=shown).ref

    def upload(
        self, path: str | Path, *, on_progress: Callable[[int, int], None] | None = None
    ) -> StoredDataset:
        """Asked by hash first; then sent in one streamed PATCH from the server's offset, which a dropped
        connection (or a process that died: the upload's id is kept in `$ANYTUNE_HOME/uploads`) resumes."""
        from anytune.client.transfers import upload

        return upload(self, Path(path), on_progress)

    def datasets(self) -> list[StoredDataset]:
        from anytune.registry.datasets import StoredDataset

        return [StoredDataset.model_validate(d) for d in self.call("GET", "/v1/datasets")]

    def dataset(self, dataset_id: str) -> StoredDataset:
        from anytune.pipeline.datasets import dataset_id as id_of
        from anytune.registry.datasets import StoredDataset

        return StoredDataset.model_validate(self.call("GET", f"/v1/datasets/{id_of(dataset_id)}"))

    def delete_dataset(self, dataset_id: str) -> None:
        from anytune.pipeline.datasets import dataset_id as id_of

        self.call("DELETE", f"/v1/datasets/{id_of(dataset_id)}")

    # ----------------------------------------------------------------------------------------- models

    def pull(
        self, ref: str, out_dir: Path | None = None, *, on_progress: Callable[[int, int], None] | None = None
    ) -> ModelVersion:
        """Downloaded with Range from where a dropped connection left the part file, checked against the
        server's SHA-256, unpacked."""
        from anytune.client.transfers import download
        from anytune.pipeline.archive import pull_into

        model = self.resolve_target(ref).model  # a job's id names the model it registered
        if model is None:
            raise UsageError(
                f"{ref} registered no model", hint="`anytune models list` shows those that can be pulled"
            )
        exact = f"{model.name}@{model.version}"
        # its first byte, for the digest and the ETag (a HEAD would carry no error body to explain a refusal)
        first = self._send("GET", f"/v1/models/{exact}/files", headers={"Range": "bytes=0-0"})
        digest = first.headers.get("x-content-sha256", "")

        def fetch(part: Path) -> Path:
            download(self, f"/v1/models/{exact}/files", part, first.headers.get("etag"), on_progress)
            return part

        return pull_into(model, digest, out_dir, fetch)

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
        """Pulled, then merged on this machine (with its local backend); nothing is registered on the
        server (`register` asks for what only the server's own export can do)."""
        if register:
            raise UsageError(
                "an export through a server is written on this machine and cannot be registered there",
                hint="pass register=False (`anytune export --no-register`), or export on the server machine",
            )
        from anytune.self.inprocess import InProcessClient

        model = self.pull(ref)
        return InProcessClient().backend(model.provider).export(model.artifact, out_dir, dtype=dtype), None

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

        sent = ("data", "metrics", "compare_base", "limit", "max_new_tokens", "judge", "graders")
        given = {**(spec.model_dump(mode="json") if spec else {}), **(changes or {})}
        body = {"targets": targets, **{k: v for k, v in given.items() if k in sent and v not in (None, {})}}
        if body.get("data"):
            body["data"] = self._uploaded_file(str(body["data"]))
        if body.get("graders"):  # a Python grader's file goes as its source: the server cannot read it here
            graders = EvalSpec.model_validate(
                {"metrics": list(body["graders"]), "graders": body["graders"]}
            ).graders
            body["graders"] = {k: inline_sources(g).model_dump(mode="json") for k, g in graders.items()}
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
        body = self._uploaded(spec).model_dump(mode="json", exclude_none=True)
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
