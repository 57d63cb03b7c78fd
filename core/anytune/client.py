"""The Python API: submit a spec to any backend, follow it, cancel it, evaluate what it produced.

    from anytune import Client, load_job_file

    client = Client()
    job = client.submit(load_job_file("job.yaml", provider="local"))
    job = client.follow(job.id)
    result = client.evaluate(job.id)

Order of work in `submit`, which the house rules fix: check the spec against the backend's capabilities,
validate every data file, quote and check the budget (nothing uploaded or started yet); then write the job
row; only then call the backend. A failure before the row is written leaves no job behind (only the
content-addressed records of the data files it read); a failure after it leaves a failed job with the
reason, and a crash between the two leaves a pending job that `resume()` finishes without duplicating it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from anytune.compat import check_data_format, check_spec, raise_for_problems
from anytune.cost.quotes import unavailable
from anytune.data.formats import DataFormat
from anytune.data.prepared import files_not_written
from anytune.data.split import SplitPlan, check_leakage, plan_split, source_line, write_split
from anytune.data.validate import ValidationReport, remember_clean, require_valid, validate_file
from anytune.errors import (
    AnytuneError,
    BackendError,
    BudgetExceededError,
    CapabilityError,
    DataError,
    UsageError,
)
from anytune.evaluation.metrics import resolve_metrics
from anytune.evaluation.runner import EvalResult, evaluate
from anytune.hookspecs import (
    CREDENTIALS,
    Backend,
    Capabilities,
    DataBundle,
    DatasetRef,
    PreparedData,
    Problem,
    ProviderRef,
    Quote,
    SubmitRequest,
)
from anytune.jobs import Cost, Event, EventKind, Job, JobStatus, ModelArtifact, can_transition
from anytune.plugins import PluginManager, get_plugin_manager
from anytune.registry import Registry
from anytune.registry.records import ModelVersion
from anytune.settings import anytune_home
from anytune.spec import EvalSpec, JobSpec

OUTAGE_FIRST_PAUSE_S = 0.5  # while a provider cannot be reached, polls back off from this...
OUTAGE_MAX_PAUSE_S = 60.0  # ...to this


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
    """What `Client.run` did: the job as it ended (or as submitted, detached) and its evaluation, if any."""

    job: Job
    evaluation: EvalResult | None = None


@dataclass
class Preflight:
    """Everything known about a job before it is recorded or started."""

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


K = TypeVar("K")
V = TypeVar("V")


class Bounded(OrderedDict[K, V]):
    """A dict that forgets its oldest entries beyond `size` (the Client's caches, in a long-lived server)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


def _unchanged(path: str, *extra: Any) -> tuple[Any, ...] | None:
    """A key for work on `path` that holds while the file is unchanged (its size and modification time);
    None if the file cannot be looked at."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, *extra)


def _data_format(spec: JobSpec) -> DataFormat | None:
    """The format the job names for its files; None where it is detected ("auto")."""
    return None if spec.data.format == "auto" else DataFormat(spec.data.format)


def data_refusal(provider: str, errors: Sequence[Problem]) -> DataError:
    """The error for data a provider would refuse: every problem with its file and line (up to 200)."""
    details = [str(p) for p in errors[:200]]
    if len(errors) > 200:
        details.append(f"... and {len(errors) - 200} more")
    return DataError(
        f"the data does not meet {provider}'s rules ({len(errors)} problem{'s' if len(errors) != 1 else ''}); "
        "nothing was recorded or uploaded",
        details=details,
        hint="fix the lines named, or choose another provider with --provider",
    )


class Client:
    def __new__(
        cls,
        registry: Registry | None = None,
        plugins: PluginManager | None = None,
        *,
        url: str | None = None,
        token: str | None = None,
    ) -> Client:
        """`Client()` works in this process; `Client(url="http://host:8000", token=...)` is the same
        interface over HTTP to `anytune server` (token defaulting to $ANYTUNE_TOKEN)."""
        if url:
            from anytune.remote_client import RemoteClient

            return RemoteClient(url, token=token)  # type: ignore[return-value]
        return super().__new__(cls)

    def __init__(
        self,
        registry: Registry | None = None,
        plugins: PluginManager | None = None,
        *,
        url: str | None = None,
        token: str | None = None,
    ) -> None:
        self._registry = registry
        self._plugins = plugins
        # bounded: a server's Client lives for months and sees every job's files
        self._poll_after: Bounded[str, float] = Bounded(4096)  # the backends' pacing hints, by job
        self._validated: Bounded[tuple[Any, ...], ValidationReport] = Bounded(32)
        self._plans: Bounded[tuple[Any, ...], SplitPlan] = Bounded(32)
        # a comparison prepares several providers at once on threads: one of them validates a file, the
        # others wait for its report instead of reading the file again
        self._data_lock = threading.RLock()

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry()
        return self._registry

    @property
    def plugins(self) -> PluginManager:
        if self._plugins is None:
            self._plugins = get_plugin_manager()
        return self._plugins

    def backend(self, name: str) -> Backend:
        return self.plugins.get_backend(name)

    # ---------------------------------------------------------------------------------------- preflight

    def preflight(self, spec: JobSpec, *, quote_only: bool = False) -> Preflight:
        """Check the spec, the data and the budget; prepare the data for the provider; raise on the first
        kind of problem found. Nothing is recorded, uploaded or started.

        `quote_only=True` is for comparisons: the registry is left untouched, missing credentials are a
        warning (they are needed to submit, not to price), and an over-budget quote or one whose data the
        provider would refuse is returned (with the problems), not raised."""
        backend = self.backend(spec.provider)
        caps = backend.capabilities()
        problems = self._with_alternatives(spec, check_spec(spec, caps, spec.provider))
        problems += backend.check_spec(spec)
        if quote_only:
            problems = [
                Problem("warning", p.field, f"{p.message} (needed to submit, not to quote)")
                if p.field == CREDENTIALS
                else p
                for p in problems
            ]
        warnings = [str(p) for p in raise_for_problems(problems, spec.provider)]
        self._check_evaluation(spec)
        bundle, reports, data_warnings = self._prepare_data(spec, caps, record=not quote_only)
        warnings += data_warnings
        with files_not_written() if quote_only else contextlib.nullcontext():
            prepared = self._prepared(backend, spec, bundle)
        minimum = caps.limits.min_examples
        if minimum and bundle.train.rows < minimum:
            prepared.problems.insert(
                0,
                Problem(
                    "error",
                    "data.train",
                    f"{bundle.train.rows} training example(s); {spec.provider} needs at least {minimum}",
                    file=spec.data.train,
                ),
            )
        warnings += [str(p) for p in prepared.problems if not p.is_error]
        if prepared.errors:
            refusal = data_refusal(spec.provider, prepared.errors)
            if not quote_only:
                raise refusal
            quote = unavailable(spec.provider, refusal.message, model=spec.model_for(spec.provider))
            quote.problems = list(refusal.details)
            return Preflight(spec, backend, caps, prepared, quote, reports, warnings)
        quote = backend.quote(spec, prepared)
        if not quote.available and not quote_only:
            raise CapabilityError(f"{spec.provider} cannot run this job: {quote.reason or 'not available'}")
        over = spec.budget_usd is not None and quote.price is not None and quote.price > spec.budget_usd
        if over and not quote_only:
            assert spec.budget_usd is not None and quote.price is not None
            raise BudgetExceededError(
                f"the quote on {spec.provider} is {quote.price:.2f} {quote.currency}, above budget_usd "
                f"{spec.budget_usd:.2f}; nothing was uploaded or started",
                hint="raise budget_usd, use less data or fewer epochs, or choose another provider",
            )
        return Preflight(spec, backend, caps, prepared, quote, reports, warnings)

    def _check_evaluation(self, spec: JobSpec) -> None:
        """The evaluation runs after the paid training: every name in it (metrics, the judge) must be known
        before anything is paid for."""
        if spec.evaluation is None:
            return
        resolve_metrics(spec.evaluation.metrics, self.plugins.metrics())
        if spec.evaluation.judge:
            self.resolve_judge(spec.evaluation.judge)

    def _prepared(self, backend: Backend, spec: JobSpec, bundle: DataBundle) -> PreparedData:
        """backend.prepare(), with each problem's line mapped back to the user's own file (a split file's
        lines come from the file it was cut from)."""
        prepared = backend.prepare(spec, bundle)
        origins = {
            ref.path: ref.origin
            for ref in (bundle.train, bundle.validation, bundle.test)
            if ref is not None and ref.origin
        }
        if not origins:
            return prepared
        mapped = []
        for p in prepared.problems:
            if p.file in origins:
                line = source_line(p.file, p.line) if p.line else None
                p = dataclasses.replace(p, file=origins[p.file], line=line)
            mapped.append(p)
        return prepared.model_copy(update={"problems": mapped})

    def _with_alternatives(self, spec: JobSpec, problems: list[Problem]) -> list[Problem]:
        """A method or adapter a provider cannot do: say which installed providers can."""
        if not any(p.field in ("method", "adapter") and p.severity == "error" for p in problems):
            return problems
        able = []
        for name in self.plugins.backend_names():
            if name == spec.provider:
                continue
            try:
                caps = self.backend(name).capabilities()
            except AnytuneError:
                continue
            if spec.method_type in caps.methods and spec.adapter_type in caps.adapters:
                able.append(name)
        suffix = f"; providers that can: {', '.join(able)}" if able else "; no installed provider can"
        return [
            Problem(p.severity, p.field, p.message + suffix) if p.field in ("method", "adapter") else p
            for p in problems
        ]

    def _validate(self, path: str, fmt: DataFormat | None, max_seq_length: int | None) -> ValidationReport:
        """validate_file, remembered for this client while the file is unchanged (a quote across providers
        validates each file once)."""
        key = _unchanged(path, fmt, max_seq_length)
        if key is None:  # validate_file says what is wrong with the path, in its words
            return validate_file(path, format=fmt, max_seq_length=max_seq_length)
        with self._data_lock:
            report = self._validated.get(key)
            if report is None:
                report = self._validated[key] = validate_file(path, format=fmt, max_seq_length=max_seq_length)
        return report

    def validate_spec_data(self, spec: JobSpec) -> None:
        """Validate the job's files now, once (remembered like every validation here): what every provider's
        preflight checks first. Problems stay in the reports, for the preflights to raise; a job whose
        validation rows are carved out of the training file is validated by its preflights."""
        if spec.data.validation_split:
            return
        fmt = _data_format(spec)
        for path in (spec.data.train, spec.data.validation, spec.data.test):
            if path:
                with contextlib.suppress(AnytuneError):  # the preflights say what is wrong, in their words
                    self._validate(path, fmt, spec.hyperparameters.max_seq_length)

    def known_validations(self) -> list[dict[str, Any]]:
        """The files validated by this client, with their reports, as JSON: what another
        process quoting the same job adopts (`adopt_validations`) instead of validating them again."""
        with self._data_lock:
            held = list(self._validated.items())
        return [  # the adopting side checks that each file is unchanged
            {
                "file": [path, size, mtime, fmt.value if fmt else None, max_seq_length],
                "report": report.model_dump(mode="json"),
            }
            for (path, size, mtime, fmt, max_seq_length), report in held
        ]

    def adopt_validations(self, known: list[dict[str, Any]]) -> None:
        """Take `known_validations()` from another process: a file still unchanged is not validated again,
        and a clean one is only parsed by the providers' passes. A file changed since is validated here."""
        for item in known:
            path, size, mtime, fmt, max_seq_length = item["file"]
            fmt = DataFormat(fmt) if fmt else None
            key = _unchanged(path, fmt, max_seq_length)
            if key != (path, size, mtime, fmt, max_seq_length):
                continue
            report = ValidationReport.model_validate(item["report"])
            with self._data_lock:
                self._validated[key] = report
            if report.errors == 0 and report.format is not None:
                remember_clean(Path(path), report)

    def _plan_split(
        self, path: str, fmt: DataFormat | None, max_seq_length: int | None, share: float, seed: int
    ) -> SplitPlan:
        """plan_split, remembered like `_validate` (a quote across providers reads the file once)."""
        key = _unchanged(path, fmt, max_seq_length, share, seed)
        with self._data_lock:
            plan = self._plans.get(key) if key is not None else None
            if plan is None:
                plan = plan_split(
                    path,
                    {"train": 1 - share, "validation": share},
                    seed=seed,
                    format=fmt,
                    max_seq_length=max_seq_length,
                )
                if key is not None:
                    self._plans[key] = plan
        return plan

    def _prepare_data(
        self, spec: JobSpec, caps: Capabilities, *, record: bool = True
    ) -> tuple[DataBundle, dict[str, ValidationReport], list[str]]:
        fmt = _data_format(spec)
        warnings: list[str] = []
        reports: dict[str, ValidationReport] = {}
        refs: dict[str, DatasetRef] = {}

        def check(split_name: str, path: str, origin: str | None = None) -> DatasetRef:
            report = self._validate(path, fmt, spec.hyperparameters.max_seq_length)
            require_valid(report, what=f"the {split_name} data")
            assert report.format is not None and report.stats is not None and report.fingerprint
            if split_name != "test":
                check_data_format(spec.method_type, report.format, caps, spec.provider, origin or path)
            stats = report.stats
            shown = origin or path
            if stats.rows_over_max:
                warnings.append(
                    f"{shown}: {stats.rows_over_max} row(s) longer than max_seq_length "
                    f"{spec.hyperparameters.max_seq_length} will be truncated"
                    + ("" if origin else f" (e.g. line {stats.over_max_lines[0]})")
                )
            if stats.duplicates:
                warnings.append(
                    f"{shown}: {stats.duplicates} duplicate row(s)"
                    + ("" if origin else f" (e.g. line {stats.duplicate_lines[0][0]})")
                )
            reports[split_name] = report
            resolved = str(Path(path).resolve())
            if record:
                self.registry.record_dataset(
                    fingerprint=report.fingerprint,
                    format=report.format.value,
                    rows=report.valid,
                    path=resolved,
                    tokens=stats.tokens_total,
                    stats=stats.model_dump(mode="json"),
                )
            return DatasetRef(
                path=resolved,
                format=report.format,
                rows=report.valid,
                fingerprint=report.fingerprint,
                tokens=stats.tokens_total,
                tokens_estimated=stats.tokens_estimated,
                origin=str(Path(origin).resolve()) if origin else None,
            )

        if spec.data.validation_split:
            # Carve validation out of train by prompt: one read validates the file and deals its rows, one
            # more writes the splits (none when this request was split before). The folder is named by
            # content, ratio and seed, so the same request reuses it and different data never collide.
            seed = spec.hyperparameters.seed if spec.hyperparameters.seed is not None else 42
            share = spec.data.validation_split
            plan = self._plan_split(spec.data.train, fmt, spec.hyperparameters.max_seq_length, share, seed)
            assert plan.report.fingerprint
            folder = f"{plan.report.fingerprint.removeprefix('sha256:')[:16]}-v{share:g}-s{seed}"
            split = write_split(plan, anytune_home() / "data" / "splits" / folder, cache=True)
            refs["train"] = check("train", split.paths["train"], origin=spec.data.train)
            refs["validation"] = check("validation", split.paths["validation"], origin=spec.data.train)
        else:
            refs["train"] = check("train", spec.data.train)
            if spec.data.validation:
                refs["validation"] = check("validation", spec.data.validation)
        if spec.data.test:
            refs["test"] = check("test", spec.data.test)
        for other in ("validation", "test"):
            if other in refs:
                leak = check_leakage(refs["train"].path, refs[other].path, format=refs["train"].format)
                if leak.leaked:
                    line, train_line = leak.examples[0]
                    warnings.append(
                        f"{refs[other].path}: {leak.shared_prompts} of {leak.other_rows} {other} rows share a "
                        f"prompt with the training data (e.g. line {line} = train line {train_line})"
                    )
        bundle = DataBundle(train=refs["train"], validation=refs.get("validation"), test=refs.get("test"))
        return bundle, reports, warnings

    # ------------------------------------------------------------------------------------------ the walk

    def run(
        self,
        spec: JobSpec,
        *,
        evaluate: bool = True,
        detach: bool = False,
        interval: float | None = None,
        on_preflight: Callable[[Preflight], None] | None = None,
        on_submitted: Callable[[Job], None] | None = None,
        on_update: Callable[[Job, list[Event]], None] | None = None,
        on_evaluation: Callable[[str], None] | None = None,
    ) -> RunResult:
        """The whole walk of one job: check and prepare everything, record, submit, follow to the end, and
        run the spec's evaluation after success. The callbacks see each stage (the CLI draws them).

        With `detach=True` it returns once the provider has the job; `follow()` or `anytune jobs logs -f`
        picks it up later. A job that ends other than succeeded is returned as it is, not raised."""
        pre = self.preflight(spec)
        if on_preflight is not None:
            on_preflight(pre)
        job = self.submit_prepared(pre)
        if on_submitted is not None:
            on_submitted(job)
        if detach:
            return RunResult(job)
        job = self.follow(job.id, interval=interval, on_update=on_update)
        if not evaluate or job.status is not JobStatus.SUCCEEDED or job.spec.evaluation is None:
            return RunResult(job)
        result = self.evaluate(job.id, on_progress=on_evaluation or (lambda _s: None))
        return RunResult(job, result)

    # ------------------------------------------------------------------------------------------- submit

    def submit(self, spec: JobSpec, *, job_id: str | None = None) -> Job:
        """Check, record and submit a job. `job_id`: the id to record it under (the service reserves one
        with the request's Idempotency-Key before anything is recorded)."""
        return self.submit_prepared(self.preflight(spec), job_id=job_id)

    def submit_prepared(self, pre: Preflight, *, job_id: str | None = None) -> Job:
        spec = pre.spec
        cost = Cost(
            quoted=pre.quote.price,
            currency=pre.quote.currency,
            billable_tokens=pre.quote.billable_tokens,
            source=pre.quote.price_source,
            recurring=pre.quote.recurring,
        )
        job = self.registry.create_job(
            spec,
            job_id=job_id,
            cost=cost,
            dataset_fingerprint=pre.data.train.fingerprint,
            data=pre.prepared.model_dump(mode="json"),
        )
        self._record(
            job.id,
            [
                Event(kind=EventKind.STATUS, message=f"recorded; submitting to {spec.provider}"),
                *(Event(level="warning", message=w) for w in pre.warnings),
            ],
        )
        return self._submit(job, pre.backend, SubmitRequest(job_id=job.id, spec=spec, prepared=pre.prepared))

    def _submit(self, job: Job, backend: Backend, request: SubmitRequest) -> Job:
        try:
            ref = backend.submit(request)
        except Exception as exc:
            error = (
                exc
                if isinstance(exc, AnytuneError)
                else BackendError(f"{job.provider} failed to start the job: {type(exc).__name__}: {exc}")
            )
            self.registry.update_job(job.id, status=JobStatus.FAILED, error=error.message)
            self._record(
                job.id,
                [Event(kind=EventKind.STATUS, level="error", message=f"submit failed: {error.message}")],
            )
            raise error from exc
        updates: dict[str, Any] = {"provider_ref": ref.model_dump(mode="json"), "provider_job_id": ref.id}
        if ref.provider_quote is not None:
            updates["cost"] = (job.cost or Cost()).model_copy(update={"provider_quote": ref.provider_quote})
            self._record(
                job.id,
                [
                    Event(
                        message=f"{job.provider}'s own estimate: {ref.provider_quote:.4f} "
                        f"{(job.cost or Cost()).currency}"
                    )
                ],
            )
        self.registry.update_job(job.id, **updates)
        try:
            return self.refresh(job.id)
        except BackendError as exc:
            if not exc.retryable:
                raise
            return self.registry.get_job(job.id)  # submitted; the follow will ride out the outage

    def continue_job(
        self, job_id: str, *, step: int | None = None, overrides: list[str] | None = None
    ) -> Job:
        """A new job that trains further from a finished job's checkpoint (the last one, or `step`).

        Providers that can (Together's `from_checkpoint`) start from the saved weights; the new job records
        its parent in `provider_options.<provider>.from_checkpoint` and in its events.
        """
        parent = self.refresh(job_id)
        if parent.status is not JobStatus.SUCCEEDED or not parent.provider_job_id:
            raise UsageError(
                f"job {parent.id} is {parent.status.value}; only a succeeded job can be continued"
            )
        if not self.backend(parent.provider).capabilities().supports_continue:
            raise CapabilityError(f"{parent.provider} cannot continue training from a checkpoint")
        point = parent.provider_job_id + (f":{step}" if step is not None else "")
        job = self._derived_job(
            parent, "from_checkpoint", point, name=f"{parent.name}-continued", overrides=overrides or []
        )
        self._record(job.id, [Event(message=f"continues {parent.id} from {point}")])
        return job

    def _derived_job(
        self,
        parent: Job,
        option: str | None = None,
        value: str | None = None,
        *,
        name: str | None = None,
        provider: str | None = None,
        overrides: Sequence[str] = (),
    ) -> Job:
        """Submit a new job with `parent`'s spec, `provider_options.<provider>.<option> = value`, another
        provider if given, and the overrides; the parent stays as it is."""
        from anytune.jobfile import apply_override, spec_from_dict

        raw = parent.spec.model_dump(mode="json", exclude_none=True)
        if option is not None:
            raw.setdefault("provider_options", {}).setdefault(parent.provider, {})[option] = value
        if provider is not None:
            raw["provider"] = provider
        if name:
            raw["name"] = name
        for override in overrides:
            apply_override(raw, override)
        return self.submit(spec_from_dict(raw, source=f"{option or 'migration'} of {parent.id}"))

    def migrate(self, job_id: str, to: str, *, overrides: Sequence[str] = ()) -> Job:
        """The same job (data, method, hyperparameters, evaluation) on another provider, as a new job: for
        moving off a provider that closes (OpenAI takes no new fine-tuning jobs after 2027-01-06; Azure
        OpenAI goes on). The new job's model registers as a new version of the same model name, and each
        job's events name the other."""
        parent = self.refresh(job_id)
        if parent.status.active:
            raise UsageError(
                f"job {parent.id} is {parent.status.value}; migrate a finished or failed job",
                hint=f"`anytune jobs cancel {parent.id}` first, or wait for it to end",
            )
        if to == parent.provider:
            raise UsageError(
                f"job {parent.id} already runs on {to}", hint="`anytune jobs resume` or `continue`"
            )
        job = self._derived_job(parent, provider=to, overrides=overrides)
        self._record(job.id, [Event(message=f"migrated from {parent.id} on {parent.provider}")])
        self._record(parent.id, [Event(message=f"migrated to {job.id} on {to}")])
        return job

    def pause(self, job_id: str) -> Job:
        job = self.refresh(job_id)
        if job.status not in (JobStatus.RUNNING, JobStatus.QUEUED) or job.provider_ref is None:
            raise UsageError(f"job {job.id} is {job.status.value}; only a running job can be paused")
        return self._ask_backend(job, "pause", "supports_pause")

    def _ask_backend(self, job: Job, verb: str, capability: str | None) -> Job:
        """Ask the job's backend to `verb` (pause, resume, cancel) it, note that in the log, and look again."""
        backend = self.backend(job.provider)
        if capability and not getattr(backend.capabilities(), capability):
            raise CapabilityError(f"{job.provider} cannot {verb} jobs")
        getattr(backend, verb)(ProviderRef.model_validate(job.provider_ref))
        self._record(job.id, [Event(kind=EventKind.STATUS, message=f"{verb} requested")])
        return self.refresh(job.id)

    def resume(self, job_id: str) -> Job:
        """Make a job go again: resume a paused job; restart a failed or cancelled one from its last checkpoint
        (as a new job, where the backend can); or finish submitting a job that was recorded but never
        confirmed (the process died in between).

        In the second case the backend first looks for the job it may already have created for this id
        (`find_existing`), so a crash after the provider accepted the job never leads to a second, paid, job.
        """
        job = self.refresh(job_id)
        if job.status is JobStatus.PAUSED and job.provider_ref is not None:
            return self._ask_backend(job, "resume", None)
        if job.status in (JobStatus.FAILED, JobStatus.CANCELLED) and job.provider_ref is not None:
            return self._restart_from_checkpoint(job)
        if job.status is not JobStatus.PENDING or job.provider_ref is not None:
            raise UsageError(
                f"job {job.id} is {job.status.value} and was submitted; there is nothing to resume",
                hint="`anytune jobs logs -f` follows a running job",
            )
        if job.data is None:
            raise UsageError(f"job {job.id} has no recorded data to resubmit")
        backend = self.backend(job.provider)
        request = SubmitRequest(job_id=job.id, spec=job.spec, prepared=self._recorded_data(job, backend))
        existing = backend.find_existing(request)
        if existing is not None:
            self._record(job.id, [Event(kind=EventKind.STATUS, message=f"found the job on {job.provider}")])
            self.registry.update_job(
                job.id, provider_ref=existing.model_dump(mode="json"), provider_job_id=existing.id
            )
            return self.refresh(job.id)
        # a resubmit cut short (a crash while uploading) is tried again: each attempt is its own event
        before = sum(
            e.message.startswith("resubmitting to") for e in self.registry.events(job.id, kind="status")
        )
        attempt = f" (attempt {before + 1})" if before else ""
        self._record(
            job.id, [Event(kind=EventKind.STATUS, message=f"resubmitting to {job.provider}{attempt}")]
        )
        return self._submit(job, backend, request)

    def _recorded_data(self, job: Job, backend: Backend) -> PreparedData:
        """The prepared data recorded with a job; prepared again (same content, same file names) where the
        files left the cache, or where the job was recorded before prepare() existed."""
        assert job.data is not None
        if "provider" in job.data:
            prepared = PreparedData.model_validate(job.data)
            if not prepared.missing_files():
                return prepared
            bundle = prepared.data
        else:
            bundle = DataBundle.model_validate(job.data)
        prepared = backend.prepare(job.spec, bundle)
        if prepared.errors:
            raise data_refusal(job.provider, prepared.errors)
        return prepared

    def _restart_from_checkpoint(self, job: Job) -> Job:
        """A failed or cancelled job, trained further from its last checkpoint: a new job (the old one stays
        as it ended), whose spec names the checkpoint in `provider_options.<provider>.resume_from`."""
        backend = self.backend(job.provider)
        if not backend.capabilities().supports_resume:
            raise CapabilityError(
                f"{job.provider} cannot restart a {job.status.value} job from a checkpoint",
                hint="submit the job again with `anytune run`",
            )
        point = backend.resume_point(ProviderRef.model_validate(job.provider_ref))
        if point is None:
            raise UsageError(
                f"job {job.id} ({job.status.value}) saved no checkpoint to resume from",
                hint="provider_options.local.checkpoint_steps sets how often checkpoints are saved",
            )
        new = self._derived_job(job, "resume_from", point)
        self._record(new.id, [Event(message=f"resumes {job.id} ({job.status.value}) from {point}")])
        self._record(job.id, [Event(message=f"resumed as {new.id} from {point}")])
        return new

    def _record(self, job_id: str, events: list[Event], status: JobStatus | None = None) -> list[Event]:
        stored = self.registry.add_events(job_id, events)
        self._notify(job_id, stored, status or JobStatus.PENDING)
        return stored

    def _notify(self, job_id: str, events: list[Event], status: JobStatus) -> None:
        for ev in events:
            self.plugins.hook.job_event(job_id=job_id, status=status, event=ev)

    # ----------------------------------------------------------------------------------- follow, cancel

    def refresh(self, job_id: str) -> Job:
        """Ask the backend where the job is; record new events, status, metrics, and the artifact.

        Safe to call from several processes at once: a poll whose events another process already recorded
        is dropped (see `Registry.record_poll`).
        """
        job = self.registry.get_job(job_id)
        if job.provider_ref is None or (
            job.status.terminal and (job.status != JobStatus.SUCCEEDED or job.artifact)
        ):
            return job
        backend = self.backend(job.provider)
        ref = ProviderRef.model_validate(job.provider_ref)
        snap = backend.poll(ref, job.event_cursor)
        if snap.poll_after is not None:
            self._poll_after[job.id] = snap.poll_after
        updates: dict[str, Any] = {"provider_status": snap.provider_status}
        if snap.progress is not None:
            updates["progress"] = snap.progress
        if snap.metrics:
            updates["metrics"] = {**job.metrics, **snap.metrics}
        new_status = None
        events = list(snap.events)
        if snap.status != job.status:
            if can_transition(job.status, snap.status):
                new_status = snap.status
            else:
                events.append(
                    Event(
                        level="warning",
                        message=(
                            f"ignored a status change from {job.status.value} to {snap.status.value} "
                            f"(provider said {snap.provider_status!r})"
                        ),
                    )
                )
        status_after = new_status or job.status
        if snap.error and status_after is JobStatus.FAILED:
            updates["error"] = snap.error
        if snap.trained_tokens is not None or snap.cost is not None or snap.provider_cost is not None:
            cost = job.cost or Cost()
            known = {
                "trained_tokens": snap.trained_tokens,
                "actual": snap.cost,
                "provider_actual": snap.provider_cost,
            }
            updates["cost"] = cost.model_copy(update={k: v for k, v in known.items() if v is not None})
        if status_after is JobStatus.SUCCEEDED and job.artifact is None:
            updates["artifact"] = backend.result(ref)
        recorded = self.registry.record_poll(
            job.id,
            cursor_before=job.event_cursor,
            cursor_after=snap.cursor,
            events=events,
            status=new_status,
            model_name=job.name,
            **updates,
        )
        if recorded is None:  # another process recorded this poll first
            return self.registry.get_job(job.id)
        job, stored = recorded
        self._notify(job.id, stored, job.status)
        return job

    def follow(
        self,
        job_id: str,
        *,
        interval: float | None = None,
        timeout: float | None = None,
        on_update: Callable[[Job, list[Event]], None] | None = None,
    ) -> Job:
        """Poll until the job ends (or `timeout` seconds pass); `on_update` sees each new state and events.

        Polls are paced by the backend (a queued hosted job needs fewer polls than a running local one)
        unless `interval` fixes the pause between polls. A provider that cannot be reached (after the SDK's
        own retries) does not end the follow: the job is still running there. The outage is noted once as
        a warning event, polls back off up to a minute, and its end is noted too. Errors that retrying cannot
        mend (a refused key, an unknown job) still raise."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last_seq = 0
        failures = 0
        while True:
            try:
                job = self.refresh(job_id)
            except BackendError as exc:
                if not exc.retryable:
                    raise
                failures += 1
                job = self.registry.get_job(job_id)
                if failures == 1:
                    self._record(
                        job.id,
                        [
                            Event(
                                level="warning",
                                message=f"{job.provider} unreachable, still following: {exc.message}",
                            )
                        ],
                    )
            else:
                if failures:
                    self._record(
                        job.id,
                        [Event(message=f"{job.provider} answers again (after {failures} failed poll(s))")],
                    )
                failures = 0
            events = self.registry.events(job.id, after=last_seq)
            if events:
                last_seq = events[-1].seq
            if on_update is not None:
                on_update(job, events)
            if job.status.terminal:
                return job
            if deadline is not None and time.monotonic() > deadline:
                return job
            pause = interval if interval is not None else self._pace(job.id)
            if failures:
                pause = min(OUTAGE_MAX_PAUSE_S, max(pause, OUTAGE_FIRST_PAUSE_S) * 2 ** (failures - 1))
            time.sleep(pause)

    def poll_delay(self, job_id: str) -> float:
        """Seconds until this job should be polled again: what a worker waits between two polls."""
        return self._pace(job_id)

    def _pace(self, job_id: str) -> float:
        """Seconds to the next poll: `$ANYTUNE_POLL_INTERVAL` if set (rehearsals against an emulator), else
        the backend's hint for the job's state, else one second."""
        override = os.environ.get("ANYTUNE_POLL_INTERVAL")
        if override:
            return float(override)
        return self._poll_after.get(job_id, 1.0)

    def cancel(self, job_id: str) -> Job:
        job = self.registry.get_job(job_id)
        if job.status.terminal:
            return job
        if job.provider_ref is None:
            self._record(job.id, [Event(kind=EventKind.STATUS, message="cancelled before it was submitted")])
            return self.registry.update_job(job.id, status=JobStatus.CANCELLED)
        return self._ask_backend(job, "cancel", "supports_cancel")

    # ----------------------------------------------------------------------------------------- evaluate

    def evaluate(
        self,
        job_id: str,
        spec: EvalSpec | None = None,
        on_progress: Callable[[str], None] = lambda _s: None,
    ) -> EvalResult:
        """Score a succeeded job's model (and, by default, its base model) on held-out data; store the scores."""
        return self.evaluate_targets([job_id], spec, on_progress=on_progress)

    def resolve_target(self, target: str) -> EvalTarget:
        """A job id (or prefix) or a model reference (NAME, NAME@VERSION, NAME@ALIAS) as something to score."""
        if target.startswith("job-"):
            job = self.refresh(target)
            if job.status is not JobStatus.SUCCEEDED or job.artifact is None:
                raise UsageError(
                    f"job {job.id} has not succeeded (status: {job.status.value}); nothing to evaluate"
                )
            models = self.registry.models_for_job(job.id)
            model = models[-1] if models else None
            return EvalTarget(
                target, job.provider, job.artifact, job.spec.model_for(job.provider), job, model
            )
        model = self.registry.get_model(target)
        job = self.registry.get_job(model.job_id) if model.job_id else None
        return EvalTarget(model.ref, model.provider, model.artifact, model.base_model, job, model)

    def export(
        self, ref: str, out_dir: Path, *, dtype: str = "float32", register: bool = True
    ) -> tuple[ModelArtifact, ModelVersion | None]:
        """Write a model (a job or NAME[@VERSION|@ALIAS]) as full weights that load without anytune, through
        its backend's `export()`; register them as a new version of the same model, with its lineage."""
        target = self.resolve_target(ref)
        backend = self.backend(target.provider)
        if not backend.capabilities().supports_export:
            raise CapabilityError(
                f"{target.label} lives on {target.provider}, which cannot write merged weights",
                hint="hosted fine-tunes are called through their provider (anytune serve proxies any of them)",
            )
        artifact = backend.export(target.artifact, out_dir, dtype=dtype)
        if not register or target.model is None:
            return artifact, None
        m = target.model
        version = self.registry.register_model(
            m.name,
            artifact,
            job_id=m.job_id,
            dataset_fingerprint=m.dataset_fingerprint,
            spec=m.spec,
            metrics=m.metrics,
            cost=m.cost,
            base_model_retires=m.base_model_retires,
            description=f"{m.ref} merged into {target.base_model} ({dtype})",
        )
        return artifact, version

    def _add_serving_costs(self, targets: list[EvalTarget]) -> None:
        """What serving each job's model for this evaluation cost (a deployment billed per hour), added to
        the job's actual cost and noted in its log."""
        for t in targets:
            if t.job is None:
                continue
            cost = self.backend(t.provider).serving_cost(t.artifact)
            if not cost:
                continue
            job = self.registry.get_job(t.job.id)
            before = job.cost or Cost()
            note = f"serving for evaluation: {cost:.4f} {before.currency}"
            updated = before.model_copy(
                update={"actual": (before.actual or 0.0) + cost, "notes": [*before.notes, note]}
            )
            self.registry.update_job(job.id, cost=updated)
            self._record(job.id, [Event(message=f"{note} (added to the actual cost)")])

    def resolve_judge(self, ref: str) -> tuple[Backend, ModelArtifact]:
        """A judge model: a registered model or job, or `provider:model` for a provider's own model."""
        provider, sep, model = ref.partition(":")
        if sep and "@" not in ref and provider in self.plugins.backend_names():
            return self.backend(provider), ModelArtifact.base(provider, model)
        target = self.resolve_target(ref)
        return self.backend(target.provider), target.artifact

    def evaluate_targets(
        self,
        targets: list[str],
        spec: EvalSpec | None = None,
        *,
        changes: dict[str, Any] | None = None,
        on_progress: Callable[[str], None] = lambda _s: None,
    ) -> EvalResult:
        """Score models from any provider on the same held-out data, with the same metrics, each through its
        own backend's `generate()`; by default the first one's base model too, as the A in an A/B. Every
        score is stored with the data's fingerprint, so later comparisons use only like with like.

        `changes` (EvalSpec fields) apply on top of `spec`, or of the first job's own evaluation settings:
        what `anytune eval --metrics ... --limit ...` asks, in either transport."""
        resolved = [self.resolve_target(t) for t in targets]
        first = resolved[0]
        spec = spec or (first.job.spec.evaluation if first.job else None) or EvalSpec()
        if changes:
            spec = EvalSpec.model_validate({**spec.model_dump(), **changes})
        data = spec.data or (first.job.spec.data.test if first.job else None)
        if not data:
            raise UsageError(
                f"{first.label}: no evaluation data",
                hint="pass --data FILE, or set evaluation.data or data.test in the job file",
            )
        subjects: dict[str, tuple[Backend, ModelArtifact]] = {}
        if spec.compare_base:
            backend = self.backend(first.provider)
            subjects["base"] = (backend, backend.base_artifact(first.artifact))
        single_job = len(resolved) == 1 and first.label.startswith("job-")
        for t in resolved:
            subjects["fine-tuned" if single_job else t.label] = (self.backend(t.provider), t.artifact)
        metrics = resolve_metrics(spec.metrics, self.plugins.metrics())
        judge = self.resolve_judge(spec.judge) if spec.judge else None
        result = evaluate(subjects, data, spec, metrics, on_progress, judge=judge)
        self._add_serving_costs(resolved)
        labels = {("fine-tuned" if single_job else t.label): t for t in resolved}
        for subject in result.subjects:
            t = labels.get(subject.subject)
            self.registry.add_evaluation(
                subject=subject.subject,
                provider=subject.provider,
                model_id=subject.model_id,
                dataset_path=result.dataset_path,
                dataset_fingerprint=result.dataset_fingerprint,
                metrics=subject.metrics,
                n=subject.n,
                job_id=(t.job.id if t and t.job else first.job.id if first.job else None),
                model_name=t.model.name if t and t.model else None,
                model_version=t.model.version if t and t.model else None,
                samples={
                    "predictions": subject.predictions,
                    "scores": subject.scores,
                    "ci": subject.ci,
                    "comparisons": [
                        c.model_dump() for c in result.comparisons if subject.subject in (c.a, c.b)
                    ],
                },
            )
        return result
