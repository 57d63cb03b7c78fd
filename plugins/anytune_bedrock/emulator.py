"""Amazon Bedrock for tests and rehearsals (`anytune emulate bedrock`): moto's own server for S3, IAM and
Bedrock's control plane, behind a thin front on 127.0.0.1 that adds what moto lacks.

moto (`moto[server]`, a real HTTP server, not in-process patching) keeps every customization job InProgress
forever, writes no metrics, takes a repeated client request token for a new job, stops jobs that already
ended, and has no Converse for custom models. The front forwards every request to moto and adds exactly:

- a job's end: after `train_seconds` on the emulator's clock (moved by each poll of the job, or by
  `complete(name)` / `fail(name, message)` / POST /_emulator/jobs/{name}), moto's job is set Completed or
  Failed, with training and validation metrics, and the step-wise metrics CSV written where Bedrock writes it
  (`<output>/model-customization-job-<id>/training_artifacts/step_wise_training_metrics.csv`);
- idempotent creates: the same job name with the same clientRequestToken answers the existing job's ARN
  (moto answers "already exists"); a different token is refused as Bedrock does;
- stop only for a job in progress (then Stopped);
- the training data must exist in S3 before a job is created (ValidationException otherwise);
- bedrock-runtime Converse (`/model/{modelId}/converse`): a base model answers with a fixed sentence, a
  completed custom model with its nearest training answer.

Every such gap is listed in docs/providers/bedrock.md."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, ClassVar

from anytune.plugin import JobStatus
from anytune.testing import (
    ApiError,
    Clock,
    EmulatorBase,
    base_answer,
    free_port,
    nearest_answer,
    practice_answers,
)

ACCOUNT = "123456789012"
ACCESS_KEY = "AKIAANYTUNEEMULATOR0"
BUCKET = "anytune-emulated"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/anytune-bedrock"


class AwsError(ApiError):
    """An error in AWS's rest-json shape (botocore reads the code from the header and the body)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, message)
        self.code = code
        self.body = {"__type": code, "message": message}


class BedrockEmulator(EmulatorBase):
    statuses: ClassVar[Mapping[str, JobStatus]] = {  # CreateModelCustomizationJob's status values
        "InProgress": JobStatus.RUNNING,
        "Stopping": JobStatus.RUNNING,
        "Completed": JobStatus.SUCCEEDED,
        "Failed": JobStatus.FAILED,
        "Stopped": JobStatus.CANCELLED,
    }
    create_route: ClassVar[tuple[str, str] | None] = ("POST", r"/model-customization-jobs")
    methods: ClassVar[frozenset[str] | None] = frozenset(
        {"sft", "cpt", "rft"}
    )  # FINE_TUNING, CONTINUED_PRE_TRAINING, REINFORCEMENT_FINE_TUNING

    def __init__(
        self,
        *,
        api_key: str | None = None,
        clock: Clock | None = None,
        step_seconds: float = 1.0,
        train_seconds: float = 30.0,
    ) -> None:
        import logging

        from moto.server import ThreadedMotoServer
        from starlette.routing import Route

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request

        self.step_seconds, self.train_seconds = step_seconds, train_seconds
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self.moto_url = f"http://{host}:{port}"
        self.created: dict[str, float] = {}  # job name -> emulator time of its create
        self.rft: dict[str, dict[str, Any]] = {}  # job name -> its rftConfig (moto keeps none)
        methods = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"]
        routes = [
            Route("/model/{model_id:path}/converse", self._converse, methods=["POST"]),
            Route("/model-customization-jobs", self._create, methods=["POST"]),
            Route("/model-customization-jobs/{name}/stop", self._stop, methods=["POST"]),
            Route("/model-customization-jobs/{name}", self._get_job, methods=["GET"]),
            Route("/_emulator/jobs/{name}", self._control, methods=["POST"]),
            Route("/{path:path}", self._forward, methods=methods),
        ]
        super().__init__(api_key=api_key, clock=clock, routes=routes, api_prefix="/")
        self._reset()

    # ---------------------------------------------------------------------------------- moto's state

    def _reset(self) -> None:
        import httpx

        httpx.post(f"{self.moto_url}/moto-api/reset", timeout=30)
        s3, iam = self._aws("s3"), self._aws("iam")
        for region in ("us-east-1", "us-west-2"):
            name = BUCKET if region == "us-east-1" else f"{BUCKET}-{region}"
            args: dict[str, Any] = {"Bucket": name}
            if region != "us-east-1":
                args["CreateBucketConfiguration"] = {"LocationConstraint": region}
            s3.create_bucket(**args)
        trust = {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "bedrock.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ]
        }
        iam.create_role(RoleName="anytune-bedrock", AssumeRolePolicyDocument=json.dumps(trust))

    def _aws(self, service: str, region: str = "us-east-1") -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.moto_url,
            region_name=region,
            aws_access_key_id="emulator",
            aws_secret_access_key="emulator",
        )

    def _jobs(self) -> dict[str, Any]:
        from moto.backends import get_backend

        account = get_backend("bedrock")[ACCOUNT]
        return {
            name: job
            for region in list(account.keys())
            for name, job in account[region].model_customization_jobs.items()
        }

    def job_ids(self) -> list[str]:
        with self._lock:
            return list(self._jobs())

    def hold(self, job_id: str, status: str) -> None:
        with self._lock:
            self._jobs()[job_id].status = status
            self.held.add(job_id)

    def _authorized(self, headers: dict[str, str]) -> bool:
        """AWS's signature with the emulator's access key (the signature itself is not checked), or the
        emulator's key as a Bearer token (the control route, from a script)."""
        auth = headers.get("authorization", "")
        signed = auth.startswith("AWS4-HMAC-SHA256") and f"Credential={ACCESS_KEY}/" in auth
        return signed or super()._authorized(headers)

    # -------------------------------------------------------------------------------- job lifecycle

    def complete(self, name: str) -> None:
        """End a job as Bedrock does: Completed, with its metrics in the job and in S3."""
        with self._lock:
            job = self._jobs()[name]
            if job.status != "InProgress":
                return
            records = self._records(job.training_data_config["s3Uri"])
            rft = self.rft.get(name)
            hyper = (rft or {}).get("hyperParameters") or job.hyper_parameters or {}
            epochs = int(hyper.get("epochCount", 2))
            steps = max(1, math.ceil(len(records) / int(hyper.get("batchSize", 8)))) * epochs
            rows = ["step_number,epoch_number,training_loss,perplexity" + (",reward" if rft else "")]
            loss = 0.0
            for step in range(1, steps + 1):
                loss = round(2.4 * math.exp(-3.0 * step / steps) + 0.05, 4)
                row = f"{step},{(step - 1) * epochs // steps},{loss},{round(math.exp(loss), 4)}"
                if rft:  # the job's Lambda scores the emulated policy's answers
                    row += f",{self._reward(rft, records, job.base_model_arn, step, steps)}"
                rows.append(row)
            bucket, _, prefix = job.output_data_config["s3Uri"].removeprefix("s3://").partition("/")
            folder = "/".join(p for p in (prefix.strip("/"), f"model-customization-job-{job.job_name}") if p)
            self._aws("s3").put_object(
                Bucket=bucket,
                Key=f"{folder}/training_artifacts/step_wise_training_metrics.csv",
                Body="\n".join(rows) + "\n",
            )
            job.training_metrics = {"trainingLoss": loss}
            job.validation_metrics = [{"validationLoss": round(loss * 1.1, 4)}]
            job.status = "Completed"

    def _reward(
        self, rft: dict[str, Any], records: list[dict[str, Any]], base: str, step: int, steps: int
    ) -> float:
        """The grader Lambda's mean reward for the emulated policy's answers at `step`: its code, as moto
        stores it, run with Bedrock's event (moto runs no Lambda without Docker; this runs the handler)."""
        handler = self._lambda_handler(rft["graderConfig"]["lambdaGrader"]["lambdaArn"])
        references = [_reference_text(r.get("reference_answer")) for r in records]
        answers = practice_answers(references, step, steps, base_answer(str(base).rsplit("/", 1)[-1]))
        event = [
            {
                "id": str(i),
                "messages": [*r["messages"], {"role": "assistant", "content": a}],
                "reference_answer": r.get("reference_answer"),
            }
            for i, (r, a) in enumerate(zip(records, answers, strict=True))
        ]
        scores = [float(out["aggregate_reward_score"]) for out in handler(event, None)]
        return round(sum(scores) / max(1, len(scores)), 4)

    def _lambda_function(self, arn: str) -> Any:
        from moto.backends import get_backend

        region = arn.split(":")[3] if arn.startswith("arn:") else "us-east-1"
        try:
            return get_backend("lambda")[ACCOUNT][region].get_function(arn)
        except Exception:
            return None

    def _lambda_handler(self, arn: str) -> Any:
        import io
        import zipfile

        function = self._lambda_function(arn)
        module, _, entry = function.handler.rpartition(".")
        with zipfile.ZipFile(io.BytesIO(function.code_bytes)) as archive:
            source = archive.read(f"{module}.py").decode("utf-8")
        namespace: dict[str, Any] = {"__name__": module}
        exec(compile(source, f"{module}.py", "exec"), namespace)
        return namespace[entry]

    def fail(self, name: str, message: str) -> None:
        with self._lock:
            job = self._jobs()[name]
            job.status, job.failure_message = "Failed", message

    def _records(self, uri: str) -> list[dict[str, Any]]:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        body = self._aws("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def _advance(self, name: str) -> None:
        jobs = self._jobs()
        job = jobs.get(name)
        if job is None or name in self.held or job.status != "InProgress":
            return
        started = self.created.setdefault(name, self.clock.now())
        if self.clock.now() - started >= self.train_seconds:
            self.complete(name)

    # --------------------------------------------------------------------------------------- routes

    async def _forward(self, request: Any) -> Any:
        """The request as it came (signature included), to moto, and moto's answer back."""
        import httpx
        from starlette.responses import Response

        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        url = f"{self.moto_url}{request.url.path}" + (f"?{request.url.query}" if request.url.query else "")
        async with httpx.AsyncClient(timeout=60) as http:
            answer = await http.request(request.method, url, content=body, headers=headers)
        keep = {
            k: v
            for k, v in answer.headers.items()
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding")
        }
        return Response(answer.content, status_code=answer.status_code, headers=keep)

    def _aws_error(self, exc: AwsError) -> Any:
        return self._json(exc.status, exc.body, headers={"x-amzn-ErrorType": exc.code})

    async def _create(self, request: Any) -> Any:
        body = json.loads(await request.body() or b"{}")
        name, token = body.get("jobName"), body.get("clientRequestToken")
        try:
            with self._lock:
                existing = self._jobs().get(name)
                if existing is not None:
                    if token and existing.client_request_token == token:  # Bedrock's idempotent create
                        return self._json(201, {"jobArn": existing.job_arn})
                    raise AwsError(
                        409, "ResourceInUseException", f"Model customization job {name} already exists"
                    )
                uri = (body.get("trainingDataConfig") or {}).get("s3Uri", "")
                try:
                    self._records(uri)
                except Exception:
                    raise AwsError(
                        400, "ValidationException", f"Training data at {uri} cannot be read"
                    ) from None
                rft = self._check_rft(body)
        except AwsError as exc:
            return self._aws_error(exc)
        answer = await self._forward(request)
        if answer.status_code < 300:
            self.created[name] = self.clock.now()
            if rft is not None:
                self.rft[name] = rft
        return answer

    def _check_rft(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """An RFT job's rftConfig as Bedrock checks it: a Lambda grader that exists, hyperparameters in range."""
        if body.get("customizationType") != "REINFORCEMENT_FINE_TUNING":
            return None
        rft = (body.get("customizationConfig") or {}).get("rftConfig")
        arn = ((rft or {}).get("graderConfig") or {}).get("lambdaGrader", {}).get("lambdaArn")
        if not arn:
            raise AwsError(
                400, "ValidationException", "rftConfig.graderConfig.lambdaGrader.lambdaArn is required"
            )
        if self._lambda_function(arn) is None:
            raise AwsError(400, "ValidationException", f"The Lambda function {arn} does not exist")
        hyper = rft.get("hyperParameters") or {}
        for key, low, high in (
            ("epochCount", 1, 50),
            ("batchSize", 16, 512),
            ("trainingSamplePerPrompt", 2, 16),
        ):
            if key in hyper and not low <= int(hyper[key]) <= high:
                raise AwsError(400, "ValidationException", f"{key} must be between {low} and {high}")
        return dict(rft)

    async def _get_job(self, request: Any) -> Any:
        with self._lock:
            self.clock.on_poll()
            self._advance(request.path_params["name"])
        return await self._forward(request)

    async def _stop(self, request: Any) -> Any:
        name = request.path_params["name"]
        with self._lock:
            job = self._jobs().get(name)
            if job is not None and job.status not in ("InProgress", "Stopping"):
                return self._aws_error(
                    AwsError(400, "ValidationException", f"Job {name} is {job.status} and cannot be stopped")
                )
        return await self._forward(request)

    async def _control(self, request: Any) -> Any:
        body = json.loads(await request.body() or b"{}")
        name = request.path_params["name"]
        if name not in self._jobs():
            return self._json(404, {"message": f"no job {name}"})
        if body.get("status") == "Failed":
            self.fail(name, str(body.get("failureMessage") or "Failed"))
        else:
            self.complete(name)
        return self._json(200, {"status": self._jobs()[name].status})

    async def _converse(self, request: Any) -> Any:
        model_id = request.path_params["model_id"]
        body = json.loads(await request.body() or b"{}")
        messages = [
            {"role": m.get("role"), "content": "".join(c.get("text", "") for c in m.get("content", []))}
            for m in body.get("messages", [])
        ]
        with self._lock:
            job = next((j for j in self._jobs().values() if j.output_model_arn == model_id), None)
            if job is not None and job.status != "Completed":
                return self._aws_error(AwsError(400, "ValidationException", f"{model_id} is not ready"))
            if job is None and not model_id.startswith(("amazon.", "meta.", "anthropic.")):
                return self._aws_error(
                    AwsError(404, "ResourceNotFoundException", f"model {model_id} not found")
                )
            records = [_plain(r) for r in self._records(job.training_data_config["s3Uri"])] if job else []
        answer = nearest_answer(records, messages) if job else base_answer(model_id)
        limit = int((body.get("inferenceConfig") or {}).get("maxTokens") or 512)
        answer = " ".join(answer.split(" ")[:limit])
        return self._json(
            200,
            {
                "output": {"message": {"role": "assistant", "content": [{"text": answer}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": 1, "outputTokens": len(answer.split()), "totalTokens": 1},
                "metrics": {"latencyMs": 1},
            },
        )


def _text(content: Any) -> str:
    return content if isinstance(content, str) else "".join(c.get("text", "") for c in content or [])


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    """A training record as `nearest_answer` reads it (messages with text content, or prompt/completion; an
    RFT line keeps its reference answer)."""
    if "messages" in record:
        plain: dict[str, Any] = {
            "messages": [{"role": m["role"], "content": _text(m.get("content"))} for m in record["messages"]]
        }
        if "reference_answer" in record:
            plain["reference_answer"] = record["reference_answer"]
        return plain
    return record


def _reference_text(reference: Any) -> str:
    return str(reference.get("reference", "")) if isinstance(reference, dict) else str(reference or "")
