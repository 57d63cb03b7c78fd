"""Hugging Face through `huggingface_hub` against the plugin's emulator of the Hub, Jobs and AutoTrain, whose
jobs run anytune's runner (and so the local worker) for real on this machine: a Jobs-mode LoRA job to
succeeded with loss events from the log stream, the adapter downloaded from the emulated Hub, registered and
scored against the base model; a timeout; cancel; a dropped create; an AutoTrain project to completed; and
quotes that choose a flavor from the memory model, or refuse with the figures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anytune.client import Client
from anytune.jobfile import spec_from_dict
from anytune.jobs import EventKind, JobStatus
from anytune.testing import emulated
from anytune_hf.backend import LABEL, job_label
from tests.conftest import chat_splits

TOKEN = "hf_emulator_0123456789abcdefghijklmn"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The emulator, with the hub client in this process online (the suite sets HF_HUB_OFFLINE=1 for the
    local backend; huggingface_hub reads it at import)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("ANYTUNE_POLL_INTERVAL", "0.2")
    with emulated("hf", api_key=TOKEN, tick=0.0, step_seconds=0.0) as emulator:
        yield emulator


def spec(data: dict[str, str], model: Path | str, **extra: Any) -> Any:
    raw: dict[str, Any] = {
        "name": "hf-test",
        "base_model": str(model),
        "provider": "hf",
        "data": data,
        "adapter": {"type": "lora", "r": 8},
        "hyperparameters": {"epochs": 3, "learning_rate": 3e-3, "batch_size": 8},
        "provider_options": {"hf": {"flavor": "cpu-upgrade"}},
    }
    for key, value in extra.items():
        if key == "hf":
            raw["provider_options"]["hf"].update(value)
        else:
            raw[key] = value
    return spec_from_dict(raw)


@pytest.mark.slow
def test_jobs_mode_lora_runs_streams_loss_pushes_registers_and_is_evaluated(hub, tmp_path, tiny_model):
    client = Client()
    data = chat_splits(tmp_path, seed=3)
    result = client.run(spec(data, tiny_model, evaluation={"metrics": ["token_f1"], "limit": 10}), interval=0)
    job = result.job
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.provider_status == "COMPLETED"
    [remote] = hub.jobs.values()
    assert remote.spec["labels"][LABEL] == job_label(job.id)
    assert remote.spec["flavor"] == "cpu-upgrade"
    assert remote.spec["secrets"] == {"HF_TOKEN": TOKEN}  # the token travels as a secret...
    assert TOKEN not in json.dumps(remote.spec["environment"])  # ...never as a plain value
    events = client.registry.events(job.id)
    losses = [e.data["loss"] for e in events if e.kind is EventKind.METRIC and "loss" in e.data]
    assert len(losses) >= 2 and losses[-1] < losses[0]  # read from the job's log stream
    # the adapter went to a private model repo on the (emulated) Hub and came back from it
    repo = job.provider_ref["data"]["output_repo"]
    stored = hub.repos[("model", repo)]
    _, files = stored.files()
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "anytune_result.json"} <= set(
        files
    )
    assert stored.private and job.id.encode() in files["README.md"]  # lineage in the model card
    assert job.artifact is not None and job.artifact.model_id.startswith(f"{repo}@")
    assert Path(job.artifact.path, "adapter_model.safetensors").exists()
    assert client.registry.get_model("hf-test").version == 1
    # evaluated against the base model, like a local job: both answered, through the local generation
    assert result.evaluation is not None and len(result.evaluation.subjects) == 2
    assert all("token_f1" in s.metrics for s in result.evaluation.subjects)
    # the data went to the private dataset repo, under its content address, once
    data_repo = hub.repos[("dataset", "alice/anytune-data")]
    _, staged = data_repo.files()
    assert any(name.startswith("data/") for name in staged) and f"jobs/{job.id}/request.json" in staged
