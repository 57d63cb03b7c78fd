"""An emulator of OpenAI's files, fine-tuning and chat-completions API, faithful to the wire.

Written from the `openai` SDK's types (3.57), `shared/specs/openai-openapi.yaml` (2026-08-21) and the
research notes. Serve it with `anytune emulate openai`, or in tests with `EmulatorServer(emulator.app)`.

What it models:
- `/v1/files` (multipart upload, list with cursor pagination, retrieve, delete, content);
- `/v1/fine_tuning/jobs` (create, list with `metadata[k]=v` filters, retrieve, cancel, pause, resume,
  events newest first, checkpoints); jobs go validating_files -> queued -> running -> succeeded, failing
  with OpenAI's error shape when the training file is invalid (checked line by line);
- server-side checks anytune cannot make itself: a line containing one of `blocked_words` fails the job
  the way OpenAI's moderation of training files does;
- `/v1/chat/completions`: deterministic answers. A fine-tuned model answers with the answer of the most
  similar training prompt; a base model answers with a fixed sentence. So a fine-tune scores higher than
  its base on data like its training data, and every run gives the same numbers.
- Bearer auth, `{"error": {...}}` bodies, `x-request-id`, and the shared fault injection.

Time is a `Clock`: real (sped up) for people, or a `ManualClock` that moves `tick` seconds each time a job
is retrieved, so that tests step jobs by polling, without sleeping.
"""

from __future__ import annotations

import io
import json
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from anytune.plugin import DataFormat, JobStatus, check_record, content_text
from anytune.testing import ApiError, Clock, EmulatorBase, base_answer, nearest_answer, practice_answers
from anytune_openai.emulated_graders import grade, grader_problem

ORG = "org-anytune-emulator"
FINE_TUNABLE = {
    "gpt-4o-mini-2024-07-18",
    "gpt-4o-2024-08-06",
    "gpt-4.1-2025-04-14",
    "gpt-4.1-mini-2025-04-14",
    "o4-mini-2025-04-16",
}
REINFORCEMENT_MODELS = {"o4-mini-2025-04-16"}
RFT_HYPER = ("compute_multiplier", "eval_interval", "eval_samples", "reasoning_effort")
MIN_EXAMPLES = 10
VALIDATING_S, QUEUED_S = 2.0, 2.0
AUTO = {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 2.0, "beta": 0.1}


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def obj(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


@dataclass
class EmulatedJob:
    id: str
    model: str
    training_file: str
    validation_file: str | None
    suffix: str | None
    seed: int
    metadata: dict[str, str] | None
    integrations: list[Any] | None
    method: dict[str, Any]
    created_at: float
    status: str = "validating_files"
    error: dict[str, Any] | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    trained_tokens: int | None = None
    result_files: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # chronological
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    total_steps: int = 0
    steps_per_epoch: int = 1
    tokens_per_epoch: int = 0
    step: int = 0
    elapsed: float = 0.0  # running time credited so far (paused time excluded)
    last_tick: float = 0.0

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return self.method[self.method["type"]]["hyperparameters"]

    def obj(self) -> dict[str, Any]:
        hp = self.hyperparameters
        running = self.status in ("running", "queued", "validating_files")
        return {
            "object": "fine_tuning.job",
            "id": self.id,
            "model": self.model,
            "created_at": int(self.created_at),
            "finished_at": self.finished_at,
            "fine_tuned_model": self.fine_tuned_model,
            "organization_id": ORG,
            "result_files": self.result_files,
            "status": self.status,
            "validation_file": self.validation_file,
            "training_file": self.training_file,
            "hyperparameters": {
                k: hp.get(k, "auto") for k in ("batch_size", "learning_rate_multiplier", "n_epochs")
            },
            "trained_tokens": self.trained_tokens,
            "error": self.error,
            "seed": self.seed,
            "estimated_finish": None if not running or not self.total_steps else int(self.created_at) + 3600,
            "integrations": self.integrations,
            "metadata": self.metadata,
            "method": self.method,
            "suffix": self.suffix,
        }


def _page(
    items: list[dict[str, Any]], after: str | None, limit: int, *, ids_listed: bool = False
) -> dict[str, Any]:
    """A cursor page: the items after the one with id `after`, at most `limit`."""
    start = 0
    if after:
        start = next((i + 1 for i, it in enumerate(items) if it["id"] == after), len(items))
    data = items[start : start + limit]
    page: dict[str, Any] = {"object": "list", "data": data, "has_more": start + limit < len(items)}
    if ids_listed:
        page["first_id"] = data[0]["id"] if data else None
        page["last_id"] = data[-1]["id"] if data else None
    return page


def _rft_line_problem(number: int, record: Any) -> str | None:
    """An RFT line's rule: `messages` ending with the user's turn."""
    messages = record.get("messages") if isinstance(record, dict) else None
    if not isinstance(messages, list) or not messages or messages[-1].get("role") != "user":
        return f"Invalid file format. Line {number}: the last message must be from the user."
    return None


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


class OpenAIEmulator(EmulatorBase):
    """State and routes of the emulated API. `app` is the ASGI application."""

    api_prefix: str | tuple[str, ...] = "/v1"  # where auth, faults and the recorder apply
    # every status OpenAI's fine-tuning jobs show (its API reference), and what each means
    statuses: ClassVar[Mapping[str, JobStatus]] = {
        "validating_files": JobStatus.VALIDATING,
        "queued": JobStatus.QUEUED,
        "running": JobStatus.RUNNING,
        "paused": JobStatus.PAUSED,
        "succeeded": JobStatus.SUCCEEDED,
        "failed": JobStatus.FAILED,
        "cancelled": JobStatus.CANCELLED,
    }
    create_route: ClassVar[tuple[str, str] | None] = ("POST", "/v1/fine_tuning/jobs")

    def __init__(
        self,
        *,
        api_key: str | None = None,
        clock: Clock | None = None,
        step_seconds: float = 1.0,
        fine_tuning_enabled: bool = True,
        blocked_words: tuple[str, ...] = ("EMULATOR-UNSAFE",),
    ) -> None:
        self.step_seconds = step_seconds
        self.fine_tuning_enabled = fine_tuning_enabled
        self.blocked_words = blocked_words  # stands in for OpenAI's server-side moderation of training data
        self.files: dict[str, StoredFile] = {}
        self.jobs: dict[str, EmulatedJob] = {}
        self._event_seq = 0
        super().__init__(
            api_key=api_key,
            clock=clock,
            routes=self._routes(),
            api_prefix=self.api_prefix,
            extra_headers=lambda: {
                "openai-version": "2020-10-01",
                "openai-organization": ORG,
                "openai-processing-ms": "7",
            },
        )

    def _routes(self) -> list[Any]:
        from starlette.routing import Route

        return [
            Route("/v1/files", self._files, methods=["GET", "POST"]),
            Route("/v1/files/{file_id}", self._file, methods=["GET", "DELETE"]),
            Route("/v1/files/{file_id}/content", self._file_content, methods=["GET"]),
            Route("/v1/fine_tuning/jobs", self._jobs, methods=["GET", "POST"]),
            Route("/v1/fine_tuning/jobs/{job_id}", self._job, methods=["GET"]),
            Route("/v1/fine_tuning/jobs/{job_id}/{action:str}", self._job_action, methods=["POST"]),
            Route("/v1/fine_tuning/jobs/{job_id}/events", self._events, methods=["GET"]),
            Route("/v1/fine_tuning/jobs/{job_id}/checkpoints", self._checkpoints, methods=["GET"]),
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/_emulator/state", self._state, methods=["GET"]),
        ]

    # -------------------------------------------------------------------------------------- helpers

    def _get_job(self, job_id: str) -> EmulatedJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"Could not find fine-tune: {job_id}")
        return job

    def _get_file(self, file_id: str) -> StoredFile:
        f = self.files.get(file_id)
        if f is None:
            raise ApiError(404, f"No such File object: {file_id}", param="id")
        return f

    # ---------------------------------------------------------------------------------------- files

    async def _files(self, request: Any) -> Any:
        if request.method == "POST":
            form = await request.form()
            return self._handle(lambda: self._json(200, self._upload(form)))
        q = request.query_params

        def listing() -> Any:
            newest_first = q.get("order", "desc") == "desc"
            ordered = sorted(self.files.values(), key=lambda f: (f.created_at, f.id), reverse=newest_first)
            items = [f.obj() for f in ordered if not q.get("purpose") or f.purpose == q["purpose"]]
            return self._json(200, _page(items, q.get("after"), int(q.get("limit", 10000)), ids_listed=True))

        return self._handle(listing)

    def _upload(self, form: Any) -> dict[str, Any]:
        upload = form.get("file")
        purpose = form.get("purpose")
        if upload is None or not hasattr(upload, "file"):
            raise ApiError(400, "Missing required parameter: 'file'.", param="file")
        if purpose not in ("assistants", "batch", "fine-tune", "vision", "user_data", "evals"):
            raise ApiError(400, f"Invalid value for 'purpose': {purpose!r}.", param="purpose")
        filename = upload.filename or "upload"
        if purpose == "fine-tune" and not filename.endswith(".jsonl"):
            raise ApiError(
                400, f"Invalid file format for Fine-Tuning API. Must be .jsonl: {filename}", param="file"
            )
        f = StoredFile(f"file-{secrets.token_hex(12)}", filename, purpose, upload.file.read(), self._now())
        self.files[f.id] = f
        return f.obj()

    async def _file(self, request: Any) -> Any:
        def run() -> Any:
            f = self._get_file(request.path_params["file_id"])
            if request.method == "DELETE":
                del self.files[f.id]
                return self._json(200, {"id": f.id, "object": "file", "deleted": True})
            return self._json(200, f.obj())

        return self._handle(run)

    async def _file_content(self, request: Any) -> Any:
        from starlette.responses import Response

        return self._handle(
            lambda: Response(
                self._get_file(request.path_params["file_id"]).data, media_type="application/octet-stream"
            )
        )

    # ----------------------------------------------------------------------------------------- jobs

    async def _jobs(self, request: Any) -> Any:
        if request.method == "POST":
            return await self._with_body(request, lambda body: self._json(200, self._create(body).obj()))
        q = request.query_params

        def listing() -> Any:
            wanted = {
                m.group(1): v for k, v in q.multi_items() if (m := re.fullmatch(r"metadata\[(.+)\]", k))
            }
            jobs = sorted(self.jobs.values(), key=lambda j: (j.created_at, j.id), reverse=True)
            for job in jobs:
                self._advance(job)
            items = [j.obj() for j in jobs if all((j.metadata or {}).get(k) == v for k, v in wanted.items())]
            return self._json(200, _page(items, q.get("after"), int(q.get("limit", 20))))

        return self._handle(listing)

    def _create(self, body: dict[str, Any]) -> EmulatedJob:
        if not self.fine_tuning_enabled:
            raise ApiError(403, "Fine-tuning is not available for this organization.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ApiError(400, "Missing required parameter: 'model'.", param="model")
        if model not in FINE_TUNABLE:
            raise ApiError(
                400,
                f"Model {model} is not available for fine-tuning or does not exist.",
                code="model_not_available",
                param="model",
            )
        training = body.get("training_file")
        if training not in self.files:
            raise ApiError(
                400, f"Invalid file id: {training!r}.", code="invalid_file_id", param="training_file"
            )
        validation = body.get("validation_file")
        if validation is not None and validation not in self.files:
            raise ApiError(
                400, f"Invalid file id: {validation!r}.", code="invalid_file_id", param="validation_file"
            )
        suffix = body.get("suffix")
        if suffix is not None and not (isinstance(suffix, str) and 1 <= len(suffix) <= 64):
            raise ApiError(400, "suffix must be between 1 and 64 characters.", param="suffix")
        metadata = body.get("metadata")
        if metadata is not None and (
            len(metadata) > 16 or any(len(k) > 64 or len(str(v)) > 512 for k, v in metadata.items())
        ):
            raise ApiError(
                400,
                "metadata: at most 16 pairs, keys up to 64 and values up to 512 characters.",
                param="metadata",
            )
        method = body.get("method") or {
            "type": "supervised",
            "supervised": {"hyperparameters": body.get("hyperparameters") or {}},
        }
        kind = method.get("type")
        if kind not in ("supervised", "dpo", "reinforcement") or (
            (kind == "reinforcement") != (model in REINFORCEMENT_MODELS)
        ):
            raise ApiError(400, f"Fine-tuning method {kind!r} is not available for {model}.", param="method")
        grader = (method.get(kind) or {}).get("grader")
        if kind == "reinforcement":
            self._check_reinforcement(grader, validation)
        given = (method.get(kind) or {}).get("hyperparameters") or {}
        resolved = {}
        for key in ("n_epochs", "batch_size", "learning_rate_multiplier") + (
            ("beta",) if kind == "dpo" else ()
        ):
            value = given.get(key, "auto")
            resolved[key] = AUTO[key] if value == "auto" else value
        if not (1 <= resolved["n_epochs"] <= 50) or not (1 <= resolved["batch_size"] <= 256):
            raise ApiError(400, "n_epochs must be in 1..50 and batch_size in 1..256.", param="method")
        if kind == "reinforcement":
            resolved.update({k: given[k] for k in RFT_HYPER if k in given})
        job = EmulatedJob(
            id=f"ftjob-{secrets.token_hex(12)}",
            model=model,
            training_file=training,
            validation_file=validation,
            suffix=suffix,
            seed=body.get("seed") if body.get("seed") is not None else 42,
            metadata=metadata,
            integrations=body.get("integrations"),
            method={
                "type": kind,
                kind: {"hyperparameters": resolved, **({"grader": grader} if grader else {})},
            },
            created_at=self.clock.now(),
        )
        job.last_tick = job.created_at
        self.jobs[job.id] = job
        self._event(job, "info", f"Created fine-tuning job: {job.id}")
        self._event(job, "info", f"Validating training file: {training}")
        return job

    def _check_reinforcement(self, grader: Any, validation: str | None) -> None:
        """A reinforcement job's grader, as OpenAI validates it on create (Azure adds its own rules)."""
        found = grader_problem(grader)
        if found:
            field, message = found
            raise ApiError(400, message, code="invalid_grader", param=f"method.reinforcement.{field}")

    def _event(
        self,
        job: EmulatedJob,
        level: str,
        message: str,
        data: dict[str, Any] | None = None,
        kind: str = "message",
    ) -> None:
        self._event_seq += 1
        job.events.append(
            {
                "object": "fine_tuning.job.event",
                "id": f"ftevent-{self._event_seq:08d}",
                "created_at": self._now(),
                "level": level,
                "message": message,
                "data": data or {},
                "type": kind,
            }
        )

    def _fail(self, job: EmulatedJob, code: str, message: str, param: str | None) -> None:
        job.status, job.error = "failed", {"code": code, "message": message, "param": param}
        job.finished_at = self._now()
        self._event(job, "error", message)

    def _examples(self, file_id: str, kind: str) -> tuple[list[dict[str, Any]] | None, str | None]:
        """Training records of a file, or an OpenAI-style complaint naming the first bad line. RFT lines are
        `messages` ending with the user's turn, the grader's fields beside them."""
        fmt = DataFormat.OPENAI_PREFERENCE if kind == "dpo" else DataFormat.CHAT
        records = []
        for number, line in enumerate(io.BytesIO(self.files[file_id].data), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                return None, f"Invalid file format. Line {number} is not valid JSON."
            if kind == "reinforcement":
                problem = _rft_line_problem(number, record)
            else:
                problem = self._line_problem(number, record, fmt, line.decode("utf-8", "replace"))
            if problem:
                return None, problem
            records.append(record)
        if len(records) < MIN_EXAMPLES:
            return (
                None,
                f"Training file has {len(records)} example(s), but must have at least {MIN_EXAMPLES} examples",
            )
        return records, None

    def _line_problem(self, number: int, record: Any, fmt: DataFormat, text: str) -> str | None:
        errors = [p for p in check_record(record, fmt) if p[3] == "error"]
        if errors:
            where = f" field '{errors[0][0]}'" if errors[0][0] else ""
            return f"Invalid file format. Line {number},{where}: {errors[0][1]}"
        if any(word in text for word in self.blocked_words):
            return (
                f"The job failed due to an unsafe training file. Line {number} contains content "
                "that violates OpenAI's usage policies."
            )
        return None

    def _reward(self, job: EmulatedJob) -> float:
        """The mean score the job's grader gives the emulated policy's answers at this step."""
        records, _ = self._examples(job.training_file, "reinforcement")
        items = [{k: v for k, v in r.items() if k != "messages"} for r in records or []]
        answers = practice_answers(
            [str(i.get("reference", "")) for i in items], job.step, job.total_steps, base_answer(job.model)
        )
        grader = job.method["reinforcement"]["grader"]
        scores = [min(1.0, max(0.0, grade(grader, a, i))) for a, i in zip(answers, items, strict=True)]
        return round(sum(scores) / max(1, len(scores)), 4)

    def _advance(self, job: EmulatedJob) -> None:
        """Bring a job up to the clock: phases, steps, events, checkpoints, the result."""
        now = self.clock.now()
        if job.status in ("succeeded", "failed", "cancelled") or job.id in self.held:
            return
        if job.status != "paused":
            job.elapsed += max(0.0, now - job.last_tick)
        job.last_tick = now
        if job.status == "paused":
            return
        if job.status == "validating_files" and job.elapsed >= VALIDATING_S:
            kind = job.method["type"]
            records, problem = self._examples(job.training_file, kind)
            if problem is None and job.validation_file:
                _, problem = self._examples(job.validation_file, kind)
                param = "validation_file"
            else:
                param = "training_file"
            if problem is not None or records is None:
                self._fail(job, "invalid_training_file", problem or "invalid", param)
                return
            hp = job.hyperparameters
            job.steps_per_epoch = max(1, math.ceil(len(records) / hp["batch_size"]))
            job.total_steps = job.steps_per_epoch * hp["n_epochs"]
            job.tokens_per_epoch = sum(_tokens(json.dumps(r, ensure_ascii=False)) for r in records)
            job.status = "queued"
            self._event(job, "info", "Files validated, moving job to queued state")
        if job.status == "queued" and job.elapsed >= VALIDATING_S + QUEUED_S:
            job.status = "running"
            self._event(job, "info", "Fine-tuning job started")
        if job.status == "running":
            done = min(job.total_steps, int((job.elapsed - VALIDATING_S - QUEUED_S) / self.step_seconds))
            while job.step < done:
                job.step += 1
                loss = round(2.5 * math.exp(-3.0 * job.step / job.total_steps) + 0.05, 4)
                data = {
                    "step": job.step,
                    "train_loss": loss,
                    "total_steps": job.total_steps,
                    "train_mean_token_accuracy": round(1 - loss / 3, 4),
                }
                said = f"training loss={loss}"
                if job.method["type"] == "reinforcement":  # RFT reports reward, not a loss
                    reward = self._reward(job)
                    data = {"step": job.step, "total_steps": job.total_steps, "train_reward_mean": reward}
                    said = f"mean reward={reward}"
                self._event(job, "info", f"Step {job.step}/{job.total_steps}: {said}", data, "metrics")
                if job.step % job.steps_per_epoch == 0:
                    self._checkpoint(job, loss)
            if job.step >= job.total_steps:
                self._succeed(job)

    def _checkpoint(self, job: EmulatedJob, loss: float) -> None:
        name = self._model_name(job) + f":ckpt-step-{job.step}"
        job.checkpoints.append(
            {
                "object": "fine_tuning.job.checkpoint",
                "id": f"ftckpt_{secrets.token_hex(12)}",
                "created_at": self._now(),
                "fine_tuned_model_checkpoint": name,
                "fine_tuning_job_id": job.id,
                "step_number": job.step,
                "metrics": {"step": job.step, "train_loss": loss},
            }
        )
        self._event(job, "info", f"Checkpoint created at step {job.step}")

    def _model_name(self, job: EmulatedJob) -> str:
        return f"ft:{job.model}:anytune-emulator:{job.suffix or ''}:{job.id[-8:]}"

    def _succeed(self, job: EmulatedJob) -> None:
        job.fine_tuned_model = self._model_name(job)
        job.trained_tokens = job.tokens_per_epoch * job.hyperparameters["n_epochs"]
        key = "train_reward_mean" if job.method["type"] == "reinforcement" else "train_loss"
        csv = f"step,{key}\n" + "".join(
            f"{e['data']['step']},{e['data'][key]}\n" for e in job.events if e["type"] == "metrics"
        )
        results = StoredFile(
            f"file-{secrets.token_hex(12)}",
            "step_metrics.csv",
            "fine-tune-results",
            csv.encode(),
            self._now(),
        )
        self.files[results.id] = results
        job.result_files = [results.id]
        job.status, job.finished_at = "succeeded", self._now()
        self._event(job, "info", f"New fine-tuned model created: {job.fine_tuned_model}")
        self._event(job, "info", "The job has successfully completed")

    async def _job(self, request: Any) -> Any:
        def run() -> Any:
            job = self._get_job(request.path_params["job_id"])
            self.clock.on_poll()
            self._advance(job)
            return self._json(200, job.obj())

        return self._handle(run)

    async def _job_action(self, request: Any) -> Any:
        def run() -> Any:
            action = request.path_params["action"]
            job = self._get_job(request.path_params["job_id"])
            self._advance(job)
            if action == "cancel":
                if job.status in ("succeeded", "failed", "cancelled"):
                    raise ApiError(400, f"Job {job.id} has already completed and cannot be cancelled.")
                job.status, job.finished_at = "cancelled", self._now()
                self._event(job, "info", "Fine-tuning job cancelled")
            elif action == "pause":
                if job.status != "running":
                    raise ApiError(400, f"Job {job.id} is {job.status} and can only be paused while running.")
                job.status = "paused"
                self._event(job, "info", "Fine-tuning job paused")
            elif action == "resume":
                if job.status != "paused":
                    raise ApiError(400, f"Job {job.id} is {job.status}; only a paused job can be resumed.")
                job.status = "running"
                self._event(job, "info", "Fine-tuning job resumed")
            else:
                raise ApiError(404, f"Unknown action {action!r}.")
            return self._json(200, job.obj())

        return self._handle(run)

    def _listing(self, request: Any, items: str, default_limit: int, ids_listed: bool = False) -> Any:
        """A cursor page of a job's events or checkpoints, newest first."""

        def run() -> Any:
            job = self._get_job(request.path_params["job_id"])
            self._advance(job)
            q = request.query_params
            data = getattr(job, items)[::-1]
            return self._json(
                200, _page(data, q.get("after"), int(q.get("limit", default_limit)), ids_listed=ids_listed)
            )

        return self._handle(run)

    async def _events(self, request: Any) -> Any:
        return self._listing(request, "events", 20)

    async def _checkpoints(self, request: Any) -> Any:
        return self._listing(request, "checkpoints", 10, ids_listed=True)

    # ------------------------------------------------------------------------------ chat completions

    async def _chat(self, request: Any) -> Any:
        return await self._with_body(request, self._complete)

    def _complete(self, body: dict[str, Any]) -> Any:
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not isinstance(messages, list) or not messages:
            raise ApiError(400, "'model' and a non-empty 'messages' list are required.", param="messages")
        answer = self._answer(model, messages)
        if answer is None:
            raise ApiError(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        words = answer.split(" ")
        finish = "stop"
        if limit is not None and len(words) > limit:
            answer, finish = " ".join(words[:limit]), "length"
        prompt_tokens = sum(_tokens(content_text(m.get("content"))) for m in messages)
        completion_tokens = _tokens(answer)
        message = {"role": "assistant", "content": answer, "refusal": None, "annotations": []}
        return self._json(
            200,
            {
                "id": f"chatcmpl-{secrets.token_hex(12)}",
                "object": "chat.completion",
                "created": self._now(),
                "model": model,
                "service_tier": "default",
                "choices": [{"index": 0, "finish_reason": finish, "logprobs": None, "message": message}],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )

    def _answer(self, model: str, messages: list[dict[str, Any]]) -> str | None:
        if not model.startswith("ft:") and (model in FINE_TUNABLE or model.startswith(("gpt-", "o"))):
            return base_answer(model)
        job = next(
            (
                j
                for j in self.jobs.values()
                if model in {j.fine_tuned_model, *(c["fine_tuned_model_checkpoint"] for c in j.checkpoints)}
            ),
            None,
        )
        if job is None or job.fine_tuned_model is None:
            return None
        records, _ = self._examples(job.training_file, job.method["type"])
        return nearest_answer(records or [], messages)

    # ------------------------------------------------------------------------------------- control

    async def _state(self, request: Any) -> Any:
        return self._handle(
            lambda: self._json(
                200,
                {"jobs": len(self.jobs), "files": len(self.files), "requests": len(self.recorder.exchanges)},
            )
        )
