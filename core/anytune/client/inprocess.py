"""`Client()`: the stages of every job run in this process, on its registry. A thin front over
`anytune.pipeline`: each method is one stage or one registry read (documented in `anytune.api.ClientAPI`).

Beyond the interface, for code that runs the stages itself (tests, the service, a comparison): `pipeline`
(the stages' shared state), `registry`, `plugins`, `backend(name)`, `preflight()`, `submit_prepared()`, and
`in_project(name)` (the service: a token's project; a remote Client's project is its token's).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anytune.api import EvalTarget, Preflight, ReportFiles, RunObserver, no_progress
from anytune.client import Client
from anytune.hookspecs import Backend
from anytune.jobs import Event, Job, ModelArtifact
from anytune.pipeline import archive, control, datasets, derive, evaluate, follow, submit
from anytune.pipeline.context import Pipeline
from anytune.pipeline.export import export
from anytune.pipeline.preflight import preflight
from anytune.plugins import PluginManager
from anytune.registry import Registry
from anytune.registry.datasets import get_stored, list_stored
from anytune.spec import EvalSpec, JobSpec

if TYPE_CHECKING:
    from anytune.cost.table import QuoteTable
    from anytune.evaluation.runner import EvalResult
    from anytune.registry.datasets import StoredDataset
    from anytune.registry.records import EvaluationRecord, ModelVersion


class InProcessClient(Client):
    def __init__(
        self,
        registry: Registry | None = None,
        plugins: PluginManager | None = None,
        *,
        url: str | None = None,
        token: str | None = None,
    ) -> None:
        self.pipeline = Pipeline(registry, plugins)
        self._projects: dict[str, InProcessClient] = {}

    def in_project(self, project: str) -> InProcessClient:
        """This client seen from another project (made once, kept: asked for at every request and job)."""
        if project == self.registry.project:
            return self
        found = self._projects.get(project)
        if found is None:
            found = self._projects[project] = InProcessClient(plugins=self.plugins)
            found.pipeline = self.pipeline.in_project(project)
        return found

    @property
    def registry(self) -> Registry:
        return self.pipeline.registry

    @property
    def plugins(self) -> PluginManager:
        return self.pipeline.plugins

    def backend(self, name: str) -> Backend:
        return self.pipeline.backend(name)

    # ------------------------------------------------------------------------------------------- jobs

    def preflight(self, spec: JobSpec, *, quote_only: bool = False) -> Preflight:
        return preflight(self.pipeline, spec, quote_only=quote_only)

    def submit(self, spec: JobSpec, *, job_id: str | None = None) -> Job:
        return submit.submit_spec(self.pipeline, spec, job_id=job_id)

    def submit_prepared(self, pre: Preflight, *, job_id: str | None = None) -> Job:
        return submit.submit_preflight(self.pipeline, pre, job_id=job_id)

    def _submit_for_run(self, spec: JobSpec, seen: RunObserver) -> Job:
        pre = self.preflight(spec)
        seen.preflight(pre)
        return self.submit_prepared(pre)

    def _evaluation_of_run(self, job: Job, seen: RunObserver, interval: float | None) -> EvalResult:
        return self.evaluate(job.id, on_progress=seen.evaluating)

    def follow(
        self,
        job_id: str,
        *,
        interval: float | None = None,
        timeout: float | None = None,
        on_update: Callable[[Job, list[Event]], None] | None = None,
    ) -> Job:
        def outage(job: Job, event: Event) -> None:
            self.pipeline.note(job.id, [event], job.status)

        return follow.follow_loop(
            self, job_id, interval=interval, timeout=timeout, on_update=on_update, on_outage=outage
        )

    def refresh(self, job_id: str) -> Job:
        return follow.refresh(self.pipeline, job_id)

    def poll_delay(self, job_id: str) -> float:
        return self.pipeline.pace(job_id)

    def get_job(self, job_id: str) -> Job:
        return self.registry.get_job(job_id)

    def list_jobs(
        self,
        *,
        status: str | None = None,
        provider: str | None = None,
        active: bool | None = None,
        limit: int | None = 100,
        after: str | None = None,
    ) -> list[Job]:
        return self.registry.list_jobs(
            status=status, provider=provider, active=active, limit=limit, after=after
        )

    def events(
        self, job_id: str, *, after: int = 0, kind: str | None = None, limit: int | None = None
    ) -> list[Event]:
        return self.registry.events(job_id, after=after, kind=kind, limit=limit)

    def cancel(self, job_id: str) -> Job:
        return control.cancel(self.pipeline, job_id)

    def pause(self, job_id: str) -> Job:
        return control.pause(self.pipeline, job_id)

    def resume(self, job_id: str) -> Job:
        return control.resume(self.pipeline, job_id)

    def continue_job(self, job_id: str, *, step: int | None = None, overrides: Sequence[str] = ()) -> Job:
        return derive.continue_job(self.pipeline, job_id, step=step, overrides=overrides)

    def migrate(self, job_id: str, to: str, *, overrides: Sequence[str] = ()) -> Job:
        return derive.migrate(self.pipeline, job_id, to, overrides=overrides)

    # ----------------------------------------------------------------------------------------- models

    def list_models(self, name: str | None = None) -> list[ModelVersion]:
        return self.registry.list_models(name)

    def get_model(self, ref: str) -> ModelVersion:
        return self.registry.get_model(ref)

    def models_for_job(self, job_id: str) -> list[ModelVersion]:
        return self.registry.models_for_job(self.registry.get_job(job_id).id)

    def set_alias(self, name: str, alias: str, version: int) -> ModelVersion:
        return self.registry.set_alias(name, alias, version)

    def remove_alias(self, name: str, alias: str) -> None:
        self.registry.remove_alias(name, alias)

    def export(
        self, ref: str, out_dir: Path, *, dtype: str = "float32", register: bool = True
    ) -> tuple[ModelArtifact, ModelVersion | None]:
        return export(self.pipeline, ref, out_dir, dtype=dtype, register=register)

    def pull(
        self, ref: str, out_dir: Path | None = None, *, on_progress: Callable[[int, int], None] | None = None
    ) -> ModelVersion:
        return archive.pull_here(archive.version_of(self.resolve_target(ref), ref), out_dir, on_progress)

    # --------------------------------------------------------------------------------------- datasets

    def upload(
        self, path: str | Path, *, on_progress: Callable[[int, int], None] | None = None
    ) -> StoredDataset:
        return datasets.keep_file(self.registry, Path(path), on_progress=on_progress)

    def datasets(self) -> list[StoredDataset]:
        return list_stored(self.registry)

    def dataset(self, dataset_id: str) -> StoredDataset:
        return get_stored(self.registry, datasets.dataset_id(dataset_id))

    def delete_dataset(self, dataset_id: str) -> None:
        datasets.forget(self.registry, dataset_id)

    # ------------------------------------------------------------------------------------- evaluation

    def resolve_target(self, target: str) -> EvalTarget:
        return evaluate.resolve_target(self.pipeline, target)

    def evaluate(
        self, job_id: str, spec: EvalSpec | None = None, on_progress: Callable[[str], None] = no_progress
    ) -> EvalResult:
        return evaluate.evaluate_job(self.pipeline, job_id, spec, on_progress=on_progress)

    def evaluate_targets(
        self,
        targets: list[str],
        spec: EvalSpec | None = None,
        *,
        changes: dict[str, Any] | None = None,
        on_progress: Callable[[str], None] = no_progress,
    ) -> EvalResult:
        return evaluate.evaluate_targets(
            self.pipeline, targets, spec, changes=changes, on_progress=on_progress
        )

    def evaluations(
        self,
        *,
        job_id: str | None = None,
        model_name: str | None = None,
        model_version: int | None = None,
        dataset_fingerprint: str | None = None,
        subject: str | None = None,
    ) -> list[EvaluationRecord]:
        return self.registry.evaluations(
            job_id=job_id,
            model_name=model_name,
            model_version=model_version,
            dataset_fingerprint=dataset_fingerprint,
            subject=subject,
        )

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
        from anytune.workflows.compare import quote_providers

        return quote_providers(
            self.pipeline, spec, providers, hardware=hardware, prices=prices, processes=processes
        )

    def report(self, targets: list[str], out_dir: Path | None = None) -> ReportFiles:
        from anytune.workflows.report import write_report

        return write_report(self, targets, out_dir)

    def close(self) -> None:
        """Nothing held open between calls (each registry call takes a connection from the pool)."""
