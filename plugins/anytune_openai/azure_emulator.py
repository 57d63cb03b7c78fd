"""An emulator of Azure OpenAI's data-plane fine-tuning API: OpenAI's bodies on Azure's wire.

What differs from the OpenAI emulator it builds on, as the `openai` SDK's `AzureOpenAI` client and users of
other unified layers see it (LiteLLM PRs 22625, 24687):
- paths under `/openai/...`, each with a required `api-version` query parameter, and auth by the `api-key`
  header (or `Authorization: Bearer` with a Microsoft Entra token);
- a job's create must carry `trainingType` (standard, globalstandard, developer; LiteLLM sends 1): without
  it Azure answers the misleading "The specified base model does not support fine-tuning.";
- statuses: `pending` where OpenAI says validating_files or queued;
- creates (`POST /openai/files`, `/openai/files/import`, `/openai/fine_tuning/jobs`) answer 201 with a
  `Location` header, and errors carry the Microsoft REST guidelines' `error.code` (the authoring API's
  `ErrorCode`: invalidPayload, notFound, unauthorized, quotaExceeded, ...) instead of OpenAI's `type` and
  `param`; fields a job does not have yet are left out, not sent as null (Microsoft's examples);
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
# The authoring API's ErrorCode (azure-openai-openapi.yaml), and the one each HTTP status gets by default
ERROR_CODES = frozenset(
    {
        "conflict", "invalidPayload", "forbidden", "notFound", "unexpectedEntityState",
        "itemDoesAlreadyExist", "serviceUnavailable", "internalFailure", "quotaExceeded",
        "jsonlValidationFailed", "fileImportFailed", "tooManyRequests", "unauthorized", "contentFilter",
    }
)  # fmt: skip
CODE_OF_STATUS = {
    400: "invalidPayload",
    401: "unauthorized",
    403: "forbidden",
    404: "notFound",
    409: "conflict",
    429: "tooManyRequests",
    503: "serviceUnavailable",
}


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

    def _check_reinforcement(self, grader: Any, validation: str | None) -> None:
        """Azure's RFT rules on top of OpenAI's grader checks: a validation file is required."""
        if validation is None:
            raise ApiError(
                400,
                "Reinforcement fine-tuning requires both a training file and a validation file.",
                param="validation_file",
            )
        super()._check_reinforcement(grader, validation)

    def _routes(self) -> list[Any]:
        from starlette.routing import Route

        return [
            Route("/openai/files", self._versioned(self._created(self._files)), methods=["GET", "POST"]),
            Route("/openai/files/{file_id}", self._versioned(self._file), methods=["GET", "DELETE"]),
            Route("/openai/files/{file_id}/content", self._versioned(self._file_content), methods=["GET"]),
            Route(
                "/openai/fine_tuning/jobs",
                self._versioned(self._created(self._jobs)),
                methods=["GET", "POST"],
            ),
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
            Route("/openai/files/import", self._versioned(self._created(self._import)), methods=["POST"]),
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

    @staticmethod
    def _created(handler: Any) -> Any:
        """A create answers 201 with the new item's address in `Location` (OpenAI answers 200)."""

        async def run(request: Any) -> Any:
            import json

            response = await handler(request)
            if request.method != "POST" or response.status_code != 200:
                return response
            item = json.loads(response.body)
            collection = (
                "/openai/fine_tuning/jobs" if item.get("object") == "fine_tuning.job" else "/openai/files"
            )
            version = request.query_params.get("api-version")
            response.status_code = 201
            response.headers["location"] = (
                f"{request.base_url}{collection[1:]}/{item['id']}?api-version={version}"
            )
            return response

        return run

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
        if status >= 400 and isinstance(body, dict) and isinstance(body.get("error"), dict):
            error = body["error"]
            body = self._error_body(status, str(error.get("message")), error.get("code"), error.get("param"))
        return OpenAIEmulator._json(status, _azure_view(body), headers)

    def _error_body(self, status: int, message: str, code: str | None, target: str | None = None) -> Any:
        """Azure's error shape: `code` from its enumeration (a code of another Azure API, PascalCase, such
        as the deployments' DeploymentNotFound, is kept; OpenAI's own codes are not Azure's)."""
        if not (code and (code in ERROR_CODES or code[:1].isupper() or code.isdigit())):
            code = CODE_OF_STATUS.get(status, "internalFailure" if status >= 500 else "invalidPayload")
        error: dict[str, Any] = {"code": code, "message": message}
        if target:
            error["target"] = target
        return {"error": error}

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
    """OpenAI's job objects as Azure returns them: `pending`, and no field it has no value for (Microsoft's
    examples leave them out; its schema has no nullable field)."""
    if isinstance(body, dict) and body.get("object") == "fine_tuning.job":
        job = {k: v for k, v in body.items() if v is not None and v != [] and k != "organization_id"}
        return {**job, "status": AZURE_STATUS.get(body.get("status", ""), body.get("status"))}
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        return {**body, "data": [_azure_view(item) for item in body["data"]]}
    return body
