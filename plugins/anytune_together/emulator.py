"""An emulator of Together AI's files and fine-tuning API, faithful to the wire the `together` SDK speaks.

Written from the SDK (3.1.1), `shared/specs/together-openapi.yaml` (2026-04-28) and the research notes:
- the SDK's upload flow: `POST /v1/files` with form fields only -> 302 with `Location` and
  `X-Together-File-Id` (409 `{"file_id"}` when the checksum is known), a raw `PUT` of the bytes to that URL,
  then `POST /v1/files/{id}/preprocess`, which validates the file and returns its validation report;
- `GET /v1/fine-tunes/models/limits` and `POST /v1/fine-tunes/estimate-price`, which `create()` calls first;
- fine-tunes: create (model or from_checkpoint), list, retrieve (with events), cancel (cancel_requested,
  then cancelled), events, checkpoints, metrics; jobs go pending -> queued -> running -> compressing ->
  uploading -> completed, with `token_count`, `total_price` (nanodollars, as the SDK reads it) and steps;
- `GET /v1/finetune/download` with `Range` support (the SDK's DownloadManager asks for bytes 0-1 first);
- `POST /v1/chat/completions`, answering deterministically (see answers.py);
- Bearer auth, `{"error": {...}}` bodies, and the shared clock and fault injection.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import math
import secrets
import tarfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from anytune.plugin import JobStatus, content_text
from anytune.testing import ApiError, Clock, EmulatorBase, base_answer, nearest_answer

# model -> (parameters in billions, supports full training)
MODELS: dict[str, tuple[float, bool]] = {
    "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference": (8.0, True),
    "Qwen/Qwen2.5-7B-Instruct": (7.6, True),
    "meta-llama/Meta-Llama-3.1-70B-Instruct-Reference": (70.6, False),
}
# USD per 1M tokens processed: (SFT LoRA, SFT full, DPO LoRA, DPO full), by size tier (together.ai/pricing)
TIERS = [(16, (0.48, 0.54, 1.20, 1.35)), (69, (1.50, 1.65, 3.75, 4.12)), (100, (2.90, 3.20, 7.25, 8.00))]
PHASES = {"pending": 1.0, "queued": 1.0}  # seconds in each phase before running
AFTER_TRAINING = {"compressing": 1.0, "uploading": 1.0}
USER = "user_anytune_emulator"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def price_per_million(params_b: float, method: str, full: bool) -> float:
    column = (2 if method == "dpo" else 0) + (1 if full else 0)
    for limit, prices in TIERS:
        if params_b <= limit:
            return prices[column]
    return TIERS[-1][1][column]


def limits(model: str) -> dict[str, Any]:
    _params_b, full = MODELS[model]
    return {
        "model_name": model,
        "max_num_epochs": 20,
        "max_num_evals": 100,
        "max_num_checkpoints": 20,
        "max_learning_rate": 1.0,
        "min_learning_rate": 1e-6,
        "max_seq_length_sft": 131072,
        "max_seq_length_dpo": 65536,
        "min_max_seq_length": 1024,
        "default_gradient_accumulation_steps": 1,
        "merge_output_lora": True,
        "supports_full_training": full,
        "supports_vision": False,
        "supports_tools": True,
        "supports_reasoning": False,
        "lora_training": {
            "default_rank": 16,
            "max_rank": 64,
            "min_batch_size": 8,
            "max_batch_size": 32,
            "max_batch_size_dpo": 16,
            "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        },
        "full_training": {"min_batch_size": 8, "max_batch_size": 16, "max_batch_size_dpo": 8}
        if full
        else None,
    }


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    file_type: str
    checksum: str
    created_at: int
    data: bytes | None = None
    report: dict[str, Any] | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0

    @property
    def valid(self) -> bool:
        return bool(self.report and self.report.get("valid"))

    def obj(self) -> dict[str, Any]:
        done = self.report is not None
        status = "COMPLETED" if self.valid else ("FAILED" if done else "PENDING")
        out: dict[str, Any] = {
            "id": self.id,
            "object": "file",
            "created_at": self.created_at,
            "filename": self.filename,
            "bytes": len(self.data or b""),
            "purpose": self.purpose,
            "FileType": self.file_type,
            "Processed": done,
            "processing_status": status,
        }
        if self.report is not None:
            out["validation_report"] = self.report
        return out


@dataclass
class Job:
    id: str
    model: str
    training_file: StoredFile
    validation_file: StoredFile | None
    body: dict[str, Any]
    created_at: float
    status: str = "pending"
    elapsed: float = 0.0
    last_tick: float = 0.0
    step: int = 0
    total_steps: int = 0
    steps_per_epoch: int = 1
    events: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)
    started_at: float | None = None
    updated_at: float = 0.0
    phase_started: float = 0.0
    parent: Job | None = None
    token_count: int = 0

    @property
    def full(self) -> bool:
        return (self.body.get("training_type") or {}).get("type") == "Full"

    @property
    def method(self) -> str:
        return (self.body.get("training_method") or {}).get("method", "sft")

    @property
    def output_name(self) -> str:
        base = self.model.rsplit("/", 1)[-1]
        suffix = f"-{self.body['suffix']}" if self.body.get("suffix") else ""
        return f"anytune-emulator/{base}{suffix}-{self.id[3:11]}"

    def price(self) -> int:
        """Total price so far, in nanodollars (what the SDK's finetune_price_to_dollars divides by 1e9)."""
        usd = self.token_count * price_per_million(MODELS[self.model][0], self.method, self.full) / 1e6
        return round(usd * 1e9)

    def obj(self, *, with_events: bool) -> dict[str, Any]:
        b = self.body
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "user_id": USER,
            "owner_address": "emulator@anytune.invalid",
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at or self.created_at),
            "started_at": _iso(self.started_at) if self.started_at else None,
            "model": self.model,
            "training_file": self.training_file.id,
            "validation_file": self.validation_file.id if self.validation_file else "",
            "model_output_name": self.output_name if self.status == "completed" else None,
            "adapter_output_name": (self.output_name + "-adapter")
            if self.status == "completed" and not self.full
            else None,
            "trainingfile_numlines": len(self.training_file.records),
            "trainingfile_size": len(self.training_file.data or b""),
            "n_epochs": b.get("n_epochs", 1),
            "n_checkpoints": b.get("n_checkpoints", 1),
            "n_evals": b.get("n_evals", 0),
            "batch_size": b.get("batch_size", "max"),
            "learning_rate": b.get("learning_rate", 1e-5),
            "lr_scheduler": b.get("lr_scheduler"),
            "warmup_ratio": b.get("warmup_ratio", 0.0),
            "max_grad_norm": b.get("max_grad_norm", 1.0),
            "weight_decay": b.get("weight_decay", 0.0),
            "training_type": b.get("training_type"),
            "training_method": b.get("training_method"),
            "suffix": b.get("suffix"),
            "random_seed": b.get("random_seed"),
            "packing": b.get("packing", True),
            "max_seq_length": b.get("max_seq_length"),
            "from_checkpoint": b.get("from_checkpoint"),
            "wandb_project_name": b.get("wandb_project_name"),
            "wandb_url": "",
            "token_count": self.token_count,
            "param_count": int(MODELS[self.model][0] * 1e9),
            "total_price": self.price(),
            "epochs_completed": self.step // self.steps_per_epoch,
            "steps_completed": self.step,
            "total_steps": self.total_steps,
            "queue_depth": 0,
            "progress": {
                "estimate_available": self.status == "running",
                "seconds_remaining": max(0, self.total_steps - self.step),
            },
        }
        if with_events:
            out["events"] = self.events
        return {k: v for k, v in out.items() if v is not None}  # the spec types these fields without null


class TogetherEmulator(EmulatorBase):
    # every status Together's fine-tuning jobs show (its API reference), and what each means
    statuses: ClassVar[Mapping[str, JobStatus]] = {
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
    create_route: ClassVar[tuple[str, str] | None] = ("POST", "/v1/fine-tunes")
    methods: ClassVar[frozenset[str] | None] = frozenset({"sft", "dpo", "cpt"})  # sft, dpo; cpt = raw text
    adapters: ClassVar[frozenset[str] | None] = frozenset({"lora", "full"})

    def __init__(
        self, *, api_key: str | None = None, clock: Clock | None = None, step_seconds: float = 1.0
    ) -> None:
        from starlette.routing import Route

        self.step_seconds = step_seconds
        self.files: dict[str, StoredFile] = {}
        self.jobs: dict[str, Job] = {}
        self._upload_tokens: dict[str, str] = {}
        routes = [
            Route("/v1/files", self._files, methods=["GET", "POST"]),
            Route("/v1/files/{file_id}", self._file, methods=["GET", "DELETE"]),
            Route("/v1/files/{file_id}/content", self._file_content, methods=["GET"]),
            Route("/v1/files/{file_id}/preprocess", self._preprocess, methods=["POST"]),
            Route("/_upload/{file_id}", self._put, methods=["PUT"]),
            Route("/v1/fine-tunes/models/limits", self._limits, methods=["GET"]),
            Route("/v1/fine-tunes/estimate-price", self._estimate, methods=["POST"]),
            Route("/v1/fine-tunes", self._fine_tunes, methods=["GET", "POST"]),
            Route("/v1/fine-tunes/{job_id}", self._fine_tune, methods=["GET"]),
            Route("/v1/fine-tunes/{job_id}/cancel", self._cancel, methods=["POST"]),
            Route("/v1/fine-tunes/{job_id}/events", self._events, methods=["GET"]),
            Route("/v1/fine-tunes/{job_id}/checkpoints", self._checkpoints, methods=["GET"]),
            Route("/v1/fine-tunes/{job_id}/metrics", self._metrics, methods=["GET"]),
            Route("/v1/finetune/download", self._download, methods=["GET"]),
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
        ]
        super().__init__(api_key=api_key, clock=clock, routes=routes)

    # -------------------------------------------------------------------------------------- helpers

    def _file_or_404(self, file_id: str) -> StoredFile:
        f = self.files.get(file_id)
        if f is None:
            raise ApiError(404, f"File {file_id} not found", param="id")
        return f

    def _job_or_404(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"Fine-tune job {job_id} not found", param="id")
        return job

    # ---------------------------------------------------------------------------------------- files

    async def _files(self, request: Any) -> Any:
        if request.method == "GET":
            return self._handle(lambda: self._json(200, {"data": [f.obj() for f in self.files.values()]}))
        form = await request.form()
        base = f"{request.url.scheme}://{request.url.netloc}"
        return self._handle(self._begin_upload, dict(form), base)

    def _begin_upload(self, form: dict[str, Any], base: str) -> Any:
        from starlette.responses import Response

        for key in ("purpose", "file_name", "file_type", "checksum"):
            if not form.get(key):
                raise ApiError(400, f"Missing form field {key!r}", param=key)
        existing = next((f for f in self.files.values() if f.checksum == form["checksum"] and f.data), None)
        if existing is not None:
            return self._json(409, {"file_id": existing.id})
        f = StoredFile(
            f"file-{uuid.uuid4()}",
            str(form["file_name"]),
            str(form["purpose"]),
            str(form["file_type"]),
            str(form["checksum"]),
            self._now(),
        )
        self.files[f.id] = f
        token = secrets.token_hex(8)
        self._upload_tokens[f.id] = token
        return Response(
            status_code=302,
            headers={"Location": f"{base}/_upload/{f.id}?sig={token}", "X-Together-File-Id": f.id},
        )

    async def _put(self, request: Any) -> Any:
        from starlette.responses import Response

        body = await request.body()
        with self._lock:
            file_id = request.path_params["file_id"]
            if file_id not in self.files or self._upload_tokens.get(file_id) != request.query_params.get(
                "sig"
            ):
                return Response("SignatureDoesNotMatch", status_code=403)
            self.files[file_id].data = body
            return Response(status_code=200)

    async def _preprocess(self, request: Any) -> Any:
        return self._handle(self._validate_file, request.path_params["file_id"])

    def _validate_file(self, file_id: str) -> Any:
        f = self._file_or_404(file_id)
        if f.data is None:
            raise ApiError(400, f"File {file_id} has no content: upload it first")
        if hashlib.sha256(f.data).hexdigest() != f.checksum:
            raise ApiError(400, "The uploaded content does not match its checksum", param="checksum")
        f.report = self._report(f)
        return self._json(200, f.obj())

    def _report(self, f: StoredFile) -> dict[str, Any]:
        """Together's server-side checks (one format per file, conversations that alternate, one answer per
        preference output), as a validation report."""
        kinds = {
            "messages": "CONVERSATION",
            "prompt": "INSTRUCTION",
            "text": "GENERAL",
            "input": "PREFERENCE",
        }
        fmt, error, records = None, None, []
        for number, line in enumerate(io.BytesIO(f.data or b""), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                error = f"Line {number}: not valid JSON"
                break
            kind = next((v for k, v in kinds.items() if isinstance(record, dict) and k in record), None)
            if kind is None:
                error = (
                    f"Line {number}: no known format (expected messages, prompt/completion, text or input)"
                )
                break
            if fmt is not None and kind != fmt:
                error = f"Line {number}: {kind} record in a {fmt} file; use one format per file"
                break
            fmt = kind
            error = self._check(record, kind, number)
            if error:
                break
            records.append(record)
        f.records = records if error is None else []
        f.tokens = sum(math.ceil(len(json.dumps(r, ensure_ascii=False)) / 4) for r in f.records)
        return {
            "valid": error is None and bool(records),
            "dataset_format": fmt,
            "nlines": len(records),
            "file_id": f.id,
            "dataset_has_tools": False,
            "dataset_has_message_weights": False,
            "dataset_is_multimodal": False,
            "dataset_has_reasoning": False,
            "dataset_has_sample_weights": False,
            "dataset_has_parallel_tool_calls": False,
            "error": error or (None if records else "empty file"),
            "error_type": "INVALID_FORMAT" if error or not records else None,
        }

    @staticmethod
    def _check(record: dict[str, Any], kind: str, number: int) -> str | None:
        if kind == "CONVERSATION":
            roles = [m.get("role") for m in record.get("messages") or [] if isinstance(m, dict)]
            if not roles or roles[0] not in ("system", "user"):
                return f"Line {number}: a conversation must start with a system or user message"
            turns = [r for r in roles if r != "system"]
            if any(r not in ("user", "assistant", "tool") for r in turns) or "assistant" not in turns:
                return f"Line {number}: a conversation needs user and assistant turns"
            for a, b in itertools.pairwise(turns):
                if a == b == "user" or a == b == "assistant":
                    return f"Line {number}: user and assistant turns must alternate"
        elif kind == "INSTRUCTION":
            if not isinstance(record.get("prompt"), str) or not isinstance(record.get("completion"), str):
                return f"Line {number}: prompt and completion must be strings"
        elif kind == "GENERAL":
            if not isinstance(record.get("text"), str) or not record["text"]:
                return f"Line {number}: text must be a non-empty string"
        else:
            for key in ("preferred_output", "non_preferred_output"):
                out = record.get(key)
                if not isinstance(out, list) or len(out) != 1 or out[0].get("role") != "assistant":
                    return f"Line {number}: {key} must hold exactly one assistant message"
        return None

    async def _file(self, request: Any) -> Any:
        def run() -> Any:
            f = self._file_or_404(request.path_params["file_id"])
            if request.method == "DELETE":
                del self.files[f.id]
                return self._json(200, {"id": f.id, "deleted": True})
            return self._json(200, f.obj())

        return self._handle(run)

    async def _file_content(self, request: Any) -> Any:
        from starlette.responses import Response

        def run() -> Any:
            return Response(
                self._file_or_404(request.path_params["file_id"]).data or b"",
                media_type="application/octet-stream",
            )

        return self._handle(run)

    # ------------------------------------------------------------------------------ limits and price

    async def _limits(self, request: Any) -> Any:
        name = request.query_params.get("model_name", "")

        def run() -> Any:
            model = self._model_of(name)
            return self._json(200, limits(model))

        return self._handle(run)

    def _model_of(self, name: str) -> str:
        """A base model, or the base model of a job / output model named as a checkpoint."""
        if name in MODELS:
            return name
        ref = name.split(":")[0]
        job = self.jobs.get(ref) or next((j for j in self.jobs.values() if j.output_name == ref), None)
        if job is not None:
            return job.model
        raise ApiError(
            400, f"Model {name} is not supported for fine-tuning", code="model_not_supported", param="model"
        )

    async def _estimate(self, request: Any) -> Any:
        def run(body: dict[str, Any]) -> Any:
            f = self._file_or_404(str(body.get("training_file")))
            if not f.valid:
                return self._json(
                    200, {"estimation_available": False, "unavailable_reason": "train_file_invalid"}
                )
            model = self._model_of(body.get("model") or body.get("from_checkpoint") or "")
            full = (body.get("training_type") or {}).get("type") == "Full"
            method = (body.get("training_method") or {}).get("method", "sft")
            epochs = int(body.get("n_epochs") or 1)
            tokens = f.tokens * epochs
            usd = tokens * price_per_million(MODELS[model][0], method, full) / 1e6
            return self._json(
                200,
                {
                    "estimation_available": True,
                    "estimated_total_price": round(usd, 6),
                    "allowed_to_proceed": True,
                    "user_limit": 1000.0,
                    "estimated_train_token_count": float(tokens),
                    "estimated_eval_token_count": 0.0,
                },
            )

        return await self._with_body(request, run)

    # -------------------------------------------------------------------------------------- fine-tunes

    async def _fine_tunes(self, request: Any) -> Any:
        if request.method == "GET":

            def listing() -> Any:
                jobs = sorted(self.jobs.values(), key=lambda j: j.created_at)
                for job in jobs:
                    self._advance(job)
                return self._json(200, {"data": [j.obj(with_events=False) for j in jobs]})

            return self._handle(listing)
        return await self._with_body(request, self._create)

    def _create(self, body: dict[str, Any]) -> Any:
        model, checkpoint = body.get("model"), body.get("from_checkpoint")
        if bool(model) == bool(checkpoint):
            raise ApiError(
                400, "Specify either a model or a checkpoint to start from, not both", param="model"
            )
        parent = None
        if checkpoint:
            parent_id, _, step = str(checkpoint).partition(":")
            parent = self.jobs.get(parent_id) or next(
                (j for j in self.jobs.values() if j.output_name == parent_id), None
            )
            if parent is None or (parent.status != "completed" and not parent.checkpoints):
                raise ApiError(400, f"Checkpoint {checkpoint} not found", param="from_checkpoint")
            if step and not any(c["step"] == int(step) for c in parent.checkpoints):
                raise ApiError(
                    400, f"Job {parent.id} has no checkpoint at step {step}", param="from_checkpoint"
                )
            model = parent.model
        model = self._model_of(str(model))
        train = self.files.get(str(body.get("training_file")))
        if train is None or not train.valid:
            raise ApiError(
                400,
                f"Training file {body.get('training_file')} is missing or failed validation",
                param="training_file",
            )
        validation = None
        if body.get("validation_file"):
            validation = self.files.get(body["validation_file"])
            if validation is None or not validation.valid:
                raise ApiError(
                    400, "Validation file is missing or failed validation", param="validation_file"
                )
        lim = limits(model)
        full = (body.get("training_type") or {}).get("type") == "Full"
        if full and not lim["supports_full_training"]:
            raise ApiError(400, f"Full training is not supported for {model}", param="training_type")
        epochs = body.get("n_epochs", 1)
        if not isinstance(epochs, int) or not 1 <= epochs <= lim["max_num_epochs"]:
            raise ApiError(
                400, f"n_epochs must be an integer from 1 to {lim['max_num_epochs']}", param="n_epochs"
            )
        rank = (body.get("training_type") or {}).get("lora_r")
        if rank is not None and rank > lim["lora_training"]["max_rank"]:
            raise ApiError(
                400, f"lora_r must be at most {lim['lora_training']['max_rank']}", param="training_type"
            )
        if body.get("early_stopping_enabled") and validation is None:
            raise ApiError(400, "Early stopping requires a validation file", param="early_stopping_enabled")
        now = self.clock.now()
        job = Job(
            f"ft-{uuid.uuid4()}",
            model,
            train,
            validation,
            body,
            now,
            last_tick=now,
            updated_at=now,
            parent=parent,
        )
        batch = body.get("batch_size", "max")
        batch = lim["lora_training"]["max_batch_size"] if batch == "max" else int(batch)
        job.steps_per_epoch = max(1, math.ceil(len(train.records) / batch))
        job.total_steps = job.steps_per_epoch * epochs
        self.jobs[job.id] = job
        self._event(job, "job_pending", "Fine-tune request created")
        return self._json(200, job.obj(with_events=False))

    def _event(self, job: Job, kind: str, message: str, level: str = "info", **extra: Any) -> None:
        event = {
            "object": "fine-tune-event",
            "created_at": _iso(self.clock.now()),
            "level": level,
            "message": message,
            "type": kind,
            "param_count": int(MODELS[job.model][0] * 1e9),
            "token_count": job.token_count,
            "total_steps": job.total_steps,
            "wandb_url": "",
            "step": job.step,
            "checkpoint_path": "",
            "model_path": "",
            "training_offset": 0,
            "hash": secrets.token_hex(8),
        }
        event.update(extra)
        job.events.append(event)
        job.updated_at = self.clock.now()

    def _advance(self, job: Job) -> None:
        now = self.clock.now()
        if job.status in ("completed", "cancelled", "error", "user_error") or job.id in self.held:
            return
        job.elapsed += max(0.0, now - job.last_tick)
        job.last_tick = now
        if job.status == "cancel_requested":
            if job.elapsed - job.phase_started >= 1.0:
                job.status = "cancelled"
                self._event(job, "job_stopped", "Fine-tune job cancelled")
            return
        t = job.elapsed
        if job.status == "pending" and t >= PHASES["pending"]:
            job.status = "queued"
        if job.status == "queued" and t >= PHASES["pending"] + PHASES["queued"]:
            job.status, job.started_at = "running", now
            self._event(job, "job_start", "Job started")
            self._event(job, "model_downloading", "Downloading model")
            self._event(job, "training_data_downloading", "Downloading training data")
            self._event(job, "training_start", "Training started")
        if job.status == "running":
            start = PHASES["pending"] + PHASES["queued"]
            done = min(job.total_steps, int((t - start) / self.step_seconds))
            epochs = max(1, job.total_steps // job.steps_per_epoch)
            every = max(1, job.total_steps // max(1, int(job.body.get("n_checkpoints") or 1)))
            per_step_tokens = job.training_file.tokens / job.steps_per_epoch
            while job.step < done:
                job.step += 1
                job.token_count = round(per_step_tokens * job.step)
                loss = round(2.2 * math.exp(-2.5 * job.step / job.total_steps) + 0.08, 4)
                job.metrics.append(
                    {
                        "global_step": float(job.step),
                        "train_loss": loss,
                        "learning_rate": float(job.body.get("learning_rate") or 1e-5),
                    }
                )
                if job.step % job.steps_per_epoch == 0:
                    self._event(
                        job, "epoch_complete", f"Epoch {job.step // job.steps_per_epoch}/{epochs} completed"
                    )
                if job.step % every == 0 or job.step == job.total_steps:
                    path = f"s3://anytune-emulator/{job.id}/checkpoint-{job.step}"
                    job.checkpoints.append(
                        {
                            "checkpoint_type": f"Intermediate checkpoint at step {job.step}",
                            "created_at": _iso(now),
                            "path": path,
                            "step": job.step,
                            "checkpoint": "adapter" if not job.full else "model",
                        }
                    )
                    self._event(
                        job, "checkpoint_save", f"Checkpoint saved at step {job.step}", checkpoint_path=path
                    )
            if job.step >= job.total_steps:
                self._event(job, "training_complete", "Training completed")
                job.status, job.phase_started = "compressing", t
                self._event(job, "model_compressing", "Compressing the model")
        if job.status == "compressing" and t - job.phase_started >= AFTER_TRAINING["compressing"]:
            job.status, job.phase_started = "uploading", t
            self._event(job, "model_uploading", "Uploading the model")
        if job.status == "uploading" and t - job.phase_started >= AFTER_TRAINING["uploading"]:
            job.status = "completed"
            self._event(job, "model_upload_complete", "Model uploaded", model_path=job.output_name)
            self._event(job, "job_complete", "Fine-tune job completed")

    async def _fine_tune(self, request: Any) -> Any:
        def run() -> Any:
            job = self._job_or_404(request.path_params["job_id"])
            self.clock.on_poll()
            self._advance(job)
            return self._json(200, job.obj(with_events=True))

        return self._handle(run)

    async def _cancel(self, request: Any) -> Any:
        def run() -> Any:
            job = self._job_or_404(request.path_params["job_id"])
            self._advance(job)
            if job.status in ("completed", "cancelled", "error", "user_error"):
                raise ApiError(400, f"Fine-tune job {job.id} is {job.status} and cannot be cancelled")
            if job.status != "cancel_requested":
                job.status, job.phase_started = "cancel_requested", job.elapsed
                self._event(job, "cancel_requested", "Cancellation requested")
            return self._json(200, job.obj(with_events=False))

        return self._handle(run)

    def _job_view(self, request: Any, render: Any) -> Any:
        """A job, brought up to the clock, answered as `render(job)`."""

        def run() -> Any:
            job = self._job_or_404(request.path_params["job_id"])
            self._advance(job)
            return self._json(200, render(job))

        return self._handle(run)

    async def _events(self, request: Any) -> Any:
        return self._job_view(request, lambda job: {"data": job.events})

    async def _checkpoints(self, request: Any) -> Any:
        return self._job_view(request, lambda job: {"data": job.checkpoints[::-1]})

    async def _metrics(self, request: Any) -> Any:
        low = float(request.query_params.get("global_step_from", 0))
        return self._job_view(
            request, lambda job: {"metrics": [m for m in job.metrics if m["global_step"] >= low]}
        )

    # --------------------------------------------------------------------------------------- download

    def archive(self, job: Job, kind: str) -> bytes:
        """A small .tar.gz standing in for the weights: the adapter config and a manifest."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            files = {
                "manifest.json": json.dumps(
                    {
                        "job": job.id,
                        "model": job.output_name,
                        "checkpoint": kind,
                        "base_model": job.model,
                        "steps": job.step,
                    }
                ),
                "adapter_config.json": json.dumps(
                    {
                        "base_model_name_or_path": job.model,
                        "peft_type": "LORA",
                        "r": (job.body.get("training_type") or {}).get("lora_r", 16),
                    }
                ),
            }
            for name, text in files.items():
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return gzip.compress(gzip.decompress(buffer.getvalue()), mtime=0)

    async def _download(self, request: Any) -> Any:
        from starlette.responses import Response

        def run() -> Any:
            q = request.query_params
            job = self._job_or_404(q.get("ft_id", ""))
            self._advance(job)
            if job.status != "completed":
                raise ApiError(
                    400, f"Fine-tune job {job.id} is {job.status}; only completed jobs can be downloaded"
                )
            kind = q.get("checkpoint") or ("model_output_path" if job.full else "merged")
            if kind not in ("merged", "adapter", "model_output_path"):
                raise ApiError(400, f"Unknown checkpoint type {kind!r}", param="checkpoint")
            data = self.archive(job, kind)
            headers = {"Accept-Ranges": "bytes"}
            wanted = request.headers.get("range", "")
            if wanted.startswith("bytes="):
                first, _, last = wanted[6:].partition("-")
                start, end = int(first or 0), int(last) if last else len(data) - 1
                end = min(end, len(data) - 1)
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                return Response(
                    data[start : end + 1],
                    status_code=206,
                    media_type="application/octet-stream",
                    headers=headers,
                )
            return Response(data, media_type="application/octet-stream", headers=headers)

        return self._handle(run)

    # ------------------------------------------------------------------------------ chat completions

    async def _chat(self, request: Any) -> Any:
        def run(body: dict[str, Any]) -> Any:
            model, messages = body.get("model"), body.get("messages") or []
            if model in MODELS:
                answer = base_answer(model)
            else:
                job = next(
                    (
                        j
                        for j in self.jobs.values()
                        if j.status == "completed" and model in (j.output_name, j.output_name + "-adapter")
                    ),
                    None,
                )
                if job is None:
                    raise ApiError(
                        404, f"Unable to access model {model}", code="model_not_available", param="model"
                    )
                answer = nearest_answer(job.training_file.records, messages)
            limit = body.get("max_tokens")
            finish = "stop"
            if limit is not None and len(answer.split(" ")) > limit:
                answer, finish = " ".join(answer.split(" ")[:limit]), "length"
            prompt_tokens = sum(math.ceil(len(content_text(m.get("content"))) / 4) for m in messages)
            completion_tokens = math.ceil(len(answer) / 4)
            return self._json(
                200,
                {
                    "id": secrets.token_hex(12),
                    "object": "chat.completion",
                    "created": self._now(),
                    "model": model,
                    "prompt": [],
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": finish,
                            "message": {"role": "assistant", "content": answer},
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                },
            )

        return await self._with_body(request, run)
