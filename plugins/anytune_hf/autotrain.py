"""AutoTrain mode (`provider_options.hf.mode: autotrain`): the job sent to an AutoTrain Advanced server.

AutoTrain's server creates a private Docker Space `{user}/autotrain-{project}` on the hardware asked for,
trains there from a dataset repo, pushes the model to `{user}/{project}` and pauses the Space. It has no
status route: the status is read from the Space's runtime stage (BUILDING, RUNNING, PAUSED, *_ERROR) and
success is a paused Space whose model repo exists. Its API client disagrees with its own server (parameters
dropped, a stop route that does not exist), so the calls here are plain HTTP, to the routes the server has.
AutoTrain has had no release since 2025-01-21 (0.8.36): docs/providers/hf.md says what that means.

The request, what the server checks of it, and the Space's stages are those of autotrain-advanced 0.8.36
(`app/api_routes.py`, `backends/spaces.py`); `emulated_project` is what the emulator runs for a project.
"""

from __future__ import annotations

import json
import os
from typing import Any

from anytune.plugin import (
    BackendError,
    ConversionError,
    DataBundle,
    DataFormat,
    DatasetRef,
    JobSpec,
    JobStatus,
    Method,
    ModelArtifact,
    PreparedData,
    PreparedFile,
    PreparedWriter,
    Problem,
    ProviderRef,
    RecordValidator,
    Snapshot,
    SubmitRequest,
    cache_dir,
    convert_record,
    count_texts,
    counter_for_family,
    create_once,
    family_of,
    http_failure,
    prepare_splits,
    retry_call,
)
from anytune_hf.names import job_label

# The functions below take the Hugging Face backend as `backend: Any` (its hub client, token, namespace,
# staging and downloads): it is not imported here, since it is the backend that dispatches to this module.

DEFAULT_URL = "https://autotrain-projects-autotrain-advanced.hf.space"
TASKS = {Method.SFT: "llm:sft", Method.DPO: "llm:dpo", Method.REWARD: "llm:reward"}
HARDWARE = (
    "spaces-a10g-large",
    "spaces-a10g-small",
    "spaces-a100-large",
    "spaces-t4-medium",
    "spaces-t4-small",
    "spaces-cpu-upgrade",
    "spaces-cpu-basic",
    "spaces-l4x1",
    "spaces-l4x4",
    "spaces-l40sx1",
    "spaces-l40sx4",
    "spaces-l40sx8",
    "spaces-a10g-largex2",
    "spaces-a10g-largex4",
)
STAGES = {
    "BUILDING": JobStatus.QUEUED,
    "APP_STARTING": JobStatus.QUEUED,
    "RUNNING": JobStatus.RUNNING,
    "RUNNING_BUILDING": JobStatus.RUNNING,
    "RUNNING_APP_STARTING": JobStatus.RUNNING,
    "BUILD_ERROR": JobStatus.FAILED,
    "RUNTIME_ERROR": JobStatus.FAILED,
    "CONFIG_ERROR": JobStatus.FAILED,
    "NO_APP_FILE": JobStatus.FAILED,
    "PAUSED": JobStatus.SUCCEEDED,  # if the model repo exists; a paused Space without one failed or was stopped
    "STOPPED": JobStatus.CANCELLED,
    "DELETING": JobStatus.CANCELLED,
}
MAPPINGS = {
    "llm:sft": {"text_column": "messages"},
    "llm:dpo": {"prompt_text_column": "prompt", "text_column": "chosen", "rejected_text_column": "rejected"},
    "llm:reward": {"text_column": "chosen", "rejected_text_column": "rejected"},
}


def _task(spec: JobSpec) -> str | None:
    return TASKS.get(spec.method_type)


def _hardware(spec: JobSpec) -> str:
    flavor = str(spec.options_for("hf").get("flavor") or "a10g-large")
    return flavor if flavor.startswith("spaces-") else f"spaces-{flavor}"


def check_spec(spec: JobSpec) -> list[Problem]:
    problems = []
    if _task(spec) is None:
        problems.append(
            Problem(
                "error", "method", f"AutoTrain mode runs {', '.join(m.value for m in TASKS)}; use Jobs mode"
            )
        )
    if spec.adapter.type not in ("lora", "qlora", "full"):
        problems.append(Problem("error", "adapter.type", "AutoTrain trains lora, qlora (int4) or full"))
    if _hardware(spec) not in HARDWARE:
        problems.append(
            Problem("error", "provider_options.hf.flavor", f"AutoTrain takes {', '.join(HARDWARE)}")
        )
    return problems


# ------------------------------------------------------------------------------------------------- data


def to_autotrain(record: dict[str, Any], fmt: DataFormat, task: str) -> dict[str, Any]:
    """One record in the columns of `task`: chat `messages` for SFT, text prompt / chosen / rejected pairs."""
    if task == "llm:sft":
        if fmt is DataFormat.CHAT:
            return {"messages": record["messages"]}
        return {"messages": convert_record(record, fmt, DataFormat.CHAT)["messages"]}
    pair = convert_record(record, fmt, DataFormat.PREFERENCE) if fmt is not DataFormat.PREFERENCE else record
    texts = {k: _text(pair[k]) for k in ("prompt", "chosen", "rejected")}
    return (
        texts
        if task == "llm:dpo"
        else {"chosen": texts["prompt"] + texts["chosen"], "rejected": texts["prompt"] + texts["rejected"]}
    )


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(str(m.get("content", "")) for m in value if isinstance(m, dict))
    raise ConversionError(f"AutoTrain takes text or messages, not {type(value).__name__}")


def prepare(spec: JobSpec, data: DataBundle) -> PreparedData:
    task = _task(spec) or "llm:sft"
    counter, render, template = counter_for_family(family_of(spec.model_for("hf")))

    def split(ref: DatasetRef, name: str) -> tuple[PreparedFile | None, int, int, list[Problem]]:
        problems: list[Problem] = []
        tokens = examples = 0
        texts: list[str] = []
        with PreparedWriter(cache_dir("hf", "autotrain"), format=task) as writer:
            for line, record in RecordValidator(ref.path, format=ref.format, collect_stats=False):
                try:
                    row = to_autotrain(record, ref.format, task)
                except (ConversionError, KeyError) as exc:
                    problems.append(
                        Problem("error", f"data.{name}", f"AutoTrain {task}: {exc}", file=ref.path, line=line)
                    )
                    continue
                writer.write(row)
                examples += 1
                texts.extend(
                    [render(row["messages"])]
                    if "messages" in row
                    else [row.get("prompt", "") + row["chosen"], row.get("prompt", "") + row["rejected"]]
                )
                if len(texts) >= 4096:
                    tokens += count_texts(texts, counter).tokens
                    texts.clear()
            tokens += count_texts(texts, counter).tokens
            written = None if problems else writer.finish()
        return written, tokens, examples, problems

    return prepare_splits(
        "hf", data, split, counter=counter, notes=[f"rendered with the {template} template"]
    )


# ------------------------------------------------------------------------------------------------ calls


def _url(spec: JobSpec | None, ref: ProviderRef | None = None) -> str:
    if ref is not None and ref.data.get("autotrain_url"):
        return str(ref.data["autotrain_url"])
    named = spec.options_for("hf").get("autotrain_url") if spec is not None else None
    return str(named or os.environ.get("AUTOTRAIN_API") or DEFAULT_URL).rstrip("/")


def _post(backend: Any, url: str, body: dict[str, Any]) -> dict[str, Any]:
    """A POST to the AutoTrain server (FastAPI: errors as {"detail": ...}), with the Hub token."""
    from huggingface_hub.utils import get_session

    response = get_session().post(
        url, json=body, headers={"Authorization": f"Bearer {backend.token()}"}, timeout=60
    )
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:300]
        message = detail if isinstance(detail, str) else json.dumps(detail)[:500]
        raise http_failure("AutoTrain", response.status_code, message, dict(response.headers)).error
    return dict(response.json())


def project_name(spec: JobSpec, job_id: str) -> str:
    return str(spec.options_for("hf").get("project_name") or f"anytune-{job_label(job_id)[:12]}")


def _runtime(backend: Any, space: str) -> Any | None:
    from anytune_hf.errors import classify

    api = backend.api()
    try:
        return retry_call(lambda: api.get_space_runtime(space), classify, backend.policy)
    except BackendError as exc:
        if exc.status in (401, 404):
            return None
        raise


def find_existing(backend: Any, request: SubmitRequest) -> ProviderRef | None:
    spec = request.spec
    user = backend.namespace(spec)
    name = project_name(spec, request.job_id)
    space = f"{user}/autotrain-{name}"
    if _runtime(backend, space) is None:
        return None
    return _ref(spec, space, user, name)


def _ref(spec: JobSpec, space: str, user: str, name: str) -> ProviderRef:
    return ProviderRef(
        provider="hf",
        id=space,
        data={
            "mode": "autotrain",
            "model_repo": f"{user}/{name}",
            "autotrain_url": _url(spec),
            "flavor": _hardware(spec).removeprefix("spaces-"),
            "base_model": spec.model_for("hf"),
            "adapter_type": spec.adapter.type,
        },
    )


def params(spec: JobSpec) -> dict[str, Any]:
    hp = spec.hyperparameters
    out: dict[str, Any] = {
        "epochs": hp.epochs or 1,
        "lr": hp.learning_rate or 2e-4,
        "batch_size": hp.batch_size or 2,
        "gradient_accumulation": hp.gradient_accumulation_steps or 4,
        "block_size": hp.max_seq_length or 1024,
        "model_max_length": hp.max_seq_length or 2048,
        "chat_template": "tokenizer",
        "peft": spec.adapter.type != "full",
        "quantization": "int4" if spec.adapter.type == "qlora" else None,
        "merge_adapter": False,
    }
    if spec.adapter.type != "full":
        adapter = spec.adapter
        out.update(
            lora_r=getattr(adapter, "r", 16),
            lora_alpha=getattr(adapter, "alpha", 32) or 32,
            lora_dropout=getattr(adapter, "dropout", 0.05) or 0.05,
            target_modules="all-linear",
        )
    if hp.warmup_ratio is not None:
        out["warmup_ratio"] = hp.warmup_ratio
    if spec.method_type is Method.DPO:
        out["dpo_beta"] = getattr(spec.method, "beta", None) or 0.1
    return out


def submit(backend: Any, request: SubmitRequest) -> ProviderRef:
    from anytune_hf.errors import classify

    spec = request.spec
    existing = find_existing(backend, request)
    if existing is not None:
        return existing
    user = backend.namespace(spec)
    name = project_name(spec, request.job_id)
    task = _task(spec) or "llm:sft"
    dataset = f"{user}/{name}-data"
    files: dict[str, bytes | str] = {f"{split}.jsonl": f.path for split, f in request.prepared.files.items()}
    backend.stage(backend.api(), dataset, files)
    body = {
        "project_name": name,
        "task": task,
        "base_model": spec.model_for("hf"),
        "hardware": _hardware(spec),
        "username": user,
        "hub_dataset": dataset,
        "train_split": "train",
        "valid_split": "validation" if "validation" in request.prepared.files else None,
        "column_mapping": MAPPINGS[task],
        "params": params(spec),
    }
    url = _url(spec)
    answer = create_once(
        lambda: _post(backend, f"{url}/api/create_project", body),
        lambda: (
            {"job_id": f"{user}/autotrain-{name}"} if _runtime(backend, f"{user}/autotrain-{name}") else None
        ),
        classify,
        backend.policy,
    )
    return _ref(spec, str(answer["job_id"]), user, name)


def _model_exists(backend: Any, repo: str) -> bool:
    from anytune_hf.errors import classify

    api = backend.api()
    return bool(retry_call(lambda: api.repo_exists(repo), classify, backend.policy))


def poll(backend: Any, ref: ProviderRef, cursor: str | None) -> Snapshot:
    runtime = _runtime(backend, ref.id)
    if runtime is None:
        return Snapshot(
            status=JobStatus.CANCELLED, provider_status="DELETED", error=f"Space {ref.id} is gone"
        )
    stage = str(runtime.stage)
    status = STAGES.get(stage, JobStatus.RUNNING)
    error = None
    if stage == "PAUSED" and not _model_exists(backend, str(ref.data["model_repo"])):
        status = JobStatus.FAILED
        error = (
            "AutoTrain paused the Space without pushing a model (stopped, or training failed: see its logs)"
        )
    elif status is JobStatus.FAILED:
        error = (runtime.raw or {}).get("errorMessage") or f"the Space reports {stage}"
    return Snapshot(
        status=status,
        provider_status=stage,
        progress=1.0 if status is JobStatus.SUCCEEDED else None,
        error=error,
        cursor=cursor,
        poll_after=30.0 if status.active else None,
    )


def cancel(backend: Any, ref: ProviderRef) -> None:
    answer = _post(backend, f"{_url(None, ref)}/api/stop_training", {"jid": ref.id})
    if not answer.get("success", True):  # the server answers 200 even when it could not stop
        raise BackendError(f"AutoTrain could not stop {ref.id}: {answer.get('message')}")


def result(backend: Any, ref: ProviderRef) -> ModelArtifact:
    return backend.model_from_repo(  # type: ignore[no-any-return]
        str(ref.data["model_repo"]),
        {"space": ref.id, "mode": "autotrain"},
        base_model=ref.data.get("base_model"),
        adapter_type=ref.data.get("adapter_type"),
    )


# --------------------------------------------------------------------------------------------- emulator


def emulated_project(body: dict[str, Any], user: str) -> tuple[str | None, dict[str, Any]]:
    """What the emulator checks of a create_project request (as the 0.8.36 server does), and the job that
    trains it: anytune's runner, with the request built from the project's parameters."""
    task = body.get("task")
    if task not in MAPPINGS:
        return f"task {task!r} is not one the emulator runs ({', '.join(MAPPINGS)})", {}
    if body.get("hardware") not in HARDWARE:
        return f"hardware {body.get('hardware')!r} is not a Spaces hardware", {}
    mapping = body.get("column_mapping") or {}
    missing = [k for k in MAPPINGS[task] if k not in mapping]
    if missing:
        return f"column_mapping needs {', '.join(missing)} for {task}", {}
    for key in ("project_name", "base_model", "hub_dataset"):
        if not body.get(key):
            return f"{key} is required", {}
    p = body.get("params") or {}
    method = {"llm:sft": "sft", "llm:dpo": "dpo", "llm:reward": "reward"}[task]
    adapter: dict[str, Any] = {"type": "full"}
    if p.get("peft"):
        adapter = {"type": "qlora" if p.get("quantization") == "int4" else "lora", "r": p.get("lora_r", 16)}
    spec = {
        "provider": "local",
        "base_model": body["base_model"],
        "method": {"type": method},
        "adapter": adapter,
        "data": {"train": "train.jsonl"},
        "hyperparameters": {
            "epochs": p.get("epochs", 1),
            "learning_rate": p.get("lr", 3e-5),
            "batch_size": p.get("batch_size", 2),
            "gradient_accumulation_steps": p.get("gradient_accumulation", 4),
        },
    }
    fmt = "chat" if task == "llm:sft" else "preference"
    data = {"train": {"path": "train.jsonl", "format": fmt, "rows": 0, "fingerprint": "autotrain"}}
    if body.get("valid_split"):
        data["validation"] = {**data["train"], "path": f"{body['valid_split']}.jsonl"}
    request = {"job_id": body["project_name"], "spec": spec, "prepared": {"provider": "local", "data": data}}
    job_spec = {
        "dockerImage": "huggingface/autotrain-advanced:latest",
        "command": ["python", "-m", "anytune_hf.runner"],
        "environment": {
            "ANYTUNE_HF_JOB": body["project_name"],
            "ANYTUNE_HF_DATA_REPO": body["hub_dataset"],
            "ANYTUNE_HF_REQUEST_JSON": json.dumps(request),
            "ANYTUNE_HF_OUTPUT_REPO": f"{user}/{body['project_name']}",
        },
        "flavor": str(body["hardware"]).removeprefix("spaces-"),
        "timeoutSeconds": 7 * 86400,
    }
    return None, job_spec
