"""The OpenAI backend: files, fine-tuning jobs and chat completions through the official SDK."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from anytune.plugin import (
    CREDENTIALS,
    AdapterType,
    Backend,
    BackendError,
    Capabilities,
    DataBundle,
    DataFormat,
    Event,
    EventKind,
    GenerationParams,
    JobSpec,
    JobStatus,
    Limits,
    Messages,
    Method,
    ModelArtifact,
    PreparedData,
    PreparedFile,
    Problem,
    ProviderRef,
    Quote,
    RetryPolicy,
    SdkErrors,
    Snapshot,
    SubmitRequest,
    UsageError,
    as_one,
    create_once,
    hourly_rft_quote,
    secret_from_env,
    today,
    token_cost,
    token_priced,
    unavailable,
    upload_once,
)
from anytune_openai.catalog import Catalog, OpenAIModel, load_catalog
from anytune_openai.errors import openai_errors
from anytune_openai.graders import compile_grader
from anytune_openai.prepare import MAX_FILE_BYTES, prepare

STATUS: dict[str, JobStatus] = {
    "validating_files": JobStatus.VALIDATING,
    "queued": JobStatus.QUEUED,
    "running": JobStatus.RUNNING,
    "paused": JobStatus.PAUSED,
    "succeeded": JobStatus.SUCCEEDED,
    "failed": JobStatus.FAILED,
    "cancelled": JobStatus.CANCELLED,
}
# Seconds between polls, by OpenAI status: a queued job can wait minutes, a running one shows progress.
POLL_AFTER = {"validating_files": 2.0, "queued": 5.0, "running": 2.0, "paused": 10.0}
OPTIONS = frozenset({"base_model", "learning_rate_multiplier", "metadata", "integrations"})
JOB_TAG = "anytune_job_id"
DEFAULT_EPOCHS = 3  # what OpenAI's "auto" picks for small data sets; used only to quote


DEFAULT_RFT_HOURS_PER_1K_SAMPLES = 0.05  # anytune's assumption for an RFT quote: OpenAI publishes no rate
METHOD_NAMES = {Method.DPO: "dpo", Method.RFT: "reinforcement"}
CATALOG_METHODS = {Method.DPO: "dpo", Method.RFT: "rft"}
RFT_HYPER = {  # RFTMethod field -> OpenAI's reinforcement hyperparameter
    "compute_multiplier": "compute_multiplier",
    "eval_interval": "eval_interval",
    "eval_samples": "eval_samples",
    "reasoning_effort": "reasoning_effort",
}


RFT_UNSENT = ("samples_per_prompt", "max_completion_tokens", "temperature", "kl_beta")


def _method_name(spec: JobSpec) -> str:
    return METHOD_NAMES.get(spec.method_type, "supervised")


class OpenAIBackend(Backend):
    """OpenAI's fine-tuning API. Azure OpenAI's backend (azure.py) is this class with another client,
    catalog, status map and create arguments: the conversion, limits, upload, poll and events are shared."""

    name: ClassVar[str] = "openai"
    label: ClassVar[str] = "OpenAI"
    statuses: ClassVar[dict[str, JobStatus]] = STATUS
    pacing: ClassVar[dict[str, float]] = POLL_AFTER
    options_known: ClassVar[frozenset[str]] = OPTIONS
    secrets: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY", "WANDB_API_KEY")
    errors: ClassVar[SdkErrors] = openai_errors  # the SDK's exceptions in this service's words

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self._clients: dict[tuple[str, str | None], Any] = {}

    # ----------------------------------------------------------------------------------------- client

    def _client(self) -> Any:
        """The SDK client. The key is read from the environment each time and kept only in memory."""
        key = secret_from_env("OPENAI_API_KEY", what="OpenAI API key")
        base_url = os.environ.get("OPENAI_BASE_URL") or None
        cache_key = (key, base_url)
        if cache_key not in self._clients:
            try:
                from openai import OpenAI
            except ImportError:
                raise UsageError(
                    "the OpenAI backend needs the `openai` package", hint="pip install 'anytune[openai]'"
                ) from None

            self._clients[cache_key] = OpenAI(
                api_key=key, base_url=base_url, max_retries=self.policy.attempts - 1, timeout=60.0
            )
        return self._clients[cache_key]

    def catalog(self) -> Catalog:
        return load_catalog()

    def _model(self, spec: JobSpec) -> OpenAIModel:
        name = spec.model_for(self.name)
        model = self.catalog().resolve(name)
        if model is None:
            raise UsageError(f"{self.label} cannot fine-tune {name!r}")
        return model

    # --------------------------------------------------------------------------------------- contract

    def capabilities(self) -> Capabilities:
        return Capabilities(
            methods=frozenset({Method.SFT, Method.DPO, Method.RFT}),
            adapters=frozenset({AdapterType.LORA, AdapterType.FULL}),
            data_formats=frozenset(
                {
                    DataFormat.CHAT,
                    DataFormat.INSTRUCTION,
                    DataFormat.COMPLETION,
                    DataFormat.PREFERENCE,
                    DataFormat.OPENAI_PREFERENCE,
                }
            ),
            hyperparameters=frozenset({"epochs", "batch_size", "seed"}),
            base_models=self.catalog().names(),
            limits=Limits(min_examples=10),
            supports_cancel=True,
            supports_pause=True,
            notes=[
                "OpenAI decides how it trains (adapter settings are not used)",
                "learning rate: provider_options.openai.learning_rate_multiplier",
            ],
        )

    def check_spec(self, spec: JobSpec) -> list[Problem]:
        problems: list[Problem] = []
        catalog = self.catalog()
        model = catalog.resolve(spec.model_for(self.name))
        if model is not None:
            problems += catalog.availability(model, today())
            wanted = CATALOG_METHODS.get(spec.method_type, "sft")
            if wanted not in model.methods:
                problems.append(
                    Problem("error", "method", f"{model.id} can be tuned with: {', '.join(model.methods)}")
                )
        hp = spec.hyperparameters
        if hp.epochs is not None and (hp.epochs != int(hp.epochs) or not 1 <= hp.epochs <= 50):
            problems.append(
                Problem("error", "hyperparameters.epochs", f"{self.label} takes a whole number from 1 to 50")
            )
        if hp.batch_size is not None and hp.batch_size > 256:
            problems.append(Problem("error", "hyperparameters.batch_size", f"{self.label} takes at most 256"))
        if hp.learning_rate is not None:
            problems.append(
                Problem(
                    "warning",
                    "hyperparameters.learning_rate",
                    f"{self.label} takes a multiplier instead: provider_options.{self.name}.learning_rate_multiplier",
                )
            )
        if "adapter" in spec.model_fields_set:
            problems.append(
                Problem(
                    "warning", "adapter", f"{self.label} decides how it trains; adapter settings are not used"
                )
            )
        options = spec.options_for(self.name)
        unknown = sorted(set(options) - self.options_known)
        if unknown:
            problems.append(
                Problem(
                    "error",
                    f"provider_options.{self.name}",
                    f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(self.options_known))}",
                )
            )
        multiplier = options.get("learning_rate_multiplier")
        if (
            multiplier is not None
            and multiplier != "auto"
            and (
                isinstance(multiplier, bool)
                or not isinstance(multiplier, int | float)
                or not 0 < multiplier <= 100
            )
        ):
            problems.append(
                Problem(
                    "error",
                    f"provider_options.{self.name}.learning_rate_multiplier",
                    f"{multiplier!r}: {self.label} takes a number above 0 (or auto)",
                )
            )
        metadata = options.get("metadata") or {}
        if not isinstance(metadata, dict) or any(
            not isinstance(v, str) or len(str(k)) > 64 or len(v) > 512 for k, v in metadata.items()
        ):
            problems.append(
                Problem(
                    "error",
                    f"provider_options.{self.name}.metadata",
                    "pairs of text: keys up to 64 characters, values up to 512 (OpenAI's limits)",
                )
            )
        elif len(metadata) > 15:
            problems.append(
                Problem(
                    "error",
                    f"provider_options.{self.name}.metadata",
                    "at most 15 pairs (anytune adds one to find the job again)",
                )
            )
        if spec.method_type is Method.RFT:
            problems += self._grader_problems(spec)
        problems += self._credential_problems(spec)
        return problems

    def _grader_problems(self, spec: JobSpec) -> list[Problem]:
        """What this service refuses of an RFT job: a list of graders (it takes one); and the RFT settings it
        has no field for (said, not sent)."""
        grader = spec.method.grader
        problems = [
            Problem(
                "warning",
                f"method.{name}",
                f"{self.label}'s reinforcement fine-tuning has no such setting: not sent",
            )
            for name in RFT_UNSENT
            if getattr(spec.method, name, None) is not None
        ]
        if isinstance(grader, list):
            problems.append(
                Problem(
                    "error",
                    "method.grader",
                    f"{self.label} takes one grader, not {len(grader)}: combine them in one grader "
                    "(type: multi, with a formula such as 0.5 * a + 0.5 * b)",
                )
            )
        return problems

    def _credential_problems(self, spec: JobSpec) -> list[Problem]:
        if not os.environ.get("OPENAI_API_KEY"):
            return [Problem("error", CREDENTIALS, "no OpenAI API key: set OPENAI_API_KEY")]
        return []

    def prepare(self, spec: JobSpec, data: DataBundle) -> PreparedData:
        model = self.catalog().resolve(spec.model_for(self.name))
        if model is None:  # check_spec has refused it already; nothing to prepare for
            return PreparedData(provider=self.name, data=data)
        return prepare(
            self.name,
            spec,
            data,
            model,
            self._max_upload_bytes(),
            rft_needs_validation=self.rft_needs_validation,
        )

    rft_needs_validation: ClassVar[bool] = False  # Azure requires a validation file for RFT

    def _max_upload_bytes(self) -> int | None:
        """The largest training file this service takes (OpenAI: 512 MB)."""
        return MAX_FILE_BYTES

    def quote(self, spec: JobSpec, prepared: PreparedData) -> Quote:
        model = self.catalog().resolve(spec.model_for(self.name))
        if model is None or "train" not in prepared.tokens:
            return unavailable(
                self.name, f"{spec.model_for(self.name)} is not a {self.label} fine-tunable model"
            )
        epochs = int(spec.hyperparameters.epochs or DEFAULT_EPOCHS)
        count = prepared.tokens["train"]
        if spec.method_type is Method.RFT:
            compute = float(getattr(spec.method, "compute_multiplier", None) or 1.0)
            return hourly_rft_quote(
                self.name,
                spec,
                model=model.id,
                count=count,
                epochs=epochs,
                hours_per_1k_answers=DEFAULT_RFT_HOURS_PER_1K_SAMPLES * compute,
                tier=self._price_tier(spec),
                extra=self._rft_notes(),
                provider_decides_samples=True,
            )
        assumptions = []
        if spec.hyperparameters.epochs is None:
            assumptions.append(f"epochs left to {self.label} ('auto'); quoted as {DEFAULT_EPOCHS}")
        tier = self._price_tier(spec)
        return token_priced(
            self.name,
            spec,
            model=model.id,
            count=count,
            multiplier=epochs,
            rule=f"billed tokens = {count.tokens:,} tokens in the training file x {epochs} epoch(s)"
            + (f", {tier} tier" if tier else ""),
            assumptions=assumptions,
            tier=tier,
        )

    def _rft_notes(self) -> list[str]:
        """What an RFT quote must say of this service beyond the price (Azure: its automatic pause)."""
        return []

    def _price_tier(self, spec: JobSpec) -> str | None:
        """The service tier the job is priced at, where the service has tiers (Azure); kept in the job's
        reference as `price_tier` so that the actual cost uses the same price."""
        return None

    def _find_file(self, client: Any, name: str) -> str | None:
        """An earlier upload of this content (files are named by their content), unless the service
        refused it."""
        for f in self.errors.iter(client.files.list, purpose="fine-tune"):
            if f.filename == name and getattr(f, "status", "processed") != "error":
                return str(f.id)
        return None

    def _upload(self, client: Any, prepared: PreparedFile) -> str:
        """The file id for this content: an earlier upload of the same content, or a new one."""

        def find() -> str | None:
            return self._find_file(client, prepared.name)

        def create() -> str:
            with open(prepared.path, "rb") as fh:
                made = client.with_options(max_retries=0).files.create(
                    file=(prepared.name, fh), purpose="fine-tune"
                )
            return str(made.id)

        return upload_once(
            self.name,
            prepared.sha256,
            find,
            lambda: create_once(create, find, self.errors.classify, self.policy),
        )

    def find_existing(self, request: SubmitRequest) -> ProviderRef | None:
        job = self._find_job(self._client(), request.job_id)
        if job is None:
            return None
        return ProviderRef(
            provider=self.name, id=job.id, data={"model": job.model, **self._ref_data(request.spec)}
        )

    def _create_extras(self, spec: JobSpec) -> dict[str, Any]:
        """Arguments this service adds to the job's create call (Azure: the training tier)."""
        return {}

    def _ref_data(self, spec: JobSpec) -> dict[str, Any]:
        """What this service must remember about the job beyond its id (Azure: the deployments)."""
        return {}

    def submit(self, request: SubmitRequest) -> ProviderRef:
        spec = request.spec
        model = self._model(spec)
        client = self._client()
        existing = self.find_existing(request)
        if existing is not None:
            return existing
        files = request.prepared.files
        training_file = self._upload(client, files["train"])
        validation_file = self._upload(client, files["validation"]) if "validation" in files else None

        options = spec.options_for(self.name)
        hp = spec.hyperparameters
        hyper: dict[str, Any] = {
            "n_epochs": int(hp.epochs) if hp.epochs is not None else "auto",
            "batch_size": hp.batch_size if hp.batch_size is not None else "auto",
            "learning_rate_multiplier": options.get("learning_rate_multiplier", "auto"),
        }
        kind = _method_name(spec)
        method: dict[str, Any] = {"hyperparameters": hyper}
        if kind == "dpo":
            hyper["beta"] = spec.method.beta if spec.method.beta is not None else "auto"
        if kind == "reinforcement":
            hyper.update(
                {
                    theirs: getattr(spec.method, ours)
                    for ours, theirs in RFT_HYPER.items()
                    if getattr(spec.method, ours)
                }
            )
            method["grader"] = compile_grader(as_one(spec.method.grader))
        body: dict[str, Any] = {
            "model": model.id,
            "training_file": training_file,
            "method": {"type": kind, kind: method},
            "metadata": {**options.get("metadata", {}), JOB_TAG: request.job_id},
        }
        if validation_file:
            body["validation_file"] = validation_file
        if spec.suffix:
            body["suffix"] = spec.suffix
        if hp.seed is not None:
            body["seed"] = hp.seed
        if options.get("integrations"):
            body["integrations"] = options["integrations"]
        body.update(self._create_extras(spec))
        creator = client.with_options(max_retries=0)
        job = create_once(
            lambda: creator.fine_tuning.jobs.create(**body),
            lambda: self._find_job(client, request.job_id),
            self.errors.classify,
            self.policy,
        )
        return ProviderRef(
            provider=self.name,
            id=job.id,
            data={
                "model": model.id,
                "training_file": training_file,
                "validation_file": validation_file,
                **self._ref_data(spec),
            },
        )

    def _find_job(self, client: Any, job_id: str) -> Any | None:
        page = self.errors.call(client.fine_tuning.jobs.list, metadata={JOB_TAG: job_id}, limit=10)
        return next((j for j in page.data if (j.metadata or {}).get(JOB_TAG) == job_id), None)

    def poll(self, ref: ProviderRef, cursor: str | None = None) -> Snapshot:
        client = self._client()
        job = self.errors.call(client.fine_tuning.jobs.retrieve, ref.id)
        new: list[Any] = []
        # Events come newest first, a page at a time: read back to the last one already recorded.
        for ev in self.errors.iter(client.fine_tuning.jobs.list_events, ref.id, limit=100):
            if ev.id == cursor:
                break
            new.append(ev)
        new.reverse()
        events: list[Event] = []
        metrics: dict[str, float] = {}
        step = total = None
        for ev in new:
            data = dict(ev.data or {}) if isinstance(ev.data, dict) else {}
            if ev.type == "metrics" and data:
                if "train_loss" in data:
                    data["loss"] = data["train_loss"]
                if "valid_loss" in data:
                    data["eval_loss"] = data["valid_loss"]
                if "train_reward_mean" in data:  # reinforcement fine-tuning
                    data["reward"] = data["train_reward_mean"]
                metrics.update({k: float(v) for k, v in data.items() if isinstance(v, int | float)})
                step, total = data.get("step", step), data.get("total_steps", total)
                events.append(Event(kind=EventKind.METRIC, message=ev.message, data=data))
            else:
                level = {"warn": "warning", "error": "error"}.get(ev.level, "info")
                events.append(Event(kind=EventKind.LOG, level=level, message=ev.message, data=data))
        status = self.statuses.get(job.status, JobStatus.RUNNING)
        progress = step / total if step and total else None
        if status is JobStatus.SUCCEEDED:
            progress = 1.0
        error = None
        if job.error is not None and getattr(job.error, "message", None):
            error = f"{job.error.message} ({job.error.code}, {job.error.param})"
        trained = job.trained_tokens
        method = {"dpo": "dpo", "reinforcement": "rft"}.get(job.method.type if job.method else "", "sft")
        return Snapshot(
            status=status,
            provider_status=job.status,
            progress=progress,
            metrics=metrics,
            events=events,
            cursor=new[-1].id if new else cursor,
            error=error,
            step=step,
            total_steps=total,
            trained_tokens=trained,
            cost=token_cost(
                self.name, trained, model=job.model, method=method, tier=ref.data.get("price_tier")
            ),
            poll_after=self.pacing.get(job.status),
        )

    def cancel(self, ref: ProviderRef) -> None:
        self.errors.call(self._client().fine_tuning.jobs.cancel, ref.id)

    def pause(self, ref: ProviderRef) -> None:
        self.errors.call(self._client().fine_tuning.jobs.pause, ref.id)

    def resume(self, ref: ProviderRef) -> None:
        self.errors.call(self._client().fine_tuning.jobs.resume, ref.id)

    def result(self, ref: ProviderRef) -> ModelArtifact:
        client = self._client()
        job = self.errors.call(client.fine_tuning.jobs.retrieve, ref.id)
        if not job.fine_tuned_model:
            raise BackendError(f"{self.label} job {ref.id} has no fine-tuned model (status {job.status})")
        checkpoints = [
            {"step": c.step_number, "model": c.fine_tuned_model_checkpoint, "metrics": c.metrics.model_dump()}
            for c in self.errors.list(client.fine_tuning.jobs.checkpoints.list, ref.id, limit=100)
        ]
        model = self.catalog().resolve(job.model)
        retires = model.serves_until() if model else None  # the fine-tune stops working then
        return ModelArtifact(
            provider=self.name,
            model_id=job.fine_tuned_model,
            kind="provider_model",
            base_model=job.model,
            metadata={
                "trained_tokens": job.trained_tokens,
                "result_files": list(getattr(job, "result_files", None) or []),  # Azure leaves it out
                "checkpoints": sorted(checkpoints, key=lambda c: c["step"]),
                "hyperparameters": job.method.model_dump(warnings=False)
                .get(job.method.type, {})
                .get("hyperparameters")
                if job.method
                else None,
            },
            base_model_retires=retires,
        )

    def _served_model(self, model: ModelArtifact) -> str:
        """The `model` argument of a chat completion that calls `model`."""
        if model.kind == "base":
            resolved = self.catalog().resolve(model.base_model)
            return resolved.id if resolved else model.base_model
        return model.model_id

    def generate(self, model: ModelArtifact, prompts: list[Messages], params: GenerationParams) -> list[str]:
        client = self._client()
        name = self._served_model(model)
        outputs = []
        for messages in prompts:
            answer = self.errors.call(
                client.chat.completions.create,
                model=name,
                messages=messages,
                max_completion_tokens=params.max_new_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
            )
            outputs.append((answer.choices[0].message.content or "").strip())
        return outputs
