"""The Amazon Bedrock backend: model customization jobs (fine-tuning, continued pre-training) through boto3,
data staged to S3, and evaluation through the Converse API.

Bedrock names jobs and models by the caller's names, and a job's create takes a client request token: both are
derived from anytune's job id, so a create repeated after a lost answer (or after a crash) finds the job it
made instead of paying for a second one. Credentials come from boto3's own chain (environment, profile, role;
`AWS_ENDPOINT_URL` honoured); the S3 location and the role Bedrock assumes come from provider options or the
environment, never from a file under $ANYTUNE_HOME."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
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
    content_text,
    create_once,
    recurring_cost,
    today,
    token_priced,
    token_rft_quote,
    unavailable,
)
from anytune.plugin import load_catalog as load_prices
from anytune_bedrock.catalog import BedrockModel, load_catalog
from anytune_bedrock.errors import aws_call, classify
from anytune_bedrock.grader_lambda import deploy, grader_refusals
from anytune_bedrock.prepare import prepare
from anytune_bedrock.rft import rft_hyperparameters, rft_problems

STATUS: dict[str, JobStatus] = {
    "InProgress": JobStatus.RUNNING,
    "Stopping": JobStatus.RUNNING,
    "Completed": JobStatus.SUCCEEDED,
    "Failed": JobStatus.FAILED,
    "Stopped": JobStatus.CANCELLED,
}
POLL_AFTER = {"InProgress": 30.0, "Stopping": 10.0}
OPTIONS = frozenset(
    {
        "base_model",
        "region",
        "s3_uri",
        "role_arn",
        "kms_key_id",
        "vpc_subnet_ids",
        "vpc_security_group_ids",
        "learning_rate_multiplier",
        "invoke_model_id",
    }
)
ENV = {
    "s3_uri": "ANYTUNE_BEDROCK_S3_URI",
    "role_arn": "ANYTUNE_BEDROCK_ROLE_ARN",
    "kms_key_id": "ANYTUNE_BEDROCK_KMS_KEY_ID",
    "vpc_subnet_ids": "ANYTUNE_BEDROCK_VPC_SUBNET_IDS",
    "vpc_security_group_ids": "ANYTUNE_BEDROCK_VPC_SECURITY_GROUP_IDS",
}
CUSTOMIZATION = {
    Method.SFT: "FINE_TUNING",
    Method.CPT: "CONTINUED_PRE_TRAINING",
    Method.RFT: "REINFORCEMENT_FINE_TUNING",
}
COMPARABLE = (
    "Claude models can no longer be fine-tuned anywhere; comparable small models: Amazon Nova Lite or Micro "
    "here (provider_options.bedrock.base_model: amazon.nova-lite-v1:0:300k), or Llama 3.1 8B on together, "
    "fireworks or local"
)


def job_name(job_id: str) -> str:
    return "anytune-" + hashlib.sha1(job_id.encode()).hexdigest()[:16]


def _as_list(value: Any) -> list[str]:
    return value if isinstance(value, list) else [s.strip() for s in str(value).split(",") if s.strip()]


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")


class BedrockBackend(Backend):
    name: ClassVar[str] = "bedrock"
    secrets: ClassVar[tuple[str, ...]] = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self._clients: dict[tuple[Any, ...], Any] = {}

    # ------------------------------------------------------------------------------------------ AWS

    def _client(self, service: str, region: str, *, create: bool = False) -> Any:
        """A boto3 client: standard retries (throttling, 5xx) for everything but creates, which retry
        through create_once instead (a retried create must look for the job first)."""
        key = (
            service,
            region,
            create,
            os.environ.get("AWS_ENDPOINT_URL"),
            os.environ.get("AWS_ACCESS_KEY_ID"),
        )
        if key not in self._clients:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise UsageError(
                    "the Bedrock backend needs boto3", hint="pip install 'anytune[bedrock]'"
                ) from None
            # total_max_attempts counts the first try (botocore's max_attempts counts only retries)
            attempts = 1 if create else self.policy.attempts
            config = Config(retries={"mode": "standard", "total_max_attempts": attempts}, connect_timeout=10)
            # a session of its own: boto3's default session keeps the credentials it first found for every
            # later client of the process, whatever the environment says by then (the key above would
            # change, and the client made for it would still sign with the old key)
            session = boto3.session.Session()
            self._clients[key] = session.client(service, region_name=region, config=config)
        return self._clients[key]

    def _setting(self, spec: JobSpec | None, option: str) -> Any:
        options = spec.options_for(self.name) if spec is not None else {}
        value = options.get(option)
        if value is None and option in ENV:
            value = os.environ.get(ENV[option]) or None
        return value

    def _model(self, spec: JobSpec) -> BedrockModel:
        model = load_catalog().model(spec.model_for(self.name))
        if model is None:
            raise UsageError(f"Bedrock cannot customize {spec.model_for(self.name)!r}")
        return model

    def _region(
        self, spec: JobSpec | None, model: BedrockModel | None = None, ref: ProviderRef | None = None
    ) -> str:
        if ref is not None and ref.data.get("region"):
            return str(ref.data["region"])
        return str(self._setting(spec, "region") or (model.region if model else None) or "us-east-1")

    # ------------------------------------------------------------------------------------- contract

    def capabilities(self) -> Capabilities:
        return Capabilities(
            methods=frozenset({Method.SFT, Method.CPT, Method.RFT}),
            adapters=frozenset({AdapterType.LORA}),
            data_formats=frozenset(
                {DataFormat.CHAT, DataFormat.INSTRUCTION, DataFormat.COMPLETION, DataFormat.TEXT}
            ),
            hyperparameters=frozenset({"epochs", "learning_rate", "warmup_steps"}),  # Bedrock sets the batch
            base_models=None,  # checked against models.yaml in check_spec, with the list of what can
            limits=Limits(min_examples=1),
            supports_cancel=True,
            notes=[
                "Bedrock chooses how it trains (parameter-efficient for Nova); adapter settings are not used",
                "a custom model is called on demand (Nova) or through Provisioned Throughput (the others)",
            ],
        )

    def check_spec(self, spec: JobSpec) -> list[Problem]:
        problems: list[Problem] = []

        def error(field: str, message: str) -> None:
            problems.append(Problem("error", field, message))

        options = spec.options_for(self.name)
        unknown = sorted(set(options) - OPTIONS)
        if unknown:
            error(
                "provider_options.bedrock",
                f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(OPTIONS))}",
            )
        catalog = load_catalog()
        name = spec.model_for(self.name)
        model = catalog.model(name)
        if model is None:
            error(
                "base_model",
                f"Bedrock cannot customize {name!r}; it can: {', '.join(sorted(catalog.models))} "
                "(name one with provider_options.bedrock.base_model)",
            )
            return problems
        entry = load_prices().price(self.name, model=model.id)
        if entry is not None and entry.retires is not None and entry.retires <= today():
            source = load_prices().retires_source(self.name)
            error(
                "base_model",
                f"{model.id} reached its end of life on {entry.retires.isoformat()} (source: {source}); "
                f"{COMPARABLE}",
            )
            return problems
        if spec.method_type.value not in model.methods:
            error("method", f"{model.id} takes {', '.join(model.methods)} on Bedrock")
        if spec.method_type is Method.RFT:
            problems += grader_refusals(spec.method.grader) + rft_problems(spec)
        for hp in model.hyperparameters if spec.method_type is not Method.RFT else ():
            value = self._hyper_value(spec, hp)
            if value is None:
                continue
            field = f"hyperparameters.{hp.source}" if hp.source else f"provider_options.bedrock.{hp.option}"
            if hp.type == "int" and value != int(value):
                error(field, f"Bedrock's {hp.name} is a whole number")
            elif not hp.low <= value <= hp.high:
                error(field, f"{model.id} takes {hp.name} from {hp.low:g} to {hp.high:g}")
        s3_uri = self._setting(spec, "s3_uri")
        if not s3_uri:
            error(
                CREDENTIALS, "no S3 location: set ANYTUNE_BEDROCK_S3_URI or provider_options.bedrock.s3_uri"
            )
        elif not str(s3_uri).startswith("s3://") or not _split_s3(str(s3_uri))[0]:
            error("provider_options.bedrock.s3_uri", f"{s3_uri!r} is not an s3://bucket/prefix URI")
        if not self._setting(spec, "role_arn"):
            error(
                CREDENTIALS,
                "no role for Bedrock to assume"
                + (" (nor for the grader's Lambda)" if spec.method_type is Method.RFT else "")
                + ": set ANYTUNE_BEDROCK_ROLE_ARN or provider_options.bedrock.role_arn",
            )
        try:
            import boto3
        except ImportError:
            error(CREDENTIALS, "the Bedrock backend needs boto3: pip install 'anytune[bedrock]'")
            return problems
        if boto3.session.Session().get_credentials() is None:
            error(
                CREDENTIALS,
                "no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            )
        return problems

    def _hyper_value(self, spec: JobSpec, hp: Any) -> float | None:
        options = spec.options_for(self.name)
        value = getattr(spec.hyperparameters, hp.source, None) if hp.source else options.get(hp.option)
        return float(value) if value is not None else None

    def prepare(self, spec: JobSpec, data: DataBundle) -> PreparedData:
        return prepare(self.name, spec, data, self._model(spec))

    def quote(self, spec: JobSpec, prepared: PreparedData) -> Quote:
        model = load_catalog().model(spec.model_for(self.name))
        if model is None:
            return unavailable(self.name, f"Bedrock cannot customize {spec.model_for(self.name)!r}")
        epochs = int(self._epochs(spec, model))
        train = prepared.tokens["train"]
        if spec.method_type is Method.RFT:
            return token_rft_quote(
                self.name,
                spec,
                model=model.id,
                count=train,
                epochs=epochs,
                params_b=model.params_b,
                assumptions=["the grader's Lambda invocations are billed by AWS Lambda, apart"],
            )
        validation = prepared.tokens.get("validation")
        extra = validation.tokens / max(1, train.tokens) if validation else 0.0
        rule = f"tokens billed = {train.tokens:,} training tokens x {epochs} epoch(s)"
        if validation:
            rule += f" + {validation.tokens:,} validation tokens"
        quote = token_priced(
            self.name,
            spec,
            model=model.id,
            count=train,
            multiplier=epochs + extra,
            rule=rule,
            params_b=model.params_b,
        )
        recurring = [
            recurring_cost(
                self.name, "storing the custom model", model=model.id, tier="storage", unit="month"
            )
        ]
        if model.serving == "provisioned":
            recurring.append(
                recurring_cost(
                    self.name,
                    "Provisioned Throughput, one model unit, no commitment",
                    model=model.id,
                    tier="provisioned",
                )
            )
        else:
            quote.assumptions.append(
                "served on demand (a custom model deployment), billed per token like the base model"
            )
        return quote.model_copy(update={"recurring": [r for r in recurring if r is not None]})

    @staticmethod
    def _epochs(spec: JobSpec, model: BedrockModel) -> float:
        if spec.hyperparameters.epochs is not None:
            return spec.hyperparameters.epochs
        default = next((h.default for h in model.hyperparameters if h.name == "epochCount"), 1)
        return default

    # ----------------------------------------------------------------------------------------- submit

    def _stage(self, s3: Any, bucket: str, prefix: str, prepared: PreparedFile) -> str:
        """Upload a prepared file under its content name (once: an object already there is kept)."""
        key = "/".join(p for p in (prefix, "anytune", "data", prepared.name) if p)
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
            if int(head.get("ContentLength", -1)) == prepared.size:
                return f"s3://{bucket}/{key}"
        except Exception as exc:
            error = classify(exc).error
            if error.status not in (404, 403):
                raise error from exc
        aws_call(s3.upload_file, prepared.path, bucket, key)
        return f"s3://{bucket}/{key}"

    def _find(self, client: Any, name: str) -> dict[str, Any] | None:
        try:
            return dict(client.get_model_customization_job(jobIdentifier=name))
        except Exception as exc:
            failure = classify(exc)
            if failure.error.status in (400, 404) and "ResourceNotFound" in failure.error.message:
                return None
            raise failure.error from exc

    def _ref(self, job: dict[str, Any], region: str, spec: JobSpec | None = None) -> ProviderRef:
        return ProviderRef(
            provider=self.name,
            id=str(job["jobName"]),
            data={
                "region": region,
                "arn": job.get("jobArn"),
                "output": (job.get("outputDataConfig") or {}).get("s3Uri"),
                "base_model": spec.model_for(self.name) if spec else None,
            },
        )

    def find_existing(self, request: SubmitRequest) -> ProviderRef | None:
        region = self._region(request.spec, self._model(request.spec))
        job = self._find(self._client("bedrock", region), job_name(request.job_id))
        return self._ref(job, region, request.spec) if job else None

    def submit(self, request: SubmitRequest) -> ProviderRef:
        spec = request.spec
        model = self._model(spec)
        region = self._region(spec, model)
        existing = self.find_existing(request)
        if existing is not None:
            return existing
        bucket, prefix = _split_s3(str(self._setting(spec, "s3_uri")))
        s3 = self._client("s3", region)
        try:
            s3.head_bucket(Bucket=bucket)
        except Exception as exc:
            error = classify(exc).error
            raise BackendError(
                f"the S3 bucket {bucket!r} cannot be used: {error.provider_message or error.message}",
                hint="create it in the model's region, or name another in ANYTUNE_BEDROCK_S3_URI",
                status=error.status,
            ) from exc
        files = request.prepared.files
        train = self._stage(s3, bucket, prefix, files["train"])
        validation = self._stage(s3, bucket, prefix, files["validation"]) if "validation" in files else None
        name = job_name(request.job_id)
        output = f"s3://{bucket}/{'/'.join(p for p in (prefix, 'anytune', 'output', name) if p)}/"
        args: dict[str, Any] = {
            "jobName": name,
            "customModelName": (f"{spec.suffix}-{name}" if spec.suffix else name)[:63],
            "roleArn": str(self._setting(spec, "role_arn")),
            "baseModelIdentifier": model.id,
            "customizationType": CUSTOMIZATION[spec.method_type],
            "trainingDataConfig": {"s3Uri": train},
            "outputDataConfig": {"s3Uri": output},
            "clientRequestToken": name,
            "jobTags": [{"key": "anytune-job", "value": request.job_id}],
        }
        if spec.method_type is Method.RFT:
            lambdas = self._client("lambda", region)
            arn = deploy(lambdas, spec.method.grader, str(self._setting(spec, "role_arn")), classify)
            args["customizationConfig"] = {
                "rftConfig": {
                    "graderConfig": {"lambdaGrader": {"lambdaArn": arn}},
                    "hyperParameters": rft_hyperparameters(spec),
                }
            }
        else:
            args["hyperParameters"] = self._hyperparameters(spec, model)
        if validation:
            args["validationDataConfig"] = {"validators": [{"s3Uri": validation}]}
        kms = self._setting(spec, "kms_key_id")
        if kms:
            args["customModelKmsKeyId"] = str(kms)
        subnets, groups = self._setting(spec, "vpc_subnet_ids"), self._setting(spec, "vpc_security_group_ids")
        if subnets and groups:
            args["vpcConfig"] = {"subnetIds": _as_list(subnets), "securityGroupIds": _as_list(groups)}
        creator, reader = self._client("bedrock", region, create=True), self._client("bedrock", region)
        create_once(
            lambda: creator.create_model_customization_job(**args),
            lambda: self._find(reader, name),
            classify,
            self.policy,
        )
        job = self._find(reader, name)
        if job is None:
            raise BackendError(f"Bedrock accepted job {name} but does not show it", retryable=True)
        return self._ref(job, region, spec)

    def _hyperparameters(self, spec: JobSpec, model: BedrockModel) -> dict[str, str]:
        out = {}
        for hp in model.hyperparameters:
            value = self._hyper_value(spec, hp)
            if value is None:
                continue
            out[hp.name] = str(int(value)) if hp.type == "int" else f"{value:g}"
        return out

    # ------------------------------------------------------------------------------------ follow a job

    def poll(self, ref: ProviderRef, cursor: str | None = None) -> Snapshot:
        region = self._region(None, ref=ref)
        job = aws_call(self._client("bedrock", region).get_model_customization_job, jobIdentifier=ref.id)
        status = str(job.get("status") or "InProgress")
        seen_status, _, seen_step = (cursor or "|0").partition("|")
        last_step = int(seen_step or 0)
        events: list[Event] = []
        if status != seen_status:
            events.append(Event(kind=EventKind.STATUS, message=f"Bedrock: {status}", data={"status": status}))
        metrics: dict[str, float] = {}
        ended = STATUS.get(status, JobStatus.RUNNING).terminal  # Bedrock writes the metrics file at the end
        for row in self._metric_rows(job, region) if ended else []:
            step = int(row["step"])
            if step <= last_step:
                continue
            metrics.update({k: v for k, v in row.items() if k not in ("step", "epoch")})
            events.append(Event(kind=EventKind.METRIC, data=row))
            last_step = step
        neutral = STATUS.get(status, JobStatus.RUNNING)
        training = job.get("trainingMetrics") or {}
        if neutral is JobStatus.SUCCEEDED and "trainingLoss" in training:
            metrics.setdefault("loss", float(training["trainingLoss"]))
        return Snapshot(
            status=neutral,
            provider_status=status,
            progress=1.0 if neutral is JobStatus.SUCCEEDED else None,
            metrics=metrics,
            events=events,
            cursor=f"{status}|{last_step}",
            error=str(job.get("failureMessage") or f"Bedrock reports {status}")
            if neutral is JobStatus.FAILED
            else None,
            poll_after=POLL_AFTER.get(status),
        )

    def _metric_rows(self, job: dict[str, Any], region: str) -> list[dict[str, float]]:
        """Step-wise training loss from the CSV Bedrock writes under the job's output prefix
        (model-customization-job-<id>/training_artifacts/step_wise_training_metrics.csv)."""
        output = (job.get("outputDataConfig") or {}).get("s3Uri")
        arn = str(job.get("jobArn") or "")
        if not output or not arn:
            return []
        bucket, prefix = _split_s3(output)
        key = "/".join(
            p
            for p in (
                prefix,
                f"model-customization-job-{arn.rsplit('/', 1)[-1]}",
                "training_artifacts",
                "step_wise_training_metrics.csv",
            )
            if p
        )
        s3 = self._client("s3", region)
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
        except Exception as exc:
            if classify(exc).error.status in (403, 404) or "NoSuchKey" in str(exc):
                return []
            raise classify(exc).error from exc
        rows = []
        for row in csv.DictReader(io.StringIO(body)):
            try:
                out = {"step": float(row["step_number"]), "epoch": float(row.get("epoch_number") or 0)}
                if row.get("training_loss"):
                    out["loss"] = float(row["training_loss"])
                if row.get("reward"):  # RFT: the grader's mean reward at the step
                    out["reward"] = float(row["reward"])
                if row.get("perplexity"):
                    out["perplexity"] = float(row["perplexity"])
            except (KeyError, ValueError):
                continue
            rows.append(out)
        return rows

    def cancel(self, ref: ProviderRef) -> None:
        region = self._region(None, ref=ref)
        aws_call(self._client("bedrock", region).stop_model_customization_job, jobIdentifier=ref.id)

    def list_jobs(self, region: str) -> list[dict[str, Any]]:
        """The account's customization jobs in `region`, every page."""
        client, jobs, token = self._client("bedrock", region), [], None
        while True:
            page = aws_call(client.list_model_customization_jobs, **({"nextToken": token} if token else {}))
            jobs += page.get("modelCustomizationJobSummaries", [])
            token = page.get("nextToken")
            if not token:
                return jobs

    def result(self, ref: ProviderRef) -> ModelArtifact:
        region = self._region(None, ref=ref)
        job = aws_call(self._client("bedrock", region).get_model_customization_job, jobIdentifier=ref.id)
        if job.get("status") != "Completed":
            raise BackendError(f"Bedrock job {ref.id} has no model (status {job.get('status')})")
        base = str(ref.data.get("base_model") or job.get("baseModelArn", "").rsplit("/", 1)[-1])
        model = load_catalog().model(base)
        serving = model.serving if model else "provisioned"
        how = (
            "on demand: CreateCustomModelDeployment, then Converse with the deployment ARN"
            if serving == "on-demand"
            else "CreateProvisionedModelThroughput (see the quote's hourly price), then Converse with its ARN"
        )
        return ModelArtifact(
            provider=self.name,
            model_id=str(job["outputModelArn"]),
            kind="provider_model",
            base_model=model.id if model else base,
            adapter_type="lora",
            metadata={
                "job": job.get("jobArn"),
                "region": region,
                "custom_model_name": job.get("outputModelName"),
                "training_metrics": job.get("trainingMetrics"),
                "validation_metrics": job.get("validationMetrics"),
                "serving": serving,
                "how_to_call": how,
            },
        )

    def generate(self, model: ModelArtifact, prompts: list[Messages], params: GenerationParams) -> list[str]:
        region = str(
            model.metadata.get("region") or self._region(None, load_catalog().model(model.base_model))
        )
        if model.kind == "base":  # a base model is invoked without its context-window suffix (:128k)
            model_id = re.sub(r":\d+k$", "", model.base_model)
        else:
            model_id = str(model.metadata.get("invoke_model_id") or model.model_id)
        client = self._client("bedrock-runtime", region)
        answers = []
        for messages in prompts:
            system = [{"text": content_text(m.get("content"))} for m in messages if m.get("role") == "system"]
            turns = [
                {"role": m["role"], "content": [{"text": content_text(m.get("content"))}]}
                for m in messages
                if m.get("role") in ("user", "assistant")
            ]
            args: dict[str, Any] = {
                "modelId": model_id,
                "messages": turns,
                "inferenceConfig": {
                    "maxTokens": params.max_new_tokens,
                    "temperature": params.temperature,
                    "topP": params.top_p,
                },
            }
            if system:
                args["system"] = system
            response = aws_call(client.converse, **args)
            content = response["output"]["message"]["content"]
            answers.append("".join(c.get("text", "") for c in content).strip())
        return answers
