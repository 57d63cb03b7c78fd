"""An emulator of Azure OpenAI's data-plane fine-tuning API: OpenAI's bodies on Azure's wire.

What differs from the OpenAI emulator it builds on, as the `openai` SDK's `AzureOpenAI` client and users of
other unified layers see it (LiteLLM PRs 22625, 24687):
- paths under `/openai/...`, each with a required `api-version` query parameter, and auth by the `api-key`
  header (or `Authorization: Bearer` with a Microsoft Entra token);
- a job's create must carry `trainingType` (standard, globalstandard, developer; LiteLLM sends 1): without
  it Azure answers the misleading "The specified base model does not support fine-tuning.";
- statuses: `pending` where OpenAI says validating_files or queued; `organization_id` and an empty
  `result_files` come back as null;
- a fine-tuned model is named `<base>.ft-<hex>` and answers only through a deployment:
  `/openai/deployments/{name}/chat/completions`. `deployments` maps names to models; with
  `auto_deploy=True` (as `anytune emulate azure-openai` runs) every base and fine-tuned model is deployed
  under its own name, so rehearsals need no deployment step.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any, ClassVar

from anytune.plugin import JobStatus
from anytune.testing import ApiError, Clock, nearest_answer
from anytune_openai.emulator import FINE_TUNABLE, EmulatedJob, OpenAIEmulator

TRAINING_TYPES = {
    "standard": "standard",
    "globalstandard": "globalstandard",
    "developer": "developer",
    "1": "standard",
}
AZURE_STATUS = {"validating_files": "pending", "queued": "pending"}


ARM_DEPLOYMENT = (
    "/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.CognitiveServices/accounts/{account}"
    "/deployments/{name}"
)


class AzureOpenAIEmulator(OpenAIEmulator):
    api_prefix = ("/openai", "/subscriptions")  # the data plane, and the management plane's deployments
    statuses: ClassVar[Mapping[str, JobStatus]] = {  # Azure's job statuses (its REST reference)
        "pending": JobStatus.QUEUED,
        "notRunning": JobStatus.QUEUED,
        "running": JobStatus.RUNNING,
        "paused": JobStatus.PAUSED,
        "succeeded": JobStatus.SUCCEEDED,
        "failed": JobStatus.FAILED,
        "cancelled": JobStatus.CANCELLED,
    }
    create_route: ClassVar[tuple[str, str] | None] = ("POST", "/openai/fine_tuning/jobs")
    # /_blob/ (Blob Storage) is outside: a SAS in the URL authorises it, not the api-key

    def __init__(
        self,
        *,
        api_key: str | None = None,
        clock: Clock | None = None,
        step_seconds: float = 1.0,
        auto_deploy: bool = False,
    ) -> None:
        self.deployments: dict[str, str] = {}  # deployment name -> model
        self.provisioning: dict[str, str] = {}  # created through the management API, not yet serving
        self.blobs: dict[str, bytes] = {}  # "container/name" -> content: a stand-in for Blob Storage
        self.auto_deploy = auto_deploy
        self.training_types: dict[str, str] = {}  # job id -> tier
        super().__init__(api_key=api_key, clock=clock, step_seconds=step_seconds)
        if auto_deploy:
            self.deployments.update({m: m for m in FINE_TUNABLE})

    def _routes(self) -> list[Any]:
        from starlette.routing import Route

        return [
            Route("/openai/files", self._versioned(self._files), methods=["GET", "POST"]),
            Route("/openai/files/{file_id}", self._versioned(self._file), methods=["GET", "DELETE"]),
            Route("/openai/files/{file_id}/content", self._versioned(self._file_content), methods=["GET"]),
            Route("/openai/fine_tuning/jobs", self._versioned(self._jobs), methods=["GET", "POST"]),
            Route("/openai/fine_tuning/jobs/{job_id}", self._versioned(self._job), methods=["GET"]),
            Route(
                "/openai/fine_tuning/jobs/{job_id}/{action:str}",
                self._versioned(self._job_action),
                methods=["POST"],
            ),
            Route("/openai/fine_tuning/jobs/{job_id}/events", self._versioned(self._events), methods=["GET"]),
            Route(
                "/openai/fine_tuning/jobs/{job_id}/checkpoints",
                self._versioned(self._checkpoints),
                methods=["GET"],
            ),
            Route(
                "/openai/deployments/{deployment}/chat/completions",
                self._versioned(self._deployment_chat),
                methods=["POST"],
            ),
            Route(ARM_DEPLOYMENT, self._versioned(self._arm_deployment), methods=["PUT", "GET", "DELETE"]),
            Route("/openai/files/import", self._versioned(self._import), methods=["POST"]),
            Route("/_blob/{container}/{name}", self._blob, methods=["PUT"]),
            Route("/_emulator/state", self._state, methods=["GET"]),
        ]

    async def _arm_deployment(self, request: Any) -> Any:
        """The management plane's deployments (what `az cognitiveservices account deployment create` calls):
        created `Creating`, `Succeeded` at the next look, then serving; deleted on DELETE."""
        p = request.path_params
        name = p["name"]
        resource = ARM_DEPLOYMENT.format(sub=p["sub"], group=p["group"], account=p["account"], name=name)
        body = await request.json() if request.method == "PUT" else {}

        def view(model: str, state: str) -> dict[str, Any]:
            return {
                "id": resource,
                "name": name,
                "type": "Microsoft.CognitiveServices/accounts/deployments",
                "sku": body.get("sku") or {"name": "standard", "capacity": 1},
                "properties": {
                    "model": {"format": "OpenAI", "name": model, "version": "1"},
                    "provisioningState": state,
                },
            }

        def run() -> Any:
            if request.method == "PUT":
                model = ((body.get("properties") or {}).get("model") or {}).get("name")
                known = {j.fine_tuned_model for j in self.jobs.values()} | set(FINE_TUNABLE)
                if model not in known:
                    raise ApiError(
                        400, f"The model '{model}' is not supported.", code="InvalidResourceProperties"
                    )
                self.provisioning[name] = model
                return self._json(201, view(model, "Creating"))
            if request.method == "DELETE":
                self.deployments.pop(name, None)
                self.provisioning.pop(name, None)
                return self._json(200, {})
            if name in self.provisioning:  # provisioned by the next look
                self.deployments[name] = self.provisioning.pop(name)
            if name not in self.deployments:
                raise ApiError(404, f"The deployment {name} was not found.", code="DeploymentNotFound")
            return self._json(200, view(self.deployments[name], "Succeeded"))

        return self._handle(run)

    async def _blob(self, request: Any) -> Any:
        """Blob Storage's Put Blob, as far as anytune uses it: a block blob, authorised by a SAS in the URL."""
        if request.headers.get("x-ms-blob-type") != "BlockBlob" or "sig=" not in str(request.url.query):
            return self._json(
                403, {"error": {"code": "AuthenticationFailed", "message": "SAS or blob type missing"}}
            )
        data = await request.body()
        key = f"{request.path_params['container']}/{request.path_params['name']}"

        def store() -> Any:
            self.blobs[key] = data
            return self._json(201, {})

        return self._handle(store)

    async def _import(self, request: Any) -> Any:
        """Azure's import of a training file from Blob Storage (its route for files over the upload limit)."""

        def run(body: dict[str, Any]) -> Any:
            from urllib.parse import urlparse

            from anytune_openai.emulator import StoredFile

            url = str(body.get("content_url") or "")
            key = urlparse(url).path.removeprefix("/_blob/")
            if key not in self.blobs or "sig=" not in urlparse(url).query:
                raise ApiError(
                    400, f"The content at {url.split('?')[0]} cannot be read.", param="content_url"
                )
            filename = str(body.get("filename") or key.rsplit("/", 1)[-1])
            f = StoredFile(
                f"file-{secrets.token_hex(12)}",
                filename,
                str(body.get("purpose")),
                self.blobs[key],
                self._now(),
            )
            self.files[f.id] = f
            return self._json(200, f.obj())

        return await self._with_body(request, run)

    def _versioned(self, handler: Any) -> Any:
        async def run(request: Any) -> Any:
            if not request.query_params.get("api-version"):
                return self._json(
                    404, {"error": {"code": "404", "message": "Resource not found (api-version is missing)"}}
                )
            return await handler(request)

        return run

    def _authorized(self, headers: dict[str, str]) -> bool:
        key = headers.get("api-key", "")
        if key:
            return self.api_key is None or key == self.api_key
        return super()._authorized(headers)  # a Microsoft Entra token as a Bearer

    # --------------------------------------------------------------------------------- Azure's bodies

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> Any:  # type: ignore[override]
        return OpenAIEmulator._json(status, _azure_view(body), headers)

    def _create(self, body: dict[str, Any]) -> EmulatedJob:
        tier = TRAINING_TYPES.get(str(body.get("trainingType", "")).lower())
        if tier is None:  # what Azure answers, misleadingly, when the field is missing or unknown
            raise ApiError(400, "The specified base model does not support fine-tuning.", param="model")
        job = super()._create({k: v for k, v in body.items() if k != "trainingType"})
        self.training_types[job.id] = tier
        return job

    def _model_name(self, job: EmulatedJob) -> str:
        return f"{job.model}.ft-{job.id[-12:]}"

    def _succeed(self, job: EmulatedJob) -> None:
        super()._succeed(job)
        if self.auto_deploy and job.fine_tuned_model:
            self.deployments[job.fine_tuned_model] = job.fine_tuned_model

    def _answer(self, model: str, messages: list[dict[str, Any]]) -> str | None:
        job = next((j for j in self.jobs.values() if j.fine_tuned_model == model), None)
        if job is None:  # a base model (Azure's fine-tuned names also start with gpt-)
            return super()._answer(model, messages)
        records, _ = self._examples(job.training_file, job.method["type"])
        return nearest_answer(records or [], messages)

    async def _deployment_chat(self, request: Any) -> Any:
        deployment = request.path_params["deployment"]

        def run(body: dict[str, Any]) -> Any:
            model = self.deployments.get(deployment)
            if model is None:
                raise ApiError(
                    404,
                    f"The API deployment for this resource does not exist: {deployment}",
                    code="DeploymentNotFound",
                )
            return self._complete({**body, "model": model})

        return await self._with_body(request, run)


def _azure_view(body: Any) -> Any:
    """OpenAI's job objects as Azure returns them (pending, nulls)."""
    if isinstance(body, dict) and body.get("object") == "fine_tuning.job":
        return {
            **body,
            "status": AZURE_STATUS.get(body.get("status", ""), body.get("status")),
            "organization_id": None,
            "result_files": body.get("result_files") or None,
        }
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        return {**body, "data": [_azure_view(item) for item in body["data"]]}
    return body
