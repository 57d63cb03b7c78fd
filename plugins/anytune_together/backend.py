"""The Together AI backend: uploads, fine-tunes, downloads and chat completions through the official SDK."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from anytune.plugin import (
    CREDENTIALS,
    AdapterType,
    Backend,
    BackendError,
    Capabilities,
    DataBundle,
    DataError,
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
    Snapshot,
    SubmitRequest,
    UsageError,
    anytune_home,
    create_once,
    retry_call,
    secret_from_env,
    token_cost,
    token_priced,
)
from anytune_together.catalog import load_catalog
from anytune_together.errors import classify, sdk_call
from anytune_together.prepare import prepare

STATUS: dict[str, JobStatus] = {
    "pending": JobStatus.QUEUED,
    "queued": JobStatus.QUEUED,
    "running": JobStatus.RUNNING,
    "compressing": JobStatus.RUNNING,
    "uploading": JobStatus.RUNNING,
    "cancel_requested": JobStatus.RUNNING,
    "cancelled": JobStatus.CANCELLED,
    "error": JobStatus.FAILED,
    "user_error": JobStatus.FAILED,
    "completed": JobStatus.SUCCEEDED,
}
POLL_AFTER = {
    "pending": 10.0,
    "queued": 10.0,
    "running": 3.0,
    "compressing": 5.0,
    "uploading": 5.0,
    "cancel_requested": 2.0,
}
# provider_options.together keys passed to the SDK's create() as they are
PASSTHROUGH = (
    "n_checkpoints",
    "packing",
    "min_lr_ratio",
    "scheduler_num_cycles",
    "wandb_project_name",
    "wandb_name",
    "wandb_entity",
    "wandb_base_url",
    "dpo_normalize_logratios_by_length",
    "from_hf_model",
    "hf_model_revision",
)
OPTIONS = frozenset(PASSTHROUGH) | {"base_model", "n_evals", "train_on_inputs", "from_checkpoint", "download"}
TAG_PREFIX = "at"
MAX_SUFFIX = 40


def job_tag(job_id: str) -> str:
    """A short tag derived from anytune's job id, carried in the suffix so the job can be found again."""
    return TAG_PREFIX + hashlib.sha1(job_id.encode()).hexdigest()[:8]


def suffix_for(spec: JobSpec, job_id: str) -> str:
    tag = job_tag(job_id)
    if not spec.suffix:
        return tag
    return f"{spec.suffix[: MAX_SUFFIX - len(tag) - 1]}-{tag}"


class TogetherBackend(Backend):
    name: ClassVar[str] = "together"
    secrets: ClassVar[tuple[str, ...]] = ("TOGETHER_API_KEY", "WANDB_API_KEY")

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self._clients: dict[tuple[str, str | None], Any] = {}

    def _client(self) -> Any:
        key = secret_from_env("TOGETHER_API_KEY", what="Together API key")
        base_url = os.environ.get("TOGETHER_BASE_URL") or None
        if (key, base_url) not in self._clients:
            try:
                from together import Together
            except ImportError:
                raise UsageError(
                    "the Together backend needs the `together` package",
                    hint="pip install 'anytune[together]'",
                ) from None
            self._clients[(key, base_url)] = Together(
                api_key=key, base_url=base_url, max_retries=self.policy.attempts - 1, timeout=60.0
            )
        return self._clients[(key, base_url)]

    # --------------------------------------------------------------------------------------- contract

    def capabilities(self) -> Capabilities:
        return Capabilities(
            methods=frozenset({Method.SFT, Method.DPO, Method.CPT}),
            adapters=frozenset({AdapterType.LORA, AdapterType.FULL}),
            data_formats=frozenset(set(DataFormat)),
            hyperparameters=frozenset(
                {
                    "epochs",
                    "learning_rate",
                    "batch_size",
                    "gradient_accumulation_steps",
                    "lr_scheduler",
                    "warmup_ratio",
                    "weight_decay",
                    "max_grad_norm",
                    "max_seq_length",
                    "seed",
                    "early_stopping",
                }
            ),
            base_models=None,  # Together adds models often; its own limits endpoint is the judge
            limits=Limits(min_examples=1),
            supports_cancel=True,
            supports_continue=True,
            notes=[
                "continue from a checkpoint: anytune jobs continue JOB [--step N]",
                "provider_options.together.download: adapter | merged fetches the weights after the job",
            ],
        )

    def _model_name(self, spec: JobSpec) -> str:
        return load_catalog().resolve(spec.model_for(self.name))

    def check_spec(self, spec: JobSpec) -> list[Problem]:
        problems: list[Problem] = []

        def error(field: str, message: str) -> None:
            problems.append(Problem("error", field, message))

        hp, options = spec.hyperparameters, spec.options_for(self.name)
        unknown = sorted(set(options) - OPTIONS)
        if unknown:
            error(
                "provider_options.together",
                f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(OPTIONS))}",
            )
        if hp.lr_scheduler not in (None, "linear", "cosine"):
            error("hyperparameters.lr_scheduler", "Together offers linear and cosine")
        if hp.epochs is not None and hp.epochs != int(hp.epochs):
            error("hyperparameters.epochs", "Together takes a whole number of epochs")
        if hp.warmup_steps is not None:
            error("hyperparameters.warmup_steps", "Together takes warmup_ratio instead")
        method = spec.method
        if spec.method_type is Method.DPO and method.loss_type not in (None, "sigmoid", "simpo"):
            error("method.loss_type", "Together offers DPO (sigmoid) and SimPO (method.simpo_gamma > 0)")
        adapter = spec.adapter
        if adapter.type == "lora" and (
            adapter.use_rslora or adapter.init != "default" or adapter.modules_to_save
        ):
            problems.append(
                Problem("warning", "adapter", "Together does not use use_rslora, init or modules_to_save")
            )
        if options.get("download") not in (None, False, "adapter", "merged"):
            error("provider_options.together.download", "use adapter or merged")
        if not os.environ.get("TOGETHER_API_KEY"):
            error(CREDENTIALS, "no Together API key: set TOGETHER_API_KEY")
            return problems
        if options.get("from_checkpoint"):
            return problems  # the checkpoint's own model decides the limits; Together checks them on create
        problems += self._check_limits(spec)
        return problems

    def _check_limits(self, spec: JobSpec) -> list[Problem]:
        """Together's limits for the model (one GET, nothing uploaded)."""
        model = self._model_name(spec)
        try:
            limits = sdk_call(self._client().fine_tuning.model_limits, model_name=model)
        except BackendError as exc:
            if exc.credentials:
                return [Problem("error", CREDENTIALS, f"{exc.message} (check TOGETHER_API_KEY)")]
            if exc.retryable:
                return [
                    Problem("warning", "base_model", f"could not check Together's limits now ({exc.message})")
                ]
            return [
                Problem("error", "base_model", f"Together cannot fine-tune {model!r}: {exc.provider_message}")
            ]
        problems: list[Problem] = []
        hp, adapter = spec.hyperparameters, spec.adapter
        full = adapter.type == "full"
        dpo = spec.method_type is Method.DPO

        def refuse(field: str, message: str) -> None:
            problems.append(Problem("error", field, message))

        def within(field: str, value: float | None, low: float, high: float) -> None:
            if value is not None and not low <= value <= high:
                refuse(field, f"Together takes {low:g} to {high:g} for {model}")

        if full and not limits.supports_full_training:
            refuse("adapter", f"Together offers only LoRA for {model}")
        training = limits.full_training if full else limits.lora_training
        if training is not None:
            top = training.max_batch_size_dpo if dpo else training.max_batch_size
            within("hyperparameters.batch_size", hp.batch_size, training.min_batch_size, top)
        if adapter.type == "lora":
            within("adapter.r", adapter.r, 1, limits.lora_training.max_rank)
            offered = limits.lora_training.target_modules
            if adapter.target_modules != "all-linear" and not set(adapter.target_modules) <= set(offered):
                refuse("adapter.target_modules", f"Together offers: all-linear, {', '.join(offered)}")
        within("hyperparameters.epochs", hp.epochs, 1, limits.max_num_epochs)
        within(
            "hyperparameters.learning_rate",
            hp.learning_rate,
            limits.min_learning_rate,
            limits.max_learning_rate,
        )
        seq_top = limits.max_seq_length_dpo if dpo else limits.max_seq_length_sft
        within("hyperparameters.max_seq_length", hp.max_seq_length, limits.min_max_seq_length, seq_top)
        return problems

    def prepare(self, spec: JobSpec, data: DataBundle) -> PreparedData:
        return prepare(self.name, spec, data, load_catalog().model(spec.model_for(self.name)).family)

    def quote(self, spec: JobSpec, prepared: PreparedData) -> Quote:
        model = load_catalog().model(spec.model_for(self.name))
        options = spec.options_for(self.name)
        epochs = int(spec.hyperparameters.epochs or 1)
        train = prepared.tokens["train"]
        processed = train.tokens * epochs
        rule = f"tokens processed = {train.tokens:,} training tokens x {epochs} epoch(s)"
        validation = prepared.tokens.get("validation")
        if validation is not None:
            n_evals = int(options.get("n_evals", 10))
            processed += validation.tokens * n_evals
            rule += f" + {validation.tokens:,} validation tokens x {n_evals} evaluation(s)"
        count = train.model_copy(update={"tokens": processed, "notes": list(train.notes)})
        assumptions = [] if model.params_b else [f"the size of {model.id} is unknown to anytune"]
        quote = token_priced(
            self.name,
            spec,
            model=model.id,
            count=count,
            multiplier=1,
            rule=rule + " (packing on)",
            params_b=model.params_b,
            assumptions=assumptions,
        )
        if quote.price is None:
            quote.assumptions.append("Together's own estimate is recorded when the job is submitted")
        return quote

    def _upload(self, client: Any, prepared: PreparedFile) -> str:
        """Upload through the SDK (which reuses a file Together already has with the same checksum) and make
        sure Together accepted it. The SDK's own retries are off for it: it retried Together's 409 (the
        answer that the file exists, which it then reads as the file's id) with back-off, about 3.5 s
        wasted for each upload of data Together already had; anytune's retries take the transient failures
        (an upload is named by its checksum, so trying it again is safe)."""
        once = client.with_options(max_retries=0)
        uploaded = retry_call(
            lambda: once.files.upload(Path(prepared.path), purpose="fine-tune", check=True),
            classify,
            self.policy,
        )
        info = sdk_call(client.files.retrieve, uploaded.id)
        if getattr(info, "processing_status", None) == "PENDING":
            # sent before a crash but never checked (the SDK asks for the check right after sending, and a
            # second upload of the same content only gets its id back): Together refuses a job naming it
            info = sdk_call(client.post, f"/v1/files/{uploaded.id}/preprocess", cast_to=type(info))
        report = getattr(info, "validation_report", None) or (info.model_extra or {}).get("validation_report")
        valid = report.get("valid") if isinstance(report, dict) else getattr(report, "valid", True)
        if valid is False:
            reason = report.get("error") if isinstance(report, dict) else getattr(report, "error", "")
            raise DataError(
                f"Together refused {prepared.name}: {reason}", hint="fix the data and submit again"
            )
        return str(uploaded.id)

    def _find_job(self, client: Any, job_id: str) -> Any | None:
        tag = job_tag(job_id)
        listing = sdk_call(client.fine_tuning.list)
        return next(
            (j for j in listing.data or [] if str(getattr(j, "suffix", "") or "").endswith(tag)), None
        )

    def find_existing(self, request: SubmitRequest) -> ProviderRef | None:
        job = self._find_job(self._client(), request.job_id)
        return (
            ProviderRef(provider=self.name, id=job.id, data={"model": job.model}) if job is not None else None
        )

    def submit(self, request: SubmitRequest) -> ProviderRef:
        spec, client = request.spec, self._client()
        existing = self.find_existing(request)
        if existing is not None:
            return existing
        files = request.prepared.files
        training_file = self._upload(client, files["train"])
        validation_file = self._upload(client, files["validation"]) if "validation" in files else None
        kwargs = self._create_args(
            spec, request.job_id, training_file, validation_file, files["train"].format
        )
        estimate = None
        try:
            est = sdk_call(client.fine_tuning.estimate_price, **self._estimate_args(kwargs))
            if getattr(est, "estimation_available", False):
                estimate = float(est.estimated_total_price)
        except BackendError:
            pass  # the estimate is informative; the job does not depend on it
        creator = client.with_options(max_retries=0)
        job = create_once(
            lambda: creator.fine_tuning.create(**kwargs),
            lambda: self._find_job(client, request.job_id),
            classify,
            self.policy,
        )
        return ProviderRef(
            provider=self.name,
            id=job.id,
            provider_quote=estimate,
            data={
                "model": kwargs.get("model") or kwargs.get("from_checkpoint"),
                "training_file": training_file,
                "validation_file": validation_file,
                "suffix": kwargs["suffix"],
                "download": spec.options_for(self.name).get("download"),
            },
        )

    def _create_args(
        self, spec: JobSpec, job_id: str, training_file: str, validation_file: str | None, kind: str
    ) -> dict[str, Any]:
        hp, options, adapter = spec.hyperparameters, spec.options_for(self.name), spec.adapter
        args: dict[str, Any] = {"training_file": training_file, "suffix": suffix_for(spec, job_id)}
        if options.get("from_checkpoint"):
            args["from_checkpoint"] = options["from_checkpoint"]
        else:
            args["model"] = self._model_name(spec)
        if validation_file:
            args["validation_file"] = validation_file
            args["n_evals"] = int(options.get("n_evals", 10))
        for ours, theirs in (
            ("epochs", "n_epochs"),
            ("learning_rate", "learning_rate"),
            ("batch_size", "batch_size"),
            ("warmup_ratio", "warmup_ratio"),
            ("weight_decay", "weight_decay"),
            ("max_grad_norm", "max_grad_norm"),
            ("max_seq_length", "max_seq_length"),
            ("seed", "random_seed"),
            ("gradient_accumulation_steps", "gradient_accumulation_steps"),
        ):
            value = getattr(hp, ours)
            if value is not None:
                args[theirs] = int(value) if ours == "epochs" else value
        if hp.lr_scheduler:
            args["lr_scheduler_type"] = hp.lr_scheduler
        if adapter.type == "full":
            args["lora"] = False
        else:
            args.update(
                lora=True,
                lora_r=adapter.r,
                lora_alpha=adapter.effective_alpha,
                lora_dropout=adapter.dropout,
                lora_trainable_modules=adapter.target_modules
                if isinstance(adapter.target_modules, str)
                else ",".join(adapter.target_modules),
            )
        if spec.method_type is Method.DPO:
            method = spec.method
            args["training_method"] = "dpo"
            for ours in ("beta", "rpo_alpha", "simpo_gamma"):
                value = getattr(method, ours)
                if value is not None:
                    args["dpo_beta" if ours == "beta" else ours] = value
        elif kind != "general":
            train_on_inputs = getattr(spec.method, "train_on_inputs", False)
            args["train_on_inputs"] = options.get("train_on_inputs", True if train_on_inputs else "auto")
        es = hp.early_stopping
        if es is not None:
            args.update(
                early_stopping_enabled=True,
                early_stopping_patience=es.patience,
                early_stopping_min_delta=es.min_delta,
            )
            args["n_evals"] = max(args.get("n_evals", 0), es.patience + 2)
        for key in PASSTHROUGH:
            if key in options:
                args[key] = options[key]
        if options.get("wandb_project_name"):
            args["wandb_api_key"] = secret_from_env("WANDB_API_KEY", what="Weights & Biases key")
        return args

    @staticmethod
    def _estimate_args(create: dict[str, Any]) -> dict[str, Any]:
        out = {
            k: create[k]
            for k in ("training_file", "validation_file", "model", "from_checkpoint", "n_epochs", "n_evals")
            if k in create
        }
        if create.get("lora") is False:
            out["training_type"] = {"type": "Full"}
        else:
            out["training_type"] = {
                "type": "Lora",
                "lora_r": create["lora_r"],
                "lora_alpha": int(create["lora_alpha"]),
            }
        method = create.get("training_method", "sft")
        out["training_method"] = {"method": method}
        if method == "sft":
            out["training_method"]["train_on_inputs"] = create.get("train_on_inputs", "auto")
        return out

    def poll(self, ref: ProviderRef, cursor: str | None = None) -> Snapshot:
        client = self._client()
        job = sdk_call(client.fine_tuning.retrieve, ref.id)
        seen_events, _, seen_step = (cursor or "0:0").partition(":")
        events_all = list(sdk_call(client.fine_tuning.list_events, ref.id).data or [])
        new_events = events_all[int(seen_events) :]
        last_step = int(seen_step or 0)
        metrics_page = sdk_call(client.fine_tuning.list_metrics, ref.id, global_step_from=last_step + 1)
        events: list[Event] = []
        for ev in new_events:
            level = {"warning": "warning", "error": "error"}.get(ev.level or "info", "info")
            data = {"type": ev.type, "step": ev.step}
            events.append(
                Event(
                    kind=EventKind.CHECKPOINT if ev.type == "checkpoint_save" else EventKind.LOG,
                    level=level,
                    message=ev.message,
                    data={k: v for k, v in data.items() if v is not None},
                )
            )
        metrics: dict[str, float] = {}
        total_steps = (job.model_extra or {}).get("total_steps")
        for point in metrics_page.metrics or []:
            step = int(point.get("global_step", 0))
            data = {"step": step, **{k: float(v) for k, v in point.items() if k != "global_step"}}
            if total_steps:
                data["total_steps"] = total_steps
            if "train_loss" in data:
                data["loss"] = data["train_loss"]
            metrics.update({k: v for k, v in data.items() if k not in ("step", "total_steps")})
            events.append(Event(kind=EventKind.METRIC, data=data))
            last_step = max(last_step, step)
        extra = job.model_extra or {}
        step, total = extra.get("steps_completed"), extra.get("total_steps")
        status = STATUS.get(job.status, JobStatus.RUNNING)
        progress = min(1.0, step / total) if step is not None and total else None
        if status is JobStatus.SUCCEEDED:
            progress = 1.0
        error = None
        if status is JobStatus.FAILED:
            failures = [
                e.message for e in events_all if (e.level or "") == "error" or "error" in (e.type or "")
            ]
            error = failures[-1] if failures else f"Together reports {job.status}"
        return Snapshot(
            status=status,
            provider_status=job.status,
            progress=progress,
            metrics=metrics,
            events=events,
            cursor=f"{len(events_all)}:{last_step}",
            error=error,
            step=step,
            total_steps=total,
            trained_tokens=job.token_count,
            cost=self._cost(job),
            provider_cost=job.total_price / 1e9 if job.total_price is not None else None,  # nanodollars
            poll_after=POLL_AFTER.get(job.status),
        )

    def _cost(self, job: Any) -> float | None:
        """Trained tokens at the catalog price, computed like the quote so that the two compare."""
        model = load_catalog().model(str(job.model))
        method = getattr(job.training_method, "method", None) or "sft"
        kind = getattr(job.training_type, "type", None) or "Lora"
        return token_cost(
            self.name,
            job.token_count,
            model=model.id,
            method=str(method),
            adapter="full" if str(kind).lower() == "full" else "lora",
            params_b=model.params_b,
        )

    def cancel(self, ref: ProviderRef) -> None:
        sdk_call(self._client().fine_tuning.cancel, ref.id)

    def result(self, ref: ProviderRef) -> ModelArtifact:
        client = self._client()
        job = sdk_call(client.fine_tuning.retrieve, ref.id)
        name = job.x_model_output_name
        if not name:
            raise BackendError(f"Together job {ref.id} has no output model (status {job.status})")
        checkpoints = [
            {"step": c.step, "path": c.path, "type": c.checkpoint_type}
            for c in sdk_call(client.fine_tuning.list_checkpoints, ref.id).data or []
        ]
        full = getattr(job.training_type, "type", None) == "Full"
        extra = job.model_extra or {}
        artifact = ModelArtifact(
            provider=self.name,
            model_id=name,
            kind="provider_model",
            base_model=job.model or "",
            adapter_type="full" if full else "lora",
            metadata={
                "adapter_output_name": extra.get("adapter_output_name"),
                "token_count": job.token_count,
                "total_price_usd": job.total_price / 1e9 if job.total_price is not None else None,
                "checkpoints": sorted(checkpoints, key=lambda c: c["step"] or 0),
                "job": ref.id,
            },
        )
        download = ref.data.get("download")
        if download:
            folder = self.download(ref.id, "model_output_path" if full else download)
            artifact = artifact.model_copy(
                update={"path": str(folder), "files": sorted(p.name for p in folder.iterdir())}
            )
        return artifact

    def download(self, job_id: str, checkpoint: str = "adapter", step: int | None = None) -> Path:
        """Fetch a finished job's weights with the SDK's resumable download (Range requests), and unpack them."""
        from together.lib.resources.files import DownloadManager

        client = self._client()
        target = (
            anytune_home() / "together" / "downloads" / f"{job_id}-{checkpoint}{f'-{step}' if step else ''}"
        )
        if target.exists():
            return target
        url = f"/v1/finetune/download?ft_id={job_id}&checkpoint={checkpoint}"
        if step:
            url += f"&checkpoint_step={step}"
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            archive = Path(tmp) / "download.tar"
            try:
                DownloadManager(client).download(url=url, output=archive, fetch_metadata=True)
            except Exception as exc:
                raise classify(exc).error from exc
            unpacked = Path(tmp) / "unpacked"
            data = archive.read_bytes()
            if data[:4] == b"\x28\xb5\x2f\xfd":
                kept = target.with_name(target.name + ".tar.zst")  # outside the folder deleted below
                archive.replace(kept)
                raise BackendError(
                    "Together sent a .tar.zst archive; anytune cannot unpack zstd yet",
                    hint=f"the archive is kept at {kept}: unpack it with `tar --zstd -xf {kept}`",
                )
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
                tar.extractall(unpacked, filter="data")
            unpacked.rename(target)
        return target

    def generate(self, model: ModelArtifact, prompts: list[Messages], params: GenerationParams) -> list[str]:
        client = self._client()
        name = load_catalog().resolve(model.base_model) if model.kind == "base" else model.model_id
        answers = []
        for messages in prompts:
            response = sdk_call(
                client.chat.completions.create,
                model=name,
                messages=messages,
                max_tokens=params.max_new_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
            )
            answers.append((response.choices[0].message.content or "").strip())
        return answers
