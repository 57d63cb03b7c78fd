"""The Fireworks AI backend: datasets, supervised fine-tuning and DPO jobs, and chat completions, over
Fireworks' REST API with httpx (no SDK needed).

Fireworks lets the caller name its resources, which makes "exactly once" natural: a dataset is named after
its content hash (the same data is uploaded once, ever), a job after anytune's job id (a create repeated
after a lost answer gets 409 ALREADY_EXISTS, and the job is read back by name instead of made twice)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
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
    Snapshot,
    SubmitRequest,
    UsageError,
    create_once,
    retry_call,
    secret_from_env,
    token_cost,
    token_priced,
    token_rft_quote,
    upload_once,
)
from anytune_fireworks.catalog import load_catalog
from anytune_fireworks.errors import classify
from anytune_fireworks.evaluator import evaluator_body, grader_refusals
from anytune_fireworks.prepare import prepare

API = "https://api.fireworks.ai"
STATUS: dict[str, JobStatus] = {
    "JOB_STATE_UNSPECIFIED": JobStatus.QUEUED,
    "JOB_STATE_CREATING": JobStatus.VALIDATING,
    "JOB_STATE_CREATING_INPUT_DATASET": JobStatus.VALIDATING,
    "JOB_STATE_VALIDATING": JobStatus.VALIDATING,
    "JOB_STATE_PENDING": JobStatus.QUEUED,
    "JOB_STATE_RE_QUEUEING": JobStatus.QUEUED,
    "JOB_STATE_IDLE": JobStatus.QUEUED,
    "JOB_STATE_RUNNING": JobStatus.RUNNING,
    "JOB_STATE_WRITING_RESULTS": JobStatus.RUNNING,
    "JOB_STATE_CANCELLING": JobStatus.RUNNING,
    "JOB_STATE_PAUSED": JobStatus.PAUSED,
    "JOB_STATE_COMPLETED": JobStatus.SUCCEEDED,
    "JOB_STATE_EARLY_STOPPED": JobStatus.SUCCEEDED,  # stopped by early stopping, with its model
    "JOB_STATE_FAILED": JobStatus.FAILED,
    "JOB_STATE_EXPIRED": JobStatus.FAILED,
    "JOB_STATE_CANCELLED": JobStatus.CANCELLED,
    "JOB_STATE_DELETING": JobStatus.CANCELLED,
    "JOB_STATE_DELETING_CLEANING_UP": JobStatus.CANCELLED,
}
POLL_AFTER = {"JOB_STATE_PENDING": 15.0, "JOB_STATE_CREATING": 5.0, "JOB_STATE_VALIDATING": 5.0}
OPTIONS = frozenset({"base_model", "account_id", "output_model", "early_stop", "region", "warm_start_from"})
KINDS = {"sft": "supervisedFineTuningJobs", "dpo": "dpoJobs", "rft": "reinforcementFineTuningJobs"}
ID_PARAMS = {"sft": "supervisedFineTuningJobId", "dpo": "dpoJobId", "rft": "reinforcementFineTuningJobId"}
EVALUATOR_WAIT_S = 600.0


def _kind(spec: JobSpec) -> str:
    return {Method.DPO: "dpo", Method.RFT: "rft"}.get(spec.method_type, "sft")


ID = re.compile(r"[^a-z0-9-]+")


def job_name(job_id: str) -> str:
    """The Fireworks job id derived from anytune's (lowercase letters, digits and hyphens, at most 63)."""
    return "anytune-" + hashlib.sha1(job_id.encode()).hexdigest()[:16]


def _retired_fields(spec: JobSpec) -> list[Problem]:
    """What the job asks that Fireworks' API (v5.10) no longer takes, and is therefore not sent: the
    gradient accumulation (Training V2 refuses the field; folded into the batch where there is one), a
    region (gone from the job's schema) and early stopping (deprecated: managed training does not stop
    early)."""
    hp, options = spec.hyperparameters, spec.options_for("fireworks")
    problems = []
    if hp.gradient_accumulation_steps is not None:
        folded = (
            f"sent as batchSizeSamples = batch_size x {hp.gradient_accumulation_steps}"
            if hp.batch_size is not None
            else "ignored: set batch_size, and the samples per step are batch_size x this"
        )
        problems.append(
            Problem(
                "warning",
                "hyperparameters.gradient_accumulation_steps",
                f"Fireworks' Training V2 batches by samples and refuses gradient accumulation; {folded}",
            )
        )
    if options.get("region"):
        problems.append(
            Problem(
                "warning",
                "provider_options.fireworks.region",
                "Fireworks' API no longer takes a region for a fine-tuning job (v5.10): ignored",
            )
        )
    if options.get("early_stop") or hp.early_stopping is not None:
        field = "provider_options.fireworks.early_stop" if options.get("early_stop") else "hyperparameters"
        problems.append(
            Problem(
                "warning",
                field,
                "Fireworks' managed training does not stop early (earlyStop is deprecated): ignored",
            )
        )
    return problems


def _rank_ok(r: int, top: int) -> bool:
    return 4 <= r <= top and r & (r - 1) == 0


class FireworksBackend(Backend):
    name: ClassVar[str] = "fireworks"
    secrets: ClassVar[tuple[str, ...]] = ("FIREWORKS_API_KEY", "WANDB_API_KEY")

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self._clients: dict[tuple[str, str], Any] = {}

    # ----------------------------------------------------------------------------------- HTTP plumbing

    def _http(self) -> Any:
        try:
            import httpx
        except ImportError:  # pragma: no cover - a dependency of this package
            raise UsageError("the Fireworks backend needs httpx", hint="pip install httpx") from None
        key = secret_from_env("FIREWORKS_API_KEY", what="Fireworks API key")
        base = (os.environ.get("FIREWORKS_BASE_URL") or API).rstrip("/")
        if (key, base) not in self._clients:  # one connection pool per key and address
            self._clients[(key, base)] = httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60.0
            )
        return self._clients[(key, base)]

    def _account(self, spec: JobSpec | None = None, ref: ProviderRef | None = None) -> str:
        if ref is not None and ref.data.get("account"):
            return str(ref.data["account"])
        account = (spec.options_for(self.name).get("account_id") if spec else None) or os.environ.get(
            "FIREWORKS_ACCOUNT_ID"
        )
        if not account:
            raise UsageError(
                "no Fireworks account: set FIREWORKS_ACCOUNT_ID or provider_options.fireworks.account_id",
                hint="your account id is in the Fireworks console, and in `firectl whoami`",
            )
        return str(account)

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request, raising for an error status (classified by the caller)."""
        response = self._http().request(method, path, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else {}

    def _read(self, method: str, path: str, **kwargs: Any) -> Any:
        """A request that may safely be repeated: retried on 429, 5xx and dropped connections."""
        return retry_call(lambda: self._send(method, path, **kwargs), classify, self.policy)

    def _get_or_none(self, path: str) -> Any | None:
        try:
            return self._read("GET", path)
        except BackendError as exc:
            if exc.status == 404:
                return None
            raise

    # --------------------------------------------------------------------------------------- contract

    def capabilities(self) -> Capabilities:
        return Capabilities(
            methods=frozenset({Method.SFT, Method.DPO, Method.RFT}),
            adapters=frozenset({AdapterType.LORA}),
            data_formats=frozenset(
                {
                    DataFormat.CHAT,
                    DataFormat.INSTRUCTION,
                    DataFormat.COMPLETION,
                    DataFormat.PREFERENCE,
                    DataFormat.OPENAI_PREFERENCE,
                }
            ),
            hyperparameters=frozenset(
                {
                    "epochs",
                    "learning_rate",
                    "batch_size",
                    "max_seq_length",
                    "gradient_accumulation_steps",
                    "warmup_steps",
                    "weight_decay",
                    "early_stopping",
                }
            ),
            base_models=None,  # any Fireworks model id; Fireworks says on create whether it is tunable
            limits=Limits(min_examples=3),
            supports_cancel=True,
            notes=[
                "Fireworks trains LoRA adapters (rank 4-32, powers of two) and serves them on the base model",
                "provider_options.fireworks: account_id, output_model, early_stop, region, warm_start_from",
            ],
        )

    def check_spec(self, spec: JobSpec) -> list[Problem]:
        problems: list[Problem] = []
        catalog = load_catalog()
        model = catalog.model(spec.model_for(self.name))
        hp, options = spec.hyperparameters, spec.options_for(self.name)

        def error(field: str, message: str) -> None:
            problems.append(Problem("error", field, message))

        unknown = sorted(set(options) - OPTIONS)
        if unknown:
            error(
                "provider_options.fireworks",
                f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(OPTIONS))}",
            )
        if not model.known:
            problems.append(
                Problem(
                    "warning", "base_model", f"{model.id} is not in anytune's Fireworks catalog; sent as is"
                )
            )
        if hp.epochs is not None and (
            hp.epochs != int(hp.epochs) or not 1 <= hp.epochs <= catalog.max_epochs
        ):
            error(
                "hyperparameters.epochs",
                f"Fireworks takes a whole number of epochs, 1 to {catalog.max_epochs}",
            )
        if spec.adapter.type == "lora" and not _rank_ok(spec.adapter.r, catalog.max_lora_rank):
            error("adapter.r", f"Fireworks takes a LoRA rank of 4 to {catalog.max_lora_rank}, a power of two")
        low, high = catalog.learning_rate
        if hp.learning_rate is not None and not low <= hp.learning_rate <= high:
            problems.append(
                Problem(
                    "warning",
                    "hyperparameters.learning_rate",
                    f"outside Fireworks' suggested {low:g} to {high:g}",
                )
            )
        problems += _retired_fields(spec)
        if hp.max_seq_length and model.context and hp.max_seq_length > model.context:
            error("hyperparameters.max_seq_length", f"{model.id} takes at most {model.context:,} tokens")
        if spec.method_type is Method.RFT:
            problems += grader_refusals(spec.method.grader) + _rft_settings(spec)
        if not os.environ.get("FIREWORKS_API_KEY"):
            error(CREDENTIALS, "no Fireworks API key: set FIREWORKS_API_KEY")
        if not (options.get("account_id") or os.environ.get("FIREWORKS_ACCOUNT_ID")):
            error(CREDENTIALS, "no Fireworks account: set FIREWORKS_ACCOUNT_ID")
        return problems

    def prepare(self, spec: JobSpec, data: DataBundle) -> PreparedData:
        model = load_catalog().model(spec.model_for(self.name))
        context = spec.hyperparameters.max_seq_length or 8192  # Fireworks' default maxContextLength
        return prepare(self.name, spec, data, model.family, context)

    def quote(self, spec: JobSpec, prepared: PreparedData) -> Quote:
        model = load_catalog().model(spec.model_for(self.name))
        epochs = int(spec.hyperparameters.epochs or 1)
        train = prepared.tokens["train"]
        assumptions = [] if model.params_b else [f"the size of {model.id} is unknown to anytune"]
        if spec.method_type is Method.RFT:
            return token_rft_quote(
                self.name,
                spec,
                model=model.id,
                count=train,
                epochs=epochs,
                params_b=model.params_b,
                assumptions=assumptions,
            )
        return token_priced(
            self.name,
            spec,
            model=model.id,
            count=train,
            multiplier=epochs,
            rule=f"tokens billed = {train.tokens:,} training tokens x {epochs} epoch(s)",
            params_b=model.params_b,
            assumptions=assumptions,
        )

    # ----------------------------------------------------------------------------------------- submit

    def _dataset(self, account: str, prepared: PreparedFile) -> str:
        """The dataset holding this file's content: found by its content name, or created and uploaded."""
        dataset_id = "anytune-" + prepared.sha256[:24]
        path = f"/v1/accounts/{account}/datasets/{dataset_id}"

        def ready() -> str | None:
            found = self._get_or_none(path)
            return found["name"] if found and found.get("state") == "READY" else None

        def create() -> str:
            body = {"datasetId": dataset_id, "dataset": {"userUploaded": {}, "displayName": prepared.name}}
            if prepared.format == "chat":
                body["dataset"]["format"] = "CHAT"
            try:
                self._send("POST", f"/v1/accounts/{account}/datasets", json=body)
            except Exception as exc:
                failure = classify(exc)
                if failure.error.status != 409:  # 409: an earlier attempt created it; upload into it
                    raise failure.error from exc
            content = Path(prepared.path).read_bytes()  # at most 150 MB (prepare refuses more)
            files = {"file": (prepared.name, content, "application/jsonl")}
            retry_call(lambda: self._send("POST", f"{path}:upload", files=files), classify, self.policy)
            found = self._read("GET", path)
            if found.get("state") != "READY":
                status = found.get("status") or {}
                raise BackendError(
                    f"Fireworks did not accept {prepared.name}: {status.get('message') or found.get('state')}",
                    hint="fix the data and submit again",
                )
            return str(found["name"])

        return upload_once(self.name, prepared.sha256, ready, create)

    def _job_path(self, account: str, kind: str, job: str | None = None) -> str:
        return f"/v1/accounts/{account}/{KINDS[kind]}" + (f"/{job}" if job else "")

    def find_existing(self, request: SubmitRequest) -> ProviderRef | None:
        account = self._account(request.spec)
        kind = _kind(request.spec)
        found = self._get_or_none(self._job_path(account, kind, job_name(request.job_id)))
        return self._ref(found, account, kind) if found else None

    def _ref(self, job: dict[str, Any], account: str, kind: str) -> ProviderRef:
        config = job.get("trainingConfig") or job
        return ProviderRef(
            provider=self.name,
            id=str(job["name"]).rsplit("/", 1)[-1],
            data={
                "account": account,
                "kind": kind,
                "name": job["name"],
                "base_model": config.get("baseModel"),
                "output_model": config.get("outputModel"),
            },
        )

    def submit(self, request: SubmitRequest) -> ProviderRef:
        spec = request.spec
        account = self._account(spec)
        existing = self.find_existing(request)
        if existing is not None:
            return existing
        files = request.prepared.files
        train = self._dataset(account, files["train"])
        evaluation = self._dataset(account, files["validation"]) if "validation" in files else None
        kind = _kind(spec)
        name = job_name(request.job_id)
        body = self._create_body(spec, account, name, train, evaluation, kind)
        if kind == "rft":
            body["evaluator"] = self._evaluator(account, spec)
        query = {ID_PARAMS[kind]: name}
        path = self._job_path(account, kind)
        job = create_once(
            lambda: self._send("POST", path, json=body, params=query),
            lambda: self._get_or_none(self._job_path(account, kind, name)),
            classify,
            self.policy,
        )
        return self._ref(job, account, kind)

    def _create_body(
        self, spec: JobSpec, account: str, name: str, train: str, evaluation: str | None, kind: str
    ) -> dict[str, Any]:
        hp, options = spec.hyperparameters, spec.options_for(self.name)
        output = options.get("output_model") or (
            f"{ID.sub('-', spec.suffix.lower())}-{name}"[:63] if spec.suffix else name
        )
        config: dict[str, Any] = {
            "outputModel": f"accounts/{account}/models/{output}",
            "loraRank": spec.adapter.r,
            "epochs": int(hp.epochs or 1),
        }
        if options.get("warm_start_from"):
            config["warmStartFrom"] = options["warm_start_from"]
        else:
            config["baseModel"] = load_catalog().resolve(spec.model_for(self.name))
        for ours, theirs in (
            ("learning_rate", "learningRate"),
            ("max_seq_length", "maxContextLength"),
            ("warmup_steps", "learningRateWarmupSteps"),
            ("weight_decay", "optimizerWeightDecay"),
        ):
            value = getattr(hp, ours)
            if value is not None:
                config[theirs] = value
        if hp.batch_size is not None:  # Training V2 batches by samples: accumulation folds into the batch
            config["batchSizeSamples"] = hp.batch_size * (hp.gradient_accumulation_steps or 1)
        body: dict[str, Any] = {"dataset": train, "displayName": spec.name[:60]}
        if kind == "rft":
            return {**body, **_rft_body(spec, config, evaluation)}
        if kind == "dpo":
            body["trainingConfig"] = config
            beta = getattr(spec.method, "beta", None)
            body["lossConfig"] = {"method": "DPO", **({"dpo": {"beta": beta}} if beta is not None else {})}
        else:
            body.update(config)
            if evaluation:
                body["evaluationDataset"] = evaluation
        return body

    def _evaluator(self, account: str, spec: JobSpec) -> str:
        """The evaluator generated from the job's grader: found by its code's hash or created, then waited for
        until Fireworks has built it (ACTIVE); a build that fails is the job's error, before any job exists."""
        ident, body = evaluator_body(spec.method.grader, f"anytune grader for {spec.name}")
        path = f"/v1/accounts/{account}/evaluators/{ident}"

        def create() -> Any:
            try:
                return self._send("POST", f"/v1/accounts/{account}/evaluatorsV2", json=body)
            except Exception as exc:
                failure = classify(exc)
                if failure.error.status != 409:  # 409: made by an earlier attempt
                    raise failure.error from exc
                return None

        if self._get_or_none(path) is None:
            create_once(create, lambda: self._get_or_none(path), classify, self.policy)
        deadline = time.monotonic() + EVALUATOR_WAIT_S
        pause = float(os.environ.get("ANYTUNE_POLL_INTERVAL") or 5.0)
        while True:
            found = self._read("GET", path)
            state = found.get("state")
            if state == "ACTIVE":
                return str(found["name"])
            if state == "BUILD_FAILED" or time.monotonic() > deadline:
                message = (found.get("status") or {}).get("message") or state
                raise BackendError(f"Fireworks could not build the grader's evaluator {ident}: {message}")
            time.sleep(pause)

    # ------------------------------------------------------------------------------------ follow a job

    def poll(self, ref: ProviderRef, cursor: str | None = None) -> Snapshot:
        account, kind = self._account(ref=ref), str(ref.data.get("kind", "sft"))
        job = self._read("GET", self._job_path(account, kind, ref.id))
        state = str(job.get("state") or "JOB_STATE_UNSPECIFIED")
        seen_state, _, seen_step = (cursor or "|0").partition("|")
        last_step = int(seen_step or 0)
        events: list[Event] = []
        if state != seen_state:
            events.append(Event(kind=EventKind.STATUS, message=f"Fireworks: {state}", data={"state": state}))
        metrics: dict[str, float] = {}
        for point in self._metrics(job):
            step = int(point.get("step", 0))
            if step <= last_step:
                continue
            data = {k: float(v) for k, v in point.items() if isinstance(v, int | float)}
            if "train_loss" in data:
                data["loss"] = data["train_loss"]
            if "train_reward" in data:  # RFT: the evaluator's mean score of the step's sampled answers
                data["reward"] = data["train_reward"]
            metrics.update({k: v for k, v in data.items() if k not in ("step", "epoch")})
            events.append(Event(kind=EventKind.METRIC, data=data))
            last_step = step
        status = STATUS.get(state, JobStatus.RUNNING)
        progress = (job.get("jobProgress") or {}).get("percent")
        error = None
        if status is JobStatus.FAILED:
            error = (job.get("status") or {}).get("message") or f"Fireworks reports {state}"
        config = job.get("trainingConfig") or job
        trained = None
        if status is JobStatus.SUCCEEDED:
            trained = int((job.get("jobProgress") or {}).get("inputTokens") or 0) or None
        return Snapshot(
            status=status,
            provider_status=state,
            progress=1.0
            if status is JobStatus.SUCCEEDED
            else (progress / 100 if progress is not None else None),
            metrics=metrics,
            events=events,
            cursor=f"{state}|{last_step}",
            error=error,
            trained_tokens=trained,
            cost=self._cost(trained, config, kind),
            poll_after=POLL_AFTER.get(state, 3.0),
        )

    def _metrics(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        """The job's metrics file (JSON lines with step and losses) from its signed URL, read without the API
        key: a signed URL carries its own authorisation, and the key must not travel to another host."""
        url = job.get("metricsFileSignedUrl")
        if not url:
            return []
        import httpx

        def fetch() -> str:
            response = httpx.get(url, timeout=30.0)
            response.raise_for_status()
            return response.text

        text = retry_call(fetch, classify, self.policy)
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def _cost(self, trained: int | None, config: dict[str, Any], kind: str) -> float | None:
        if not trained:
            return None
        model = load_catalog().model(str(config.get("baseModel") or ""))
        return token_cost(
            self.name, trained, model=model.id, method=kind, adapter="lora", params_b=model.params_b
        )

    def cancel(self, ref: ProviderRef) -> None:
        account, kind = self._account(ref=ref), str(ref.data.get("kind", "sft"))
        self._read("POST", self._job_path(account, kind, ref.id) + ":cancel", json={})

    def delete(self, ref: ProviderRef) -> None:
        """Delete the job on Fireworks (its model stays): `anytune` keeps the job's record."""
        account, kind = self._account(ref=ref), str(ref.data.get("kind", "sft"))
        self._read("DELETE", self._job_path(account, kind, ref.id))

    def list_jobs(self, account: str, kind: str = "sft") -> list[dict[str, Any]]:
        """Every job of the account, page after page."""
        jobs: list[dict[str, Any]] = []
        token = None
        while True:
            params = {"pageSize": 200, **({"pageToken": token} if token else {})}
            page = self._read("GET", self._job_path(account, kind), params=params)
            jobs += page.get(KINDS[kind], [])
            token = page.get("nextPageToken")
            if not token:
                return jobs

    def result(self, ref: ProviderRef) -> ModelArtifact:
        account, kind = self._account(ref=ref), str(ref.data.get("kind", "sft"))
        job = self._read("GET", self._job_path(account, kind, ref.id))
        config = job.get("trainingConfig") or job
        state = job.get("state")
        if STATUS.get(str(state)) is not JobStatus.SUCCEEDED or not config.get("outputModel"):
            raise BackendError(f"Fireworks job {ref.id} has no model (state {state})")
        return ModelArtifact(
            provider=self.name,
            model_id=str(config["outputModel"]),
            kind="provider_model",
            base_model=str(config.get("baseModel") or ""),
            adapter_type="lora",
            metadata={
                "job": job["name"],
                "lora_rank": config.get("loraRank"),
                "how_to_call": "OpenAI-compatible chat completions at /inference/v1 with this model name, "
                "once the LoRA is deployed (serverless for bases that allow it, or on a dedicated deployment)",
            },
        )

    def generate(self, model: ModelArtifact, prompts: list[Messages], params: GenerationParams) -> list[str]:
        name = load_catalog().resolve(model.base_model) if model.kind == "base" else model.model_id
        answers = []
        for messages in prompts:
            body = {
                "model": name,
                "messages": messages,
                "max_tokens": params.max_new_tokens,
                "temperature": params.temperature,
                "top_p": params.top_p,
            }
            response = self._read("POST", "/inference/v1/chat/completions", json=body)
            answers.append(str(response["choices"][0]["message"].get("content") or "").strip())
        return answers


RFT_IGNORED = ("compute_multiplier", "reasoning_effort", "eval_interval", "eval_samples")


def _rft_settings(spec: JobSpec) -> list[Problem]:
    """RFT settings Fireworks has no field for: said, not sent."""
    return [
        Problem("warning", f"method.{name}", "Fireworks' RFT jobs have no such setting: not sent")
        for name in RFT_IGNORED
        if getattr(spec.method, name, None) is not None
    ]


def _rft_body(spec: JobSpec, config: dict[str, Any], evaluation: str | None) -> dict[str, Any]:
    """An RFT job's fields beside the dataset: training, sampling (answers per prompt) and GRPO's loss."""
    method = spec.method
    inference = {
        theirs: getattr(method, ours)
        for ours, theirs in (
            ("samples_per_prompt", "responseCandidatesCount"),
            ("max_completion_tokens", "maxOutputTokens"),
            ("temperature", "temperature"),
        )
        if getattr(method, ours, None) is not None
    }
    if "batchSizeSamples" in config:
        config["batchSize"] = config.pop("batchSizeSamples")
    config.pop("learningRateWarmupSteps", None)
    config.pop("optimizerWeightDecay", None)
    body: dict[str, Any] = {
        "trainingConfig": config,
        "lossConfig": {
            "method": "GRPO",
            **({"klBeta": method.kl_beta} if method.kl_beta is not None else {}),
        },
    }
    if inference:
        body["inferenceParameters"] = inference
    if evaluation:
        body["evaluationDataset"] = evaluation
    return body
