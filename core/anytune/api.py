"""The Client's interface, whole, in one place: `ClientAPI`, and the records that cross it.

Two transports implement it, method for method, with the same signatures and return types (a test holds
them to it, and one behavioural suite runs against both):

- `Client()`: this process runs the stages of a job (`anytune.pipeline`) on its own registry;
- `Client(url="http://host:8000", token=...)`: `anytune server` runs them; this side asks and shows.

Code that drives anytune (the CLI, the workflows, the service, a user's script) is written against this
interface, never against a registry, so it works the same through either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from anytune.hookspecs import Backend, Capabilities, DataBundle, PreparedData, Quote
from anytune.jobs import Event, Job, ModelArtifact
from anytune.spec import EvalSpec, JobSpec

if TYPE_CHECKING:
    from anytune.cost.table import QuoteTable
    from anytune.data.validate import ValidationReport
    from anytune.evaluation.runner import EvalResult
    from anytune.registry.datasets import StoredDataset
    from anytune.registry.records import EvaluationRecord, ModelVersion


@dataclass
class Preflight:
    """Everything known about a job before it is recorded or started: checked, prepared, quoted."""

    spec: JobSpec
    backend: Backend
    capabilities: Capabilities
    prepared: PreparedData
    quote: Quote
    reports: dict[str, ValidationReport]
    warnings: list[str] = field(default_factory=list)

    @property
    def data(self) -> DataBundle:
        return self.prepared.data


@dataclass(frozen=True)
class EvalTarget:
    """A model to score: how to call it (provider + artifact), its base, and where it came from."""

    label: str
    provider: str
    artifact: ModelArtifact
    base_model: str
    job: Job | None = None
    model: ModelVersion | None = None


@dataclass
class RunResult:
    """What `run` did: the job as it ended (or as submitted, detached) and its evaluation, if any."""

    job: Job
    evaluation: EvalResult | None = None


@dataclass
class ReportFiles:
    """A report as written: its folder, the HTML and Markdown pages, the plots, and what it could not show."""

    folder: Path
    html: Path
    markdown: Path
    images: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class RunObserver:
    """What `run` tells as it walks a job (the CLI draws it); override the steps you want to see.

    `preflight` comes only where the checks run in this process (`Client()`); a server checks on its side."""

    def preflight(self, pre: Preflight) -> None:
        """Checked, prepared and quoted; nothing recorded or started yet."""

    def submitted(self, job: Job) -> None:
        """Recorded, and the provider has it."""

    def progress(self, job: Job, events: list[Event]) -> None:
        """The job's state after each poll, with the events recorded since the last one."""

    def evaluating(self, stage: str) -> None:
        """The evaluation after success is running (`stage` says what it is at)."""


def no_progress(_stage: str) -> None:
    """The default `on_progress`: tell nobody."""


class ClientAPI(Protocol):
    """What a Client does, in either transport (see the module's docstring)."""

    # ------------------------------------------------------------------------------------------- jobs

    def submit(self, spec: JobSpec, *, job_id: str | None = None) -> Job:
        """Check, record and submit a job: nothing is recorded or started unless every check passes (the
        spec against the provider, every data line, the provider's rules, the budget). `job_id` is for the
        service, which reserves one with a request's Idempotency-Key; a remote client cannot choose one."""
        ...

    def run(
        self,
        spec: JobSpec,
        *,
        evaluate: bool = True,
        detach: bool = False,
        interval: float | None = None,
        observer: RunObserver | None = None,
    ) -> RunResult:
        """The whole walk: check, record, submit, follow to the end, evaluate after success. With
        `detach=True` it returns once the provider has the job. A job that ends other than succeeded is
        returned as it is, not raised."""
        ...

    def follow(
        self,
        job_id: str,
        *,
        interval: float | None = None,
        timeout: float | None = None,
        on_update: Callable[[Job, list[Event]], None] | None = None,
    ) -> Job:
        """Until the job ends (or `timeout` seconds pass): `on_update` sees each state and the new events.
        An unreachable provider or server does not end it (the job goes on there); polls back off."""
        ...

    def refresh(self, job_id: str) -> Job:
        """The job as it is now (asking its provider, in this process; as the server's workers keep it)."""
        ...

    def poll_delay(self, job_id: str) -> float:
        """Seconds to wait before the next look at this job."""
        ...

    def get_job(self, job_id: str) -> Job:
        """The job as recorded, by id or unique id prefix."""
        ...

    def list_jobs(
        self,
        *,
        status: str | None = None,
        provider: str | None = None,
        active: bool | None = None,
        limit: int | None = 100,
        after: str | None = None,
    ) -> list[Job]:
        """Newest first; `active`: only jobs that have not ended (or, False, only those that have); `after`
        (a job id): the jobs listed after that one (the next page)."""
        ...

    def events(
        self, job_id: str, *, after: int = 0, kind: str | None = None, limit: int | None = None
    ) -> list[Event]:
        """The job's events after sequence number `after`, oldest first."""
        ...

    def cancel(self, job_id: str) -> Job:
        """Stop a job (a job not yet submitted is cancelled here)."""
        ...

    def pause(self, job_id: str) -> Job:
        """Pause a running job, where the provider can."""
        ...

    def resume(self, job_id: str) -> Job:
        """Make a job go again: resume a paused job; restart a failed or cancelled one from its checkpoint
        (a new job); finish submitting one recorded before a crash, never creating it twice."""
        ...

    def continue_job(self, job_id: str, *, step: int | None = None, overrides: Sequence[str] = ()) -> Job:
        """A new job training further from a succeeded job's checkpoint (the last one, or `step`)."""
        ...

    def migrate(self, job_id: str, to: str, *, overrides: Sequence[str] = ()) -> Job:
        """The same job on another provider, as a new job linked to it."""
        ...

    # ----------------------------------------------------------------------------------------- models

    def list_models(self, name: str | None = None) -> list[ModelVersion]:
        """Registered model versions, newest first within each name."""
        ...

    def get_model(self, ref: str) -> ModelVersion:
        """`NAME` (its newest version), `NAME@VERSION` or `NAME@ALIAS`."""
        ...

    def models_for_job(self, job_id: str) -> list[ModelVersion]:
        """The model versions a job registered (its result; an export adds one)."""
        ...

    def set_alias(self, name: str, alias: str, version: int) -> ModelVersion:
        """Point an alias at a version (versions never change; aliases move)."""
        ...

    def remove_alias(self, name: str, alias: str) -> None:
        """Remove an alias; the version it pointed at stays."""
        ...

    def export(
        self, ref: str, out_dir: Path, *, dtype: str = "float32", register: bool = True
    ) -> tuple[ModelArtifact, ModelVersion | None]:
        """A model as full weights that load without anytune, registered as a new version."""
        ...

    def pull(
        self, ref: str, out_dir: Path | None = None, *, on_progress: Callable[[int, int], None] | None = None
    ) -> ModelVersion:
        """The model's files (adapter, merged weights, tokenizer) on this machine, in `out_dir` (default
        `$ANYTUNE_HOME/models/NAME/VERSION`; a version pulled there already is not fetched again), and the
        version with its artifact pointing at them. A hosted provider's model has no files: refused with how
        to call it. `on_progress(bytes_done, bytes_total)` while the files come."""
        ...

    # --------------------------------------------------------------------------------------- datasets

    def upload(
        self, path: str | Path, *, on_progress: Callable[[int, int], None] | None = None
    ) -> StoredDataset:
        """Keep a data file as a dataset, validated (a refusal names line and field, and nothing is kept),
        named by the SHA-256 of its bytes: a file kept already is not sent again. A job names it as
        `dataset:sha256:<hex>` (`.ref`). Through a server, the upload resumes after a dropped connection."""
        ...

    def datasets(self) -> list[StoredDataset]:
        """The datasets kept, newest first."""
        ...

    def dataset(self, dataset_id: str) -> StoredDataset:
        """One dataset by `sha256:<hex>` (or `dataset:sha256:<hex>`)."""
        ...

    def delete_dataset(self, dataset_id: str) -> None:
        """Forget a dataset; refused while a job that has not ended reads it."""
        ...

    # ------------------------------------------------------------------------------------- evaluation

    def resolve_target(self, target: str) -> EvalTarget:
        """A job id (or prefix) or a model reference as something to score or serve."""
        ...

    def evaluate(
        self, job_id: str, spec: EvalSpec | None = None, on_progress: Callable[[str], None] = no_progress
    ) -> EvalResult:
        """Score a succeeded job's model (and by default its base model) on held-out data; stored."""
        ...

    def evaluate_targets(
        self,
        targets: list[str],
        spec: EvalSpec | None = None,
        *,
        changes: dict[str, Any] | None = None,
        on_progress: Callable[[str], None] = no_progress,
    ) -> EvalResult:
        """Score models from any provider on the same data, each through its own backend, with intervals and
        paired comparisons; `changes` (EvalSpec fields) apply over `spec` or the first job's own settings."""
        ...

    def evaluations(
        self,
        *,
        job_id: str | None = None,
        model_name: str | None = None,
        model_version: int | None = None,
        dataset_fingerprint: str | None = None,
        subject: str | None = None,
    ) -> list[EvaluationRecord]:
        """Stored evaluations, oldest first, filtered by any of the arguments."""
        ...

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
        """`spec` priced on every provider named (or all), after the same checks a submit makes; nothing is
        recorded, uploaded or started. `prices`: override files; `processes`: see `anytune.quote`."""
        ...

    def report(self, targets: list[str], out_dir: Path | None = None) -> ReportFiles:
        """An HTML and a Markdown report with plots on `targets`, written to `out_dir`."""
        ...

    def close(self) -> None:
        """Let go of what the client holds open (connections)."""
        ...


__all__ = ["ClientAPI", "EvalTarget", "Preflight", "ReportFiles", "RunObserver", "RunResult", "no_progress"]
