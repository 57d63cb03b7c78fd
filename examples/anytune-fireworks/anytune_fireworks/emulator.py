"""An emulator of the parts of Fireworks AI's REST API the backend uses, on 127.0.0.1 (`anytune emulate
fireworks`), written from Fireworks' public API reference (docs.fireworks.ai/api-reference, and the shapes
of its generated Python SDK):

- datasets: create (`datasetId`, `dataset.userUploaded`, `format` kept and echoed), `:upload` (multipart,
  one JSONL file, each line checked: roles, a system message only first, an assistant answer; DPO's
  preference layout; answers the uploaded file's object, FileUploadResponse), get, delete; states
  UPLOADING -> READY;
- a job's create refuses a field the v5.10 job schema does not have (`region`) as the gateway does, and
  `gradientAccumulationSteps` (Training V2 refuses it when set);
- supervised fine-tuning jobs and DPO jobs: create with a caller-chosen id (`?supervisedFineTuningJobId=`,
  `?dpoJobId=`; the same id again is 409 ALREADY_EXISTS), get, list (pageSize, pageToken), delete,
  `:cancel`; states CREATING -> VALIDATING -> PENDING -> RUNNING -> WRITING_RESULTS -> COMPLETED (or
  FAILED, CANCELLING -> CANCELLED); `jobProgress.percent`; a metrics file at `metricsFileSignedUrl`
  (JSON lines of step, epoch, train_loss: the file's layout is this emulator's, Fireworks does not document it);
- OpenAI-compatible chat completions at /inference/v1 for base models and finished fine-tunes (a fine-tune
  answers with its nearest training answer, a base model with a fixed sentence).

Errors come in the gRPC gateway's shape, `{"code": 6, "message": "..."}`, with the HTTP status Fireworks uses.
"""

from __future__ import annotations

import itertools
import json
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from anytune.plugin import JobStatus
from anytune.testing import ApiError, Clock, EmulatorBase, base_answer, nearest_answer
from anytune_fireworks.emulator_errors import FireworksError
from anytune_fireworks.emulator_rft import Evaluator, check_rft_job, create_evaluator, reward_point, rows_for

# gatewaySupervisedFineTuningJob's fields (Gateway REST API v5.10; DPO's trainingConfig takes the training
# ones). `region` is gone from it; gradientAccumulationSteps, batchSize and earlyStop are deprecated.
SFT_FIELDS = frozenset(
    {
        "name", "displayName", "createTime", "completedTime", "dataset", "awsS3Config",
        "azureBlobStorageConfig", "state", "status", "createdBy", "outputModel", "baseModel", "warmStartFrom",
        "jinjaTemplate", "earlyStop", "epochs", "learningRate", "maxContextLength", "loraRank", "wandbConfig",
        "evaluationDataset", "isTurbo", "evalAutoCarveout", "updateTime", "nodes", "batchSize", "mtpEnabled",
        "mtpNumDraftTokens", "mtpFreezeBaseModel", "jobProgress", "metricsFileSignedUrl",
        "trainerLogsSignedUrl", "renderSamplesSignedUrl", "gradientAccumulationSteps",
        "learningRateWarmupSteps", "lrScheduler", "batchSizeSamples", "estimatedCost",
        "optimizerWeightDecay", "purpose", "encryptionState",
    }
)  # fmt: skip
DATASET_FORMATS = frozenset({"FORMAT_UNSPECIFIED", "CHAT", "COMPLETION", "RL"})
TUNABLE = {
    "accounts/fireworks/models/llama-v3p1-8b-instruct",
    "accounts/fireworks/models/llama-v3p1-70b-instruct",
    "accounts/fireworks/models/llama-v3p2-3b-instruct",
    "accounts/fireworks/models/qwen2p5-7b-instruct",
    "accounts/fireworks/models/qwen3-8b",
}
PHASES = (("JOB_STATE_CREATING", 1.0), ("JOB_STATE_VALIDATING", 2.0), ("JOB_STATE_PENDING", 2.0))
WRITING_S = 2.0
COLLECTIONS = {"supervisedFineTuningJobs": "sft", "dpoJobs": "dpo", "reinforcementFineTuningJobs": "rft"}
COLLECTION_OF = {kind: collection for collection, kind in COLLECTIONS.items()}
ID_PARAMS = {"sft": "supervisedFineTuningJobId", "dpo": "dpoJobId", "rft": "reinforcementFineTuningJobId"}
TERMINAL = ("JOB_STATE_COMPLETED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EARLY_STOPPED")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Dataset:
    name: str
    created: float
    display_name: str = ""
    state: str = "UPLOADING"
    records: list[dict[str, Any]] = field(default_factory=list)
    format: str = "FORMAT_UNSPECIFIED"
    uploaded: tuple[str, int, float] | None = None  # (filename, bytes, when) of the file sent to :upload

    def obj(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "displayName": self.display_name,
            "createTime": _iso(self.created),
            "state": self.state,
            "exampleCount": str(len(self.records)),
            "userUploaded": {},
            "format": self.format,
            "status": {"code": "OK", "message": ""},
        }

    def upload_obj(self) -> dict[str, Any]:
        """The documented answer of `:upload` (FileUploadResponse): the uploaded file."""
        filename, size, when = self.uploaded or ("", 0, self.created)
        return {
            "id": self.name.rsplit("/", 1)[-1],
            "object": "file",
            "bytes": size,
            "created_at": int(when),
            "filename": filename,
            "purpose": "fine-tune",
        }


@dataclass
class Job:
    name: str
    kind: str  # sft | dpo | rft
    body: dict[str, Any]
    dataset: Dataset
    created: float
    state: str = "JOB_STATE_CREATING"
    elapsed: float = 0.0
    last_tick: float = 0.0
    step: int = 0
    total_steps: int = 1
    losses: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    cancel_at: float | None = None
    completed: float | None = None

    @property
    def config(self) -> dict[str, Any]:
        return self.body.get("trainingConfig", {}) if self.kind in ("dpo", "rft") else self.body

    def obj(self, base_url: str) -> dict[str, Any]:
        config = {k: v for k, v in self.config.items()}
        out: dict[str, Any] = {
            "name": self.name,
            "displayName": self.body.get("displayName", ""),
            "dataset": self.dataset.name,
            "createTime": _iso(self.created),
            "state": self.state,
            "status": {
                "code": "OK" if self.state != "JOB_STATE_FAILED" else "INVALID_ARGUMENT",
                "message": self.message,
            },
            "jobProgress": {
                "percent": int(100 * self.step / self.total_steps),
                "epoch": max(0, self.step - 1) * int(config.get("epochs", 1)) // self.total_steps,
                "inputTokens": self._tokens() if self.state in TERMINAL else 0,
            },
        }
        if self.completed is not None:
            out["completedTime"] = _iso(self.completed)
        if self.losses:
            out["metricsFileSignedUrl"] = (
                f"{base_url}/_signed/metrics/{self.name.rsplit('/', 1)[-1]}.jsonl?sig=x"
            )
        if self.kind in ("dpo", "rft"):
            out["trainingConfig"] = config
            out["lossConfig"] = self.body.get("lossConfig", {})
            for key in ("evaluator", "inferenceParameters", "evaluationDataset"):
                if key in self.body:
                    out[key] = self.body[key]
        else:
            out.update(config)
        return out

    def _tokens(self) -> int:
        words = sum(len(json.dumps(r).split()) for r in self.dataset.records)
        return int(words * 1.3) * int(self.config.get("epochs", 1))


class FireworksEmulator(EmulatorBase):
    # every state Fireworks' fine-tuning jobs show (the JobState enum of its API), and what each means
    statuses: ClassVar[Mapping[str, JobStatus]] = {
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
        "JOB_STATE_EARLY_STOPPED": JobStatus.SUCCEEDED,
        "JOB_STATE_FAILED": JobStatus.FAILED,
        "JOB_STATE_EXPIRED": JobStatus.FAILED,
        "JOB_STATE_CANCELLED": JobStatus.CANCELLED,
        "JOB_STATE_DELETING": JobStatus.CANCELLED,
        "JOB_STATE_DELETING_CLEANING_UP": JobStatus.CANCELLED,
    }
    create_route: ClassVar[tuple[str, str] | None] = ("POST", r"/v1/accounts/[^/]+/supervisedFineTuningJobs")
    methods: ClassVar[frozenset[str] | None] = frozenset({"sft", "dpo", "rft"})
    adapters: ClassVar[frozenset[str] | None] = frozenset({"lora"})

    def __init__(
        self, *, api_key: str | None = None, clock: Clock | None = None, step_seconds: float = 1.0
    ) -> None:
        from starlette.routing import Route

        self.step_seconds = step_seconds
        self.datasets: dict[str, Dataset] = {}
        self.jobs: dict[str, Job] = {}
        self.evaluators: dict[str, Evaluator] = {}
        self.base_url = ""
        self._ids = itertools.count(1)
        a = "/v1/accounts/{account}"
        routes = [
            Route(a + "/datasets", self._datasets, methods=["GET", "POST"]),
            Route(a + "/datasets/{dataset}:upload", self._upload, methods=["POST"]),
            Route(a + "/datasets/{dataset}", self._dataset, methods=["GET", "DELETE"]),
            Route("/_signed/metrics/{job}.jsonl", self._metrics_file, methods=["GET"]),
            Route(a + "/evaluatorsV2", self._evaluators, methods=["POST"]),
            Route(a + "/evaluators/{evaluator}", self._evaluator, methods=["GET"]),
            Route("/inference/v1/chat/completions", self._chat, methods=["POST"]),
        ]
        for collection, kind in COLLECTIONS.items():
            routes += [
                Route(f"{a}/{collection}", self._jobs_route(kind), methods=["GET", "POST"]),
                Route(f"{a}/{collection}/{{job}}:cancel", self._cancel_route(kind), methods=["POST"]),
                Route(f"{a}/{collection}/{{job}}", self._job_route(kind), methods=["GET", "DELETE"]),
            ]
        super().__init__(api_key=api_key, clock=clock, routes=routes, api_prefix=("/v1", "/inference"))

    # ------------------------------------------------------------------------------ conformance hooks

    def job_ids(self) -> list[str]:
        with self._lock:
            return [j.name.rsplit("/", 1)[-1] for j in self.jobs.values()]

    def hold(self, job_id: str, status: str) -> None:
        with self._lock:
            job = next(j for j in self.jobs.values() if j.name.endswith("/" + job_id))
            job.state = status
            self.held.add(job.name)

    # --------------------------------------------------------------------------------------- datasets

    def _found(self, table: Mapping[str, Any], name: str, what: str) -> Any:
        if name not in table:
            raise FireworksError(404, f"{what} {name} not found")
        return table[name]

    async def _datasets(self, request: Any) -> Any:
        account = request.path_params["account"]
        if request.method == "GET":
            return self._handle(
                lambda: self._json(200, {"datasets": [d.obj() for d in self.datasets.values()]})
            )

        def create(body: dict[str, Any]) -> Any:
            dataset_id = str(body.get("datasetId") or "")
            if not dataset_id or not isinstance(body.get("dataset"), dict):
                raise FireworksError(400, "datasetId and dataset are required")
            name = f"accounts/{account}/datasets/{dataset_id}"
            if name in self.datasets:
                raise FireworksError(409, f"dataset {name} already exists")
            fmt = str(body["dataset"].get("format") or "FORMAT_UNSPECIFIED")
            if fmt not in DATASET_FORMATS:
                raise FireworksError(400, f'invalid value for enum field format: "{fmt}"')
            dataset = Dataset(name, self.clock.now(), str(body["dataset"].get("displayName", "")), format=fmt)
            self.datasets[name] = dataset
            return self._json(200, dataset.obj())

        return await self._with_body(request, create)

    async def _upload(self, request: Any) -> Any:
        name = f"accounts/{request.path_params['account']}/datasets/{request.path_params['dataset']}"
        form = await request.form()
        upload = form.get("file")
        content = await upload.read() if upload is not None and hasattr(upload, "read") else b""
        filename = str(getattr(upload, "filename", "") or "")

        def run() -> Any:
            dataset = self._found(self.datasets, name, "dataset")
            if not content:
                raise FireworksError(400, "no file in the upload")
            records = []
            for number, line in enumerate(content.decode("utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    raise FireworksError(400, f"line {number}: not valid JSON") from None
                problem = _check(record)
                if problem:
                    raise FireworksError(400, f"line {number}: {problem}")
                records.append(record)
            if len(records) < 3:
                raise FireworksError(400, f"a dataset needs at least 3 examples, got {len(records)}")
            dataset.records, dataset.state = records, "READY"
            dataset.uploaded = (filename, len(content), self.clock.now())
            return self._json(200, dataset.upload_obj())

        return self._handle(run)

    async def _dataset(self, request: Any) -> Any:
        name = f"accounts/{request.path_params['account']}/datasets/{request.path_params['dataset']}"

        def run() -> Any:
            dataset = self._found(self.datasets, name, "dataset")
            if request.method == "DELETE":
                del self.datasets[name]
                return self._json(200, {})
            return self._json(200, dataset.obj())

        return self._handle(run)

    # ------------------------------------------------------------------------------------------- jobs

    def _jobs_route(self, kind: str) -> Any:
        collection, id_param = COLLECTION_OF[kind], ID_PARAMS[kind]

        async def route(request: Any) -> Any:
            self._seen(request)
            account = request.path_params["account"]
            prefix = f"accounts/{account}/{collection}/"
            if request.method == "GET":

                def listing() -> Any:
                    jobs = sorted(
                        (j for j in self.jobs.values() if j.name.startswith(prefix)), key=lambda j: j.name
                    )
                    size = max(1, min(200, int(request.query_params.get("pageSize") or 50)))
                    start = int(request.query_params.get("pageToken") or 0)
                    for job in jobs:
                        self._advance(job)
                    page = jobs[start : start + size]
                    body: dict[str, Any] = {
                        collection: [j.obj(self.base_url) for j in page],
                        "totalSize": len(jobs),
                    }
                    if start + size < len(jobs):
                        body["nextPageToken"] = str(start + size)
                    return self._json(200, body)

                return self._handle(listing)

            def create(body: dict[str, Any]) -> Any:
                job_id = request.query_params.get(id_param) or f"job-{next(self._ids)}-{secrets.token_hex(3)}"
                name = prefix + job_id
                if name in self.jobs:
                    raise FireworksError(409, f"{collection[:-1]} {name} already exists")
                config = body.get("trainingConfig", {}) if kind in ("dpo", "rft") else body
                if kind == "rft":
                    check_rft_job(body, self.evaluators)
                for key in config:  # the gateway refuses a field its schema does not have
                    if key not in SFT_FIELDS:
                        raise FireworksError(400, f'proto: (line 1:2): unknown field "{key}"')
                if config.get("gradientAccumulationSteps"):
                    raise FireworksError(
                        400,
                        "gradientAccumulationSteps is not supported by Training V2: batches are set by "
                        "batchSizeSamples",
                    )
                base = config.get("baseModel") or config.get("warmStartFrom")
                if base not in TUNABLE:
                    raise FireworksError(
                        400, f"model {base} is not tunable (Tunable: false) or does not exist"
                    )
                rank = int(config.get("loraRank", 8))
                if rank < 4 or rank > 32 or rank & (rank - 1):
                    raise FireworksError(400, f"loraRank {rank}: supported ranks are 4, 8, 16 and 32")
                dataset = self._found(self.datasets, str(body.get("dataset")), "dataset")
                if dataset.state != "READY":
                    raise FireworksError(400, f"dataset {dataset.name} is {dataset.state}, not READY")
                if kind in ("sft", "rft") and "outputModel" not in config:
                    config["outputModel"] = f"accounts/{account}/models/{job_id}"
                now = self.clock.now()
                job = Job(name, kind, body, dataset, now, last_tick=now)
                batch = int(config.get("batchSizeSamples") or config.get("batchSize") or 8)
                job.total_steps = max(1, math.ceil(len(dataset.records) / batch)) * int(
                    config.get("epochs", 1)
                )
                self.jobs[name] = job
                return self._json(200, job.obj(self.base_url))

            return await self._with_body(request, create)

        return route

    def _job_route(self, kind: str) -> Any:
        collection = COLLECTION_OF[kind]

        async def route(request: Any) -> Any:
            self._seen(request)
            p = request.path_params
            name = f"accounts/{p['account']}/{collection}/{p['job']}"

            def run() -> Any:
                job = self._found(self.jobs, name, collection[:-1])
                if request.method == "DELETE":
                    del self.jobs[name]
                    return self._json(200, {})
                self.clock.on_poll()
                self._advance(job)
                return self._json(200, job.obj(self.base_url))

            return self._handle(run)

        return route

    def _cancel_route(self, kind: str) -> Any:
        collection = COLLECTION_OF[kind]

        async def route(request: Any) -> Any:
            p = request.path_params
            name = f"accounts/{p['account']}/{collection}/{p['job']}"

            def run() -> Any:
                job = self._found(self.jobs, name, collection[:-1])
                self._advance(job)
                if job.state in TERMINAL:
                    raise FireworksError(400, f"job {name} is {job.state} and cannot be cancelled")
                if job.state != "JOB_STATE_CANCELLING":
                    job.state, job.cancel_at = "JOB_STATE_CANCELLING", job.elapsed
                return self._json(200, {})

            return self._handle(run)

        return route

    def _advance(self, job: Job) -> None:
        """Bring a job up to the clock: phases, training steps with their losses, the result."""
        now = self.clock.now()
        if job.state in TERMINAL or job.name in self.held:
            return
        job.elapsed += max(0.0, now - job.last_tick)
        job.last_tick = now
        if job.state == "JOB_STATE_CANCELLING":
            if job.cancel_at is not None and job.elapsed - job.cancel_at >= 1.0:
                job.state, job.completed = "JOB_STATE_CANCELLED", now
            return
        t, start = job.elapsed, 0.0
        for state, seconds in PHASES:
            if t < start + seconds:
                job.state = state
                return
            start += seconds
        done = min(job.total_steps, int((t - start) / self.step_seconds))
        while job.step < done:
            job.step += 1
            point: dict[str, Any] = {
                "step": job.step,
                "epoch": job.step * int(job.config.get("epochs", 1)) // job.total_steps,
            }
            if job.kind == "rft":  # the job's evaluator scores the emulated policy's answers
                evaluator = self.evaluators[job.body["evaluator"]]
                rows = rows_for(job.dataset.records)
                base = str(job.config.get("baseModel") or "")
                point["train_reward"] = reward_point(evaluator, rows, base, job.step, job.total_steps)
            else:
                point["train_loss"] = round(2.4 * math.exp(-3.0 * job.step / job.total_steps) + 0.05, 4)
            job.losses.append(point)
        if job.step < job.total_steps:
            job.state = "JOB_STATE_RUNNING"
            return
        if t < start + job.total_steps * self.step_seconds + WRITING_S:
            job.state = "JOB_STATE_WRITING_RESULTS"
            return
        job.state, job.completed = "JOB_STATE_COMPLETED", now

    async def _evaluators(self, request: Any) -> Any:
        account = request.path_params["account"]
        return await self._with_body(
            request,
            lambda body: self._json(
                200, create_evaluator(self.evaluators, account, body, _iso(self.clock.now())).obj()
            ),
        )

    async def _evaluator(self, request: Any) -> Any:
        name = f"accounts/{request.path_params['account']}/evaluators/{request.path_params['evaluator']}"

        def run() -> Any:
            evaluator = self._found(self.evaluators, name, "evaluator")
            seen = evaluator.obj()
            evaluator.build()  # BUILDING on the first read after create, built by the next
            return self._json(200, seen)

        return self._handle(run)

    async def _metrics_file(self, request: Any) -> Any:
        from starlette.responses import PlainTextResponse

        job = next((j for j in self.jobs.values() if j.name.endswith("/" + request.path_params["job"])), None)
        if job is None or request.query_params.get("sig") != "x":
            return PlainTextResponse("AccessDenied", status_code=403)
        return PlainTextResponse(
            "".join(json.dumps(p) + "\n" for p in job.losses), media_type="application/jsonl"
        )

    # ------------------------------------------------------------------------------------- inference

    def _seen(self, request: Any) -> None:
        """Where this emulator is served (the metrics file's signed URL points back at it)."""
        self.base_url = str(request.base_url).rstrip("/")

    async def _chat(self, request: Any) -> Any:

        def run(body: dict[str, Any]) -> Any:
            model, messages = str(body.get("model") or ""), body.get("messages") or []
            if model in TUNABLE:
                answer = base_answer(model)
            else:
                job = next(
                    (
                        j
                        for j in self.jobs.values()
                        if j.state == "JOB_STATE_COMPLETED" and j.config.get("outputModel") == model
                    ),
                    None,
                )
                if job is None:
                    raise ApiError(404, f"Model not found, inaccessible, and/or not deployed: {model}")
                answer = nearest_answer(job.dataset.records, messages)
            limit = body.get("max_tokens")
            if limit is not None:
                answer = " ".join(answer.split(" ")[: int(limit)])
            return self._json(
                200,
                {
                    "id": secrets.token_hex(12),
                    "object": "chat.completion",
                    "created": self._now(),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": answer},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": 1,
                        "completion_tokens": len(answer.split()),
                        "total_tokens": 1,
                    },
                },
            )

        return await self._with_body(request, run)


def _check(record: Any) -> str | None:
    """What Fireworks says of a training line it refuses, or None."""
    if not isinstance(record, dict):
        return "each line must be a JSON object"
    if "input" in record:  # DPO
        if not record.get("preferred_output") or not record.get("non_preferred_output"):
            return "a preference example needs preferred_output and non_preferred_output"
        return _check_messages(record["input"].get("messages"), need_answer=False)
    return _check_messages(record.get("messages"), need_answer="ground_truth" not in record)


def _check_messages(messages: Any, *, need_answer: bool) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "messages must be a non-empty array"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            return "role must be one of system, user, assistant"
        if m["role"] == "system" and i:
            return "a system message must be the first message"
    if need_answer and not any(m["role"] == "assistant" for m in messages):
        return "a conversation needs an assistant message"
    return None
