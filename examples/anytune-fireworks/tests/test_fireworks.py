"""The Fireworks backend through anytune's Client and CLI, against the plugin's emulator."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from anytune_fireworks.backend import FireworksBackend, job_name

from anytune import Client, JobSpec
from anytune.plugin import CapabilityError, DataError, JobStatus, ProviderRef

LLAMA = "accounts/fireworks/models/llama-v3p1-8b-instruct"
ACCOUNT = "anytune-emulated"


def chats(n: int, offset: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"Reverse: w{i} o r d"},
                {"role": "assistant", "content": f"Reversed: d r o w{i}"},
            ]
        }
        for i in range(offset, offset + n)
    ]


def write(path: Path, rows: list[Any]) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def spec(tmp_path: Path, **extra: Any) -> Any:
    raw = {
        "name": "fw-test",
        "base_model": LLAMA,
        "provider": "fireworks",
        "suffix": "rev",
        "adapter": {"type": "lora", "r": 16},
        "hyperparameters": {"epochs": 2, "batch_size": 8, "learning_rate": 1e-4},
        "data": {
            "train": write(tmp_path / "train.jsonl", chats(24)),
            "test": write(tmp_path / "test.jsonl", chats(6)),
        },
        "evaluation": {"metrics": ["exact_match"], "limit": 6},
    }
    raw.update(extra)
    return JobSpec.model_validate(raw)


def test_sft_to_succeeded_with_losses_registered_and_evaluated(emulator, tmp_path):
    client = Client()
    result = client.run(spec(tmp_path), interval=0)
    job = result.job
    assert job.status is JobStatus.SUCCEEDED and job.provider_status == "JOB_STATE_COMPLETED"
    remote = emulator.jobs[f"accounts/{ACCOUNT}/supervisedFineTuningJobs/{job_name(job.id)}"]
    assert (
        remote.body["loraRank"] == 16 and remote.body["epochs"] == 2 and remote.body["learningRate"] == 1e-4
    )
    assert remote.body["outputModel"].startswith(f"accounts/{ACCOUNT}/models/rev-anytune-")
    losses = [e.data["loss"] for e in client.events(job.id) if e.kind == "metric"]
    assert len(losses) == remote.total_steps == 6 and losses[-1] < losses[0]
    assert job.artifact is not None and job.artifact.model_id == remote.body["outputModel"]
    assert result.evaluation is not None
    scores = {s.subject: s.metrics["exact_match"] for s in result.evaluation.subjects}
    assert sorted(scores.values()) == [
        0.0,
        1.0,
    ]  # the base model misses every answer, the fine-tune learned them
    quoted = job.cost.quoted if job.cost else None
    assert quoted is not None and quoted > 0  # $0.50 per 1M training tokens x 2 epochs


def test_dpo_job_with_beta(emulator, tmp_path):
    pairs = [
        {"prompt": f"Say something kind about {i}", "chosen": f"{i} is lovely.", "rejected": f"{i} is bad."}
        for i in range(12)
    ]
    client = Client()
    job = client.submit(
        spec(
            tmp_path,
            method={"type": "dpo", "beta": 0.2},
            data={"train": write(tmp_path / "p.jsonl", pairs)},
            evaluation=None,
        )
    )
    job = client.follow(job.id, interval=0)
    assert job.status is JobStatus.SUCCEEDED
    remote = emulator.jobs[f"accounts/{ACCOUNT}/dpoJobs/{job_name(job.id)}"]
    assert remote.body["lossConfig"] == {"method": "DPO", "dpo": {"beta": 0.2}}
    assert remote.body["trainingConfig"]["baseModel"] == LLAMA


def test_the_same_data_is_uploaded_once(emulator, tmp_path):
    client = Client()
    first = client.submit(spec(tmp_path, evaluation=None))
    second = client.submit(spec(tmp_path, evaluation=None, name="again"))
    assert first.provider_job_id != second.provider_job_id and len(emulator.datasets) == 1
    uploads = [e for e in emulator.recorder.exchanges if e.path.endswith(":upload")]
    assert len(uploads) == 1


def test_validation_data_becomes_the_evaluation_dataset(emulator, tmp_path):
    client = Client()
    data = {
        "train": write(tmp_path / "t.jsonl", chats(20)),
        "validation": write(tmp_path / "v.jsonl", chats(5, 100)),
    }
    job = client.submit(spec(tmp_path, data=data, evaluation=None))
    remote = emulator.jobs[f"accounts/{ACCOUNT}/supervisedFineTuningJobs/{job.provider_job_id}"]
    assert remote.body["evaluationDataset"] != remote.body["dataset"]
    assert len(emulator.datasets[remote.body["evaluationDataset"]].records) == 5


def test_fireworks_rules_are_refused_before_upload_with_the_line(emulator, tmp_path):
    rows: list[Any] = chats(10)
    rows[4] = {
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "system", "content": "b"},
            {"role": "assistant", "content": "c"},
        ]
    }
    rows[7] = {
        "messages": [
            {"role": "user", "content": "a question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "system", "content": "a late instruction"},
        ]
    }
    train = write(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as info:
        Client().submit(spec(tmp_path, data={"train": train}, evaluation=None))
    said = "\n".join(info.value.details)
    assert f"{train}:5: a system message after the first" in said
    assert f"{train}:8: a system message after the first" in said
    assert not emulator.datasets and not emulator.jobs


def test_limits_checked_before_anything_is_sent(emulator, tmp_path):
    client = Client()
    with pytest.raises(CapabilityError) as info:
        client.submit(
            spec(
                tmp_path, adapter={"type": "lora", "r": 12}, hyperparameters={"epochs": 2.5}, evaluation=None
            )
        )
    said = "\n".join(info.value.details)
    assert "adapter.r" in said and "power of two" in said and "whole number of epochs" in said
    with pytest.raises(CapabilityError, match="cannot train adapter 'full'"):
        client.submit(spec(tmp_path, adapter={"type": "full"}, evaluation=None))
    assert not [e for e in emulator.recorder.exchanges if e.method != "GET"]


def test_cancel_and_delete(emulator, tmp_path):
    client = Client()
    job = client.submit(spec(tmp_path, hyperparameters={"epochs": 8}, evaluation=None))
    job = client.follow(client.cancel(job.id).id, interval=0)
    assert job.status is JobStatus.CANCELLED and job.provider_status == "JOB_STATE_CANCELLED"
    backend = FireworksBackend()
    assert [j["state"] for j in backend.list_jobs(ACCOUNT)] == ["JOB_STATE_CANCELLED"]
    backend.delete(ProviderRef.model_validate(job.provider_ref))
    assert backend.list_jobs(ACCOUNT) == []


def test_listing_follows_pages(emulator, tmp_path):
    client = Client()
    for i in range(3):
        client.submit(spec(tmp_path, name=f"page-{i}", evaluation=None))
    backend = FireworksBackend()
    original = backend._read
    sizes = []

    def small_pages(method: str, path: str, **kwargs: Any) -> Any:
        if method == "GET" and path.endswith("supervisedFineTuningJobs"):
            kwargs["params"] = {**kwargs["params"], "pageSize": 2}
            page = original(method, path, **kwargs)
            sizes.append(len(page["supervisedFineTuningJobs"]))
            return page
        return original(method, path, **kwargs)

    backend._read = small_pages  # type: ignore[method-assign]
    assert len(backend.list_jobs(ACCOUNT)) == 3 and sizes == [2, 1]


def test_a_failed_job_keeps_fireworks_words(emulator, tmp_path):
    client = Client()
    job = client.submit(spec(tmp_path, evaluation=None))
    remote = emulator.jobs[f"accounts/{ACCOUNT}/supervisedFineTuningJobs/{job.provider_job_id}"]
    remote.message = "RESOURCE_EXHAUSTED: no capacity for this model"
    emulator.hold(job.provider_job_id, "JOB_STATE_FAILED")
    job = client.follow(job.id, interval=0)
    assert job.status is JobStatus.FAILED and job.error == "RESOURCE_EXHAUSTED: no capacity for this model"


def test_no_key_or_account_is_a_credentials_error(tmp_path, monkeypatch):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("FIREWORKS_")}
    job = tmp_path / "job.yaml"
    train = write(tmp_path / "t.jsonl", chats(5))
    job.write_text(
        json.dumps({"name": "fw", "base_model": LLAMA, "provider": "fireworks", "data": {"train": train}})
    )
    run = subprocess.run(
        [sys.executable, "-m", "anytune", "run", str(job)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    said = " ".join((run.stdout + run.stderr).split())
    assert run.returncode == 2, said
    assert "set FIREWORKS_API_KEY" in said and "set FIREWORKS_ACCOUNT_ID" in said and "Traceback" not in said


def test_anywhere_example_runs_on_the_emulator_with_only_the_provider_flag(tmp_path):
    """`anytune emulate fireworks` and `anytune run examples/anywhere.yaml --provider fireworks`, as a user
    would type them (subprocesses)."""
    import subprocess
    import sys
    import time

    from anytune.testing import free_port

    example = Path(__file__).resolve().parents[2] / "anywhere.yaml"
    port = free_port()
    env = {
        **os.environ,
        "ANYTUNE_HOME": str(tmp_path / "home"),
        "COLUMNS": "200",
        "ANYTUNE_POLL_INTERVAL": "0.2",
        "FIREWORKS_BASE_URL": f"http://127.0.0.1:{port}",
        "FIREWORKS_API_KEY": "fw-emulator-cli-0123456789",
        "FIREWORKS_ACCOUNT_ID": ACCOUNT,
    }
    command = [sys.executable, "-m", "anytune", "emulate", "fireworks", "--port", str(port), "--speed", "60"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = server.stdout.readline() if server.stdout else ""
        assert "emulator on" in first, first
        time.sleep(0.3)
        run = subprocess.run(
            [sys.executable, "-m", "anytune", "run", str(example), "--provider", "fireworks"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "succeeded in" in run.stdout and "held-out evaluation" in run.stdout
    assert "model registered as reverse-letters-anywhere@1" in run.stdout


SPEC = Path(__file__).with_name("fireworks-openapi.yaml")  # Fireworks' Gateway REST API v5.10, assembled


def _schemas() -> dict[str, Any]:
    import yaml

    return yaml.safe_load(SPEC.read_text())["components"]["schemas"]


def test_requests_carry_no_deprecated_or_removed_field_and_answers_match_the_reference(emulator, tmp_path):
    """The backend sent gradientAccumulationSteps (Training V2 refuses it), region (gone from v5.10) and
    earlyStop (deprecated); `:upload` answered `{"filenameToSignedUrls": {}}`, not the file's object."""
    import jsonschema

    schemas = _schemas()
    job_fields = schemas["gatewaySupervisedFineTuningJob"]["properties"]
    retired = {k for k, v in job_fields.items() if "Deprecated" in str(v.get("description", ""))}
    assert {"gradientAccumulationSteps", "earlyStop", "batchSize"} <= retired
    asked = spec(
        tmp_path,
        data={
            "train": write(tmp_path / "train.jsonl", chats(24)),
            "validation": write(tmp_path / "val.jsonl", chats(6, offset=40)),
        },
        evaluation=None,
        hyperparameters={
            "epochs": 2,
            "batch_size": 8,
            "gradient_accumulation_steps": 2,
            "early_stopping": {"patience": 2},
        },
        provider_options={"fireworks": {"region": "US_IOWA_1", "early_stop": True}},
    )
    client = Client()
    warnings = " ".join(client.preflight(asked).warnings)
    assert "batchSizeSamples = batch_size x 2" in warnings and "no longer takes a region" in warnings
    assert "does not stop early" in warnings
    job = client.follow(client.submit(asked).id, interval=0)
    assert job.status is JobStatus.SUCCEEDED

    exchanges = emulator.recorder.exchanges
    [create] = [json.loads(e.request_body) for e in exchanges if e.path.endswith("/supervisedFineTuningJobs")]
    assert set(create) <= set(job_fields) and not set(create) & retired, create
    assert create["batchSizeSamples"] == 16  # the accumulation folded into the batch, as V2 counts it
    datasets = [
        json.loads(e.request_body) for e in exchanges if e.method == "POST" and e.path.endswith("/datasets")
    ]
    body_fields = schemas["GatewayCreateDatasetBody"]["properties"]
    assert datasets and all(set(d) <= set(body_fields) for d in datasets)
    uploads = [e for e in exchanges if e.path.endswith(":upload")]
    upload_schema = schemas["FileUploadResponse"]
    for e in uploads:
        answer = json.loads(e.response_body)
        jsonschema.validate(answer, upload_schema)
        assert answer["object"] == "file" and answer["bytes"] > 0 and answer["filename"].endswith(".jsonl")
    reads = [json.loads(e.response_body) for e in exchanges if e.method == "GET" and "/datasets/" in e.path]
    assert reads and {r.get("format") for r in reads if r.get("state") == "READY"} == {"CHAT"}


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [("region", "US_IOWA_1", 'unknown field "region"'), ("gradientAccumulationSteps", 2, "Training V2")],
)
def test_the_emulator_refuses_what_fireworks_no_longer_takes(emulator, tmp_path, field, value, says):
    import httpx

    backend = FireworksBackend()
    job = Client().submit(spec(tmp_path))  # a READY dataset to name
    dataset = json.loads(
        next(
            e.request_body
            for e in emulator.recorder.exchanges
            if e.path.endswith("/supervisedFineTuningJobs")
        )
    )["dataset"]
    answer = httpx.post(
        f"{os.environ['FIREWORKS_BASE_URL']}/v1/accounts/{ACCOUNT}/supervisedFineTuningJobs",
        headers={"Authorization": f"Bearer {os.environ['FIREWORKS_API_KEY']}"},
        json={"dataset": dataset, "baseModel": LLAMA, field: value},
    )
    assert answer.status_code == 400 and says in answer.json()["message"], answer.text
    assert backend and job
