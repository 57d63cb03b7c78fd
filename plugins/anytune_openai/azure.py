"""The Azure OpenAI backend (`azure-openai`): OpenAI-model fine-tuning on Azure AI Foundry, where it goes on
after OpenAI's own self-serve fine-tuning closes (2027-01-06).

It is the OpenAI backend with Azure's client (`openai.AzureOpenAI`: endpoint, API version, `api-key` or a
Microsoft Entra token, read from the SDK's own variables), Azure's catalog (model versions, training tiers,
prices per tier, hosting per hour), Azure's statuses (`pending`) and the `trainingType` every create must
carry. Data conversion, OpenAI's limits, uploads, polls and events are the OpenAI backend's, not copied.

A fine-tuned model answers only through a deployment, billed per hour while it exists: evaluation calls the
deployment named in `provider_options.azure-openai.deployment` (or `$AZURE_OPENAI_DEPLOYMENT`), else one
named after the model; the base model likewise (`base_deployment`, `$AZURE_OPENAI_BASE_DEPLOYMENT`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar

from anytune.plugin import (
    CREDENTIALS,
    BackendError,
    CapabilityError,
    GenerationParams,
    JobSpec,
    JobStatus,
    Messages,
    ModelArtifact,
    PreparedData,
    PreparedFile,
    Problem,
    ProviderRef,
    Quote,
    SdkErrors,
    Snapshot,
    SubmitRequest,
    UsageError,
    create_once,
    http_failure,
    recurring_cost,
    secret_from_env,
    upload_once,
)
from anytune_openai.backend import OPTIONS, POLL_AFTER, STATUS, OpenAIBackend
from anytune_openai.catalog import Catalog, load_catalog
from anytune_openai.errors import azure_errors

TIERS = ("standard", "globalstandard", "developer")
DEFAULT_TIER = "standard"  # regional: the data stays in the resource's region
DEFAULT_API_VERSION = "2025-04-01-preview"
AZURE_OPTIONS = OPTIONS | {
    "training_type",
    "deployment",
    "base_deployment",
    "create_deployment",
    "region",
    "endpoint",
    "api_version",
}
SERVICE_KEYS = ("endpoint", "api_version")  # where the job lives: kept with it, used by every later call
_service: ContextVar[dict[str, str] | None] = ContextVar("anytune_azure_service", default=None)
MANAGEMENT_API_VERSION = "2024-10-01"
MANAGEMENT_VARIABLES = ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZURE_OPENAI_RESOURCE")
DEPLOY_TIMEOUT_S = 30 * 60
BLOB_CONTAINER = "AZURE_OPENAI_BLOB_CONTAINER_URL"


class AzureOpenAIBackend(OpenAIBackend):
    name: ClassVar[str] = "azure-openai"
    label: ClassVar[str] = "Azure OpenAI"
    statuses: ClassVar[dict[str, JobStatus]] = {
        **STATUS,
        "pending": JobStatus.QUEUED,
        "notRunning": JobStatus.QUEUED,
    }
    pacing: ClassVar[dict[str, float]] = {**POLL_AFTER, "pending": 5.0, "notRunning": 5.0}
    options_known: ClassVar[frozenset[str]] = AZURE_OPTIONS
    secrets: ClassVar[tuple[str, ...]] = (
        "AZURE_OPENAI_API_KEY",
        "AZURE_OPENAI_AD_TOKEN",
        "AZURE_MANAGEMENT_TOKEN",
        BLOB_CONTAINER,  # its SAS token is a secret
        "WANDB_API_KEY",
    )

    rft_needs_validation: ClassVar[bool] = True  # Azure's RFT rule: training and validation files
    errors: ClassVar[SdkErrors] = azure_errors  # Azure's error codes (invalidPayload, quotaExceeded, ...)
    upload_limit: int = 512 * 1024 * 1024  # bigger files go through Blob Storage and Azure's file import

    def __init__(self, policy: Any = None) -> None:
        super().__init__(policy)
        self._serving: dict[str, float] = {}  # fine-tuned model -> hosting cost of deployments made for it

    def _max_upload_bytes(self) -> int | None:
        return None if os.environ.get(BLOB_CONTAINER) else self.upload_limit

    def _upload(self, client: Any, prepared: PreparedFile) -> str:
        """Files up to the upload limit as for OpenAI; bigger ones are put in the Blob Storage container named
        by $AZURE_OPENAI_BLOB_CONTAINER_URL (a URL with a SAS token that may write) and imported from there,
        Azure's route for large training files. Found again by name either way: never uploaded twice."""
        if prepared.size <= self.upload_limit:
            return super()._upload(client, prepared)
        container = secret_from_env(BLOB_CONTAINER, what="Blob Storage container URL with a SAS token")

        def find() -> str | None:
            return self._find_file(client, prepared.name)

        def create() -> str:
            blob_url = _blob_url(container, prepared.name)
            _put_blob(blob_url, prepared.path)
            made = self.errors.call(
                client.with_options(max_retries=0).post,
                "/files/import",
                body={"purpose": "fine-tune", "filename": prepared.name, "content_url": blob_url},
                cast_to=dict,
            )
            return str(made["id"])

        return upload_once(
            self.name,
            prepared.sha256,
            find,
            lambda: create_once(create, find, self.errors.classify, self.policy),
        )

    def catalog(self) -> Catalog:
        return load_catalog("azure_models.yaml", self.name, self.label)

    def _client(self) -> Any:
        """`AzureOpenAI` configured as the SDK documents: AZURE_OPENAI_ENDPOINT, OPENAI_API_VERSION (default
        here: a version with fine-tuning events, checkpoints and DPO), and one credential: AZURE_OPENAI_API_KEY,
        a Microsoft Entra token in AZURE_OPENAI_AD_TOKEN, or (AZURE_OPENAI_AUTH=entra) a token provider from
        `azure-identity` that refreshes tokens for as long as a job is followed. Kept in memory only."""
        service = _service.get() or {}
        endpoint = service.get("endpoint") or os.environ.get("AZURE_OPENAI_ENDPOINT")
        if not endpoint:
            raise UsageError(
                "no Azure OpenAI endpoint: set AZURE_OPENAI_ENDPOINT (https://<resource>.openai.azure.com)"
                " or provider_options.azure-openai.endpoint"
            )
        version = service.get("api_version") or os.environ.get("OPENAI_API_VERSION") or DEFAULT_API_VERSION
        credential = self._credential()
        cache_key = (endpoint, version, *credential.items())
        if cache_key not in self._clients:
            try:
                from openai import AzureOpenAI
            except ImportError:
                raise UsageError(
                    "the Azure OpenAI backend needs the `openai` package",
                    hint="pip install 'anytune[openai]'",
                ) from None
            self._clients[cache_key] = AzureOpenAI(
                azure_endpoint=endpoint,
                api_version=version,
                max_retries=self.policy.attempts - 1,
                timeout=60.0,
                **credential,
            )
        return self._clients[cache_key]

    @staticmethod
    def _credential() -> dict[str, Any]:
        """The SDK argument that authenticates: an Entra token provider, a static Entra token, or the key."""
        if (os.environ.get("AZURE_OPENAI_AUTH") or "").lower() == "entra":
            return {"azure_ad_token_provider": entra_token_provider()}
        token = os.environ.get("AZURE_OPENAI_AD_TOKEN")
        if token:
            return {"azure_ad_token": token}
        return {"api_key": secret_from_env("AZURE_OPENAI_API_KEY", what="Azure OpenAI API key")}

    @contextmanager
    def _at(self, values: dict[str, Any]) -> Iterator[None]:
        """Calls in this block go to the endpoint and API version a job was created with (its options),
        else to the environment's."""
        token = _service.set({k: str(values[k]) for k in SERVICE_KEYS if values.get(k)})
        try:
            yield
        finally:
            _service.reset(token)

    def find_existing(self, request: SubmitRequest) -> ProviderRef | None:
        with self._at(request.spec.options_for(self.name)):
            return super().find_existing(request)

    def submit(self, request: SubmitRequest) -> ProviderRef:
        with self._at(request.spec.options_for(self.name)):
            return super().submit(request)

    def poll(self, ref: ProviderRef, cursor: str | None = None) -> Snapshot:
        with self._at(ref.data):
            return super().poll(ref, cursor)

    def cancel(self, ref: ProviderRef) -> None:
        with self._at(ref.data):
            super().cancel(ref)

    def pause(self, ref: ProviderRef) -> None:
        with self._at(ref.data):
            super().pause(ref)

    def resume(self, ref: ProviderRef) -> None:
        with self._at(ref.data):
            super().resume(ref)

    def _credential_problems(self, spec: JobSpec) -> list[Problem]:
        missing = []
        if not (os.environ.get("AZURE_OPENAI_ENDPOINT") or spec.options_for(self.name).get("endpoint")):
            missing.append("AZURE_OPENAI_ENDPOINT")
        entra = (os.environ.get("AZURE_OPENAI_AUTH") or "").lower() == "entra"
        if not (entra or os.environ.get("AZURE_OPENAI_API_KEY") or os.environ.get("AZURE_OPENAI_AD_TOKEN")):
            missing.append("AZURE_OPENAI_API_KEY (or AZURE_OPENAI_AD_TOKEN, or AZURE_OPENAI_AUTH=entra)")
        if entra and not _importable("azure.identity"):
            missing.append(
                "the azure-identity package for AZURE_OPENAI_AUTH=entra (pip install azure-identity)"
            )
        if missing:
            return [Problem("error", CREDENTIALS, f"Azure OpenAI needs {' and '.join(missing)}")]
        return []

    def _tier(self, spec: JobSpec) -> str:
        return str(spec.options_for(self.name).get("training_type") or DEFAULT_TIER).lower()

    def check_spec(self, spec: JobSpec) -> list[Problem]:
        problems = super().check_spec(spec)
        tier = self._tier(spec)
        field = f"provider_options.{self.name}.training_type"
        model = self.catalog().resolve(spec.model_for(self.name))
        if tier not in TIERS:
            problems.append(Problem("error", field, f"{tier!r}: use one of {', '.join(TIERS)}"))
        elif model is not None and model.tiers and tier not in model.tiers:
            problems.append(
                Problem(
                    "error", field, f"{model.id} trains on the tiers {', '.join(model.tiers)}, not {tier}"
                )
            )
        options = spec.options_for(self.name)
        problems += self._region_problems(model, tier, str(options.get("region") or ""))
        if options.get("create_deployment"):
            missing = [v for v in (*MANAGEMENT_VARIABLES, "AZURE_MANAGEMENT_TOKEN") if not os.environ.get(v)]
            if missing:
                problems.append(
                    Problem(
                        "error",
                        f"provider_options.{self.name}.create_deployment",
                        f"creating a deployment for evaluation needs {', '.join(missing)} (the management API)",
                    )
                )
        elif spec.evaluation is not None and not self._deployment(options, "deployment"):
            problems.append(
                Problem(
                    "warning",
                    "evaluation",
                    "Azure serves a fine-tune only through a deployment: deploy the model when the job ends "
                    f"(named as the model, or set provider_options.{self.name}.deployment); "
                    "evaluation calls it, and it is billed per hour while it exists",
                )
            )
        return problems

    def _region_problems(self, model: Any, tier: str, region: str) -> list[Problem]:
        """Where the resource is (`provider_options.azure-openai.region`, optional), against where Azure
        trains the model on the tier: standard training only in the model's regions, global in many."""
        region = region.lower().replace(" ", "")
        if not region or model is None or tier not in TIERS:
            return []
        offered = model.regions if tier == "standard" else self.catalog().global_training_regions
        if not offered or region in offered:
            return []
        also = "; globalstandard trains from any of the global regions" if tier == "standard" else ""
        return [
            Problem(
                "error",
                f"provider_options.{self.name}.region",
                f"{tier} training of {model.id} is offered in {', '.join(offered)}, not {region}{also}",
            )
        ]

    def _price_tier(self, spec: JobSpec) -> str | None:
        return self._tier(spec)

    def _rft_notes(self) -> list[str]:
        return [
            "Azure pauses an RFT job by itself when training and grading reach 5,000 USD; resume it to go on "
            "(billing then continues with no further cap)"
        ]

    def quote(self, spec: JobSpec, prepared: PreparedData) -> Quote:
        """OpenAI's quote at the price of the training tier, with the hourly hosting of a deployment apart."""
        quote = super().quote(spec, prepared)
        model = self.catalog().resolve(spec.model_for(self.name))
        if model is None or not quote.available:
            return quote
        hosting = recurring_cost(
            self.name, "hosting a deployment of the fine-tune", model=model.id, tier="hosting"
        )
        return quote.model_copy(update={"recurring": [hosting] if hosting else []})

    def _create_extras(self, spec: JobSpec) -> dict[str, Any]:
        # Azure refuses a create without it, with a misleading "model does not support fine-tuning"
        return {"extra_body": {"trainingType": self._tier(spec)}}

    def _ref_data(self, spec: JobSpec) -> dict[str, Any]:
        options = spec.options_for(self.name)
        data = {"price_tier": self._tier(spec)}
        for key in ("deployment", "base_deployment"):
            if options.get(key):
                data[key] = str(options[key])
        if options.get("create_deployment"):
            data["create_deployment"] = True
        data.update({k: str(options[k]) for k in SERVICE_KEYS if options.get(k)})
        return data

    def result(self, ref: ProviderRef) -> ModelArtifact:
        with self._at(ref.data):
            artifact = super().result(ref)
        keys = ("deployment", "base_deployment", "price_tier", "create_deployment", *SERVICE_KEYS)
        served = {k: ref.data[k] for k in keys if k in ref.data}
        return artifact.model_copy(update={"metadata": {**artifact.metadata, **served}})

    def base_artifact(self, model: ModelArtifact) -> ModelArtifact:
        base = super().base_artifact(model)
        metadata = {k: model.metadata[k] for k in SERVICE_KEYS if model.metadata.get(k)}
        if model.metadata.get("base_deployment"):
            metadata["deployment"] = model.metadata["base_deployment"]
        return base.model_copy(update={"metadata": metadata}) if metadata else base

    @staticmethod
    def _deployment(values: dict[str, Any], key: str) -> str | None:
        env = {"deployment": "AZURE_OPENAI_DEPLOYMENT", "base_deployment": "AZURE_OPENAI_BASE_DEPLOYMENT"}[
            key
        ]
        return values.get(key) or os.environ.get(env) or None

    def _served_model(self, model: ModelArtifact) -> str:
        """The deployment that serves `model`: named in the job's options or the environment, else the
        model's own name (a common way to name deployments)."""
        key = "base_deployment" if model.kind == "base" else "deployment"
        named = model.metadata.get(
            "deployment"
        )  # a base artifact carries its base's deployment under this key
        return named or self._deployment({}, key) or super()._served_model(model)

    def generate(self, model: ModelArtifact, prompts: list[Messages], params: GenerationParams) -> list[str]:
        named = model.metadata.get("deployment") or self._deployment({}, "deployment")
        if model.kind != "base" and model.metadata.get("create_deployment") and not named:
            with self._temporary_deployment(model) as name:
                served = model.model_copy(update={"metadata": {**model.metadata, "deployment": name}})
                return self._generate(served, prompts, params)
        return self._generate(model, prompts, params)

    def serving_cost(self, model: ModelArtifact) -> float | None:
        return self._serving.pop(model.model_id, None)  # each deployment's hosting is counted once

    @contextmanager
    def _temporary_deployment(self, model: ModelArtifact) -> Iterator[str]:
        """A deployment of `model` made through the management API for as long as the block runs (the job
        allowed it with `create_deployment`), deleted afterwards; its hosting time at the catalog's hourly
        price is remembered for `serving_cost`."""
        import httpx

        base, headers = self._management()
        name = "anytune-eval-" + hashlib.sha1(model.model_id.encode()).hexdigest()[:10]
        url = f"{base}/{name}"
        params = {"api-version": MANAGEMENT_API_VERSION}
        body = {
            "sku": {"name": "standard", "capacity": 1},
            "properties": {"model": {"format": "OpenAI", "name": model.model_id, "version": "1"}},
        }
        with httpx.Client(timeout=60.0, headers=headers) as http:
            _management_call(http.put(url, params=params, json=body))
            started = time.monotonic()
            try:
                self._wait_provisioned(http, url, params)
                yield name
            finally:
                _management_call(http.delete(url, params=params))
                hours = (time.monotonic() - started) / 3600
                hosting = recurring_cost(self.name, "hosting", model=model.base_model, tier="hosting")
                if hosting is not None:
                    self._serving[model.model_id] = (
                        self._serving.get(model.model_id, 0.0) + hours * hosting.price
                    )

    @staticmethod
    def _wait_provisioned(http: Any, url: str, params: dict[str, str]) -> None:
        deadline = time.monotonic() + DEPLOY_TIMEOUT_S
        pause = float(os.environ.get("ANYTUNE_POLL_INTERVAL") or 10.0)
        while True:
            state = (
                _management_call(http.get(url, params=params)).get("properties", {}).get("provisioningState")
            )
            if state == "Succeeded":
                return
            if state in ("Failed", "Canceled"):
                raise BackendError(
                    f"Azure could not create the evaluation deployment ({state}): {url.rsplit('/', 1)[-1]}"
                )
            if time.monotonic() > deadline:
                raise BackendError(
                    f"the evaluation deployment was not ready after {DEPLOY_TIMEOUT_S // 60} minutes"
                )
            time.sleep(pause)

    def _management(self) -> tuple[str, dict[str, str]]:
        """The management API's deployments of this Azure OpenAI resource, and the Bearer token for it."""
        missing = [v for v in MANAGEMENT_VARIABLES if not os.environ.get(v)]
        if missing:
            raise UsageError(f"creating a deployment needs {', '.join(missing)}")
        sub, group, account = (os.environ[v] for v in MANAGEMENT_VARIABLES)
        token = secret_from_env("AZURE_MANAGEMENT_TOKEN", what="Azure Resource Manager token")
        endpoint = (os.environ.get("AZURE_MANAGEMENT_ENDPOINT") or "https://management.azure.com").rstrip("/")
        base = (
            f"{endpoint}/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.CognitiveServices"
            f"/accounts/{account}/deployments"
        )
        return base, {"Authorization": f"Bearer {token}"}

    def _generate(self, model: ModelArtifact, prompts: list[Messages], params: GenerationParams) -> list[str]:
        try:
            with self._at(model.metadata):
                return super().generate(model, prompts, params)
        except BackendError as exc:
            if exc.status != 404:
                raise
            raise CapabilityError(
                f"no Azure deployment {self._served_model(model)!r} serves {model.model_id}: {exc.provider_message}",
                hint="deploy the model in Azure AI Foundry, then name the deployment: AZURE_OPENAI_DEPLOYMENT "
                "(fine-tune) / AZURE_OPENAI_BASE_DEPLOYMENT (base), or provider_options.azure-openai.deployment",
            ) from exc


def _management_call(response: Any) -> dict[str, Any]:
    """A management API answer as JSON, or its error with Azure's own words."""
    if response.status_code >= 400:
        try:
            error = response.json().get("error", {})
        except ValueError:
            error = {}
        message = error.get("message") or response.text[:200]
        raise http_failure(
            "Azure management API", response.status_code, message, dict(response.headers)
        ).error
    return response.json() if response.content else {}


def _blob_url(container: str, name: str) -> str:
    """`name` inside a container URL that carries its SAS token as the query."""
    base, _, sas = container.partition("?")
    return f"{base.rstrip('/')}/{name}" + (f"?{sas}" if sas else "")


def _put_blob(url: str, path: str) -> None:
    """Blob Storage's Put Blob (one block blob, streamed; up to 5,000 MiB per Azure's limit)."""
    import httpx

    with open(path, "rb") as fh:
        response = httpx.put(url, content=fh, headers={"x-ms-blob-type": "BlockBlob"}, timeout=600.0)
    if response.status_code >= 300:
        raise http_failure("Azure Blob Storage", response.status_code, response.text[:200]).error


ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"


def entra_token_provider() -> Any:
    """A callable that returns a fresh Microsoft Entra token for Azure OpenAI (DefaultAzureCredential: the
    environment, a managed identity, the Azure CLI's login...)."""
    try:
        from azure.identity import DefaultAzureCredential, get_bearer_token_provider
    except ImportError:
        raise UsageError(
            "AZURE_OPENAI_AUTH=entra needs the azure-identity package",
            hint="pip install azure-identity (or set AZURE_OPENAI_API_KEY or AZURE_OPENAI_AD_TOKEN instead)",
        ) from None
    return get_bearer_token_provider(DefaultAzureCredential(), ENTRA_SCOPE)


def _importable(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
