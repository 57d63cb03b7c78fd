"""The OpenAI backend, driving the real `openai` SDK against the emulator on 127.0.0.1."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from anytune.client import Client
from anytune.cost.catalog import load_catalog as load_prices
from anytune.errors import BackendError, CapabilityError, DataError
from anytune.jobfile import spec_from_dict
from anytune.jobs import JobStatus
from anytune.spec import JobSpec
from anytune_openai.emulator import OpenAIEmulator
from tests.conftest import (
    chat_splits,
    cli_env,
    emulated,
    emulator_cli,
    preference_rows,
    reversal_rows,
    run_anytune,
    write_jsonl,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

KEY = "sk-emulator-test-0123456789abcdef"


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIEmulator]:
    with emulated("openai", api_key=KEY, tick=3.0) as emu:
        monkeypatch.setenv("ANYTUNE_TODAY", "2026-11-28")
        yield emu


@pytest.fixture
def chat_data(tmp_path: Path) -> dict[str, str]:
    return chat_splits(tmp_path, seed=21)


def openai_spec(data: dict[str, str], **extra) -> JobSpec:
    return spec_from_dict(
        {
            "name": "oa-test",
            "base_model": "gpt-4o-mini",
            "provider": "openai",
            "data": data,
            "hyperparameters": {"epochs": 2, "batch_size": 8},
            "suffix": "rev",
            **extra,
        }
    )


def fine_tuning_jobs(emu: OpenAIEmulator) -> list:
    return list(emu.jobs.values())


def test_sft_to_succeeded_with_artifact_cost_and_events(emulator, chat_data):
    client = Client()
    job = client.follow(client.submit(openai_spec(chat_data)).id, interval=0)
    assert job.status is JobStatus.SUCCEEDED and job.provider_status == "succeeded"
    [remote] = fine_tuning_jobs(emulator)
    assert job.provider_job_id == remote.id
    assert remote.metadata == {"anytune_job_id": job.id}
    assert remote.method == {
        "type": "supervised",
        "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 8, "learning_rate_multiplier": 2.0}},
    }
    assert job.artifact.kind == "provider_model" and job.artifact.model_id == remote.fine_tuned_model
    assert job.artifact.model_id.startswith("ft:gpt-4o-mini-2024-07-18:anytune-emulator:rev:")
    assert [c["step"] for c in job.artifact.metadata["checkpoints"]] == [4, 8]
    # actual cost = trained tokens x the catalog price ($3.00 / 1M for gpt-4o-mini), beside the quote
    entry = load_prices().price("openai", model="gpt-4o-mini-2024-07-18", method="sft")
    assert entry is not None and entry.price == 3.0
    assert job.cost.trained_tokens == remote.trained_tokens > 0
    assert job.cost.actual == pytest.approx(remote.trained_tokens * entry.price / 1e6)
    assert job.cost.quoted is not None and job.cost.difference == pytest.approx(
        job.cost.actual - job.cost.quoted
    )
    steps = [e.data["step"] for e in client.registry.events(job.id, kind="metric")]
    assert steps == list(range(1, 9))  # every metric event once, in order
    [model] = client.registry.models_for_job(job.id)
    assert model.model_id == remote.fine_tuned_model and model.base_model_retires is not None
    # the SFT training file went up in OpenAI's chat format
    uploaded = emulator.files[remote.training_file]
    assert uploaded.filename.startswith("anytune-") and b'"messages"' in uploaded.data


def test_dpo_from_trl_preference_data(emulator, tmp_path):
    rows = preference_rows()
    data = {"train": str(write_jsonl(tmp_path / "pref.jsonl", rows))}
    client = Client()
    spec = openai_spec(data, method={"type": "dpo", "beta": 0.2})
    job = client.follow(client.submit(spec).id, interval=0)
    assert job.status is JobStatus.SUCCEEDED
    [remote] = fine_tuning_jobs(emulator)
    assert remote.method["type"] == "dpo" and remote.method["dpo"]["hyperparameters"]["beta"] == 0.2
    first_line = emulator.files[remote.training_file].data.splitlines()[0]
    assert b'"preferred_output"' in first_line and b'"non_preferred_output"' in first_line


def test_cancel(emulator, chat_data):
    client = Client()
    job = client.submit(openai_spec(chat_data, hyperparameters={"epochs": 50, "batch_size": 1}))
    job = client.cancel(job.id)
    assert job.status is JobStatus.CANCELLED and job.provider_status == "cancelled"
    assert fine_tuning_jobs(emulator)[0].status == "cancelled"


def test_pause_and_resume(emulator, chat_data):
    client = Client()
    job = client.submit(openai_spec(chat_data, hyperparameters={"epochs": 10, "batch_size": 1}))
    while job.provider_status != "running":
        job = client.refresh(job.id)
    job = client.pause(job.id)
    assert job.status is JobStatus.PAUSED and job.provider_status == "paused"
    step = fine_tuning_jobs(emulator)[0].step
    for _ in range(3):
        job = client.refresh(job.id)
    assert job.status is JobStatus.PAUSED and fine_tuning_jobs(emulator)[0].step == step  # no progress paused
    job = client.resume(job.id)
    job = client.follow(job.id, interval=0)
    assert job.status is JobStatus.SUCCEEDED
    messages = [e.message for e in client.registry.events(job.id)]
    assert "Fine-tuning job paused" in messages and "Fine-tuning job resumed" in messages


def test_a_file_the_provider_refuses_fails_the_job_with_its_words(emulator, tmp_path):
    rows = reversal_rows(12, seed=4)
    rows[6]["messages"][1]["content"] = "EMULATOR-UNSAFE content"
    client = Client()
    job = client.submit(openai_spec({"train": str(write_jsonl(tmp_path / "t.jsonl", rows))}))
    job = client.follow(job.id, interval=0)
    assert job.status is JobStatus.FAILED
    assert "unsafe training file. Line 7" in job.error and "invalid_training_file" in job.error


def test_data_that_breaks_openai_limits_is_refused_before_upload(emulator, tmp_path):
    client = Client()
    few = write_jsonl(tmp_path / "few.jsonl", reversal_rows(5))
    with pytest.raises(DataError, match="needs at least 10"):
        client.submit(openai_spec({"train": str(few)}))
    assert emulator.recorder.count("POST", "/v1/files") == 0
    long_row = reversal_rows(11)
    long_row[3]["messages"][1]["content"] = "word " * 300_000
    with pytest.raises(DataError) as info:
        client.submit(openai_spec({"train": str(write_jsonl(tmp_path / "long.jsonl", long_row))}))
    # counted exactly with the model's encoding (o200k_base, bundled with quicktok), not estimated
    assert re.search(r":4: 300,0\d\d tokens; ", info.value.details[0]), info.value.details[0]
    assert "65,536 per example" in info.value.details[0]
    assert emulator.recorder.count("POST", "/v1/files") == 0 and not emulator.jobs


def test_two_jobs_on_one_dataset_upload_one_file(emulator, chat_data):
    client = Client()
    a = client.submit(openai_spec(chat_data))
    b = client.submit(openai_spec(chat_data, suffix="again"))
    assert emulator.recorder.count("POST", "/v1/files") == 1
    remote_a, remote_b = sorted(fine_tuning_jobs(emulator), key=lambda j: j.created_at)
    assert remote_a.training_file == remote_b.training_file
    assert a.provider_job_id != b.provider_job_id


def test_a_dropped_create_makes_exactly_one_job(emulator, chat_data):
    emulator.faults.add(method="POST", path="/v1/fine_tuning/jobs", drop=True)
    client = Client()
    job = client.submit(openai_spec(chat_data))
    assert len(emulator.jobs) == 1
    assert job.provider_job_id == fine_tuning_jobs(emulator)[0].id
    assert emulator.recorder.count("POST", "/v1/fine_tuning/jobs") == 1  # found, not created again
    dropped = [e for e in emulator.recorder.exchanges if e.dropped]
    assert len(dropped) == 1 and dropped[0].status == 200


def test_rate_limits_and_server_errors_are_survived(emulator, chat_data):
    emulator.faults.add(
        method="GET",
        path=r"/v1/fine_tuning/jobs/[^/]+",
        status=429,
        retry_after_ms=20,
        code="rate_limit_exceeded",
    )
    emulator.faults.add(method="GET", path=r"/v1/fine_tuning/jobs/[^/]+", status=500)
    emulator.faults.add(method="POST", path="/v1/fine_tuning/jobs", status=503)
    client = Client()
    job = client.follow(client.submit(openai_spec(chat_data)).id, interval=0)
    assert job.status is JobStatus.SUCCEEDED and len(emulator.jobs) == 1
    retried = [
        e for e in emulator.recorder.exchanges if e.request_headers.get("x-stainless-retry-count", "0") != "0"
    ]
    assert {e.status for e in retried} >= {200}
    assert [e.status for e in emulator.recorder.exchanges if e.path.startswith("/v1/fine_tuning/jobs/")][
        :3
    ] == [429, 500, 200]


def test_a_create_put_off_for_longer_than_anytune_waits_leaves_a_resumable_job(emulator, chat_data):
    """A 429 asking for 600 s on the create: one request (anytune waits at most 120 s in one call), and the
    job was FAILED with a hint that claimed "anytune retried with back-off". It stays pending, says what
    happened, and a resume later submits it: one job on the provider."""
    emulator.faults.add(
        method="POST",
        path="/v1/fine_tuning/jobs",
        status=429,
        retry_after_ms=600_000,
        code="rate_limit_exceeded",
    )
    client = Client()
    with pytest.raises(BackendError) as info:
        client.submit(openai_spec(chat_data))
    error = info.value
    assert emulator.recorder.count("POST", "/v1/fine_tuning/jobs") == 1
    assert "asked to wait 600 s" in error.message and "not retried" in error.message, error.message
    assert "retried with back-off" not in str(error) and "anytune jobs resume" in error.hint
    assert error.retry_after == 600
    [job] = client.registry.list_jobs()
    assert job.status is JobStatus.PENDING and job.provider_ref is None and not emulator.jobs
    assert any("stays pending" in e.message for e in client.events(job.id))
    emulator.faults.clear()
    job = client.follow(client.resume(job.id).id, interval=0)
    assert job.status is JobStatus.SUCCEEDED and len(emulator.jobs) == 1


def test_refusals_are_not_retried_and_keep_the_provider_message(emulator, chat_data):
    emulator.fine_tuning_enabled = False
    client = Client()
    refused = r"OpenAI refused this for these credentials \(403\): Fine-tuning is not available"
    with pytest.raises(BackendError, match=refused) as info:
        client.submit(openai_spec(chat_data))
    assert "winding down" in info.value.hint
    assert emulator.recorder.count("POST", "/v1/fine_tuning/jobs") == 1
    [job] = client.registry.list_jobs()
    assert job.status is JobStatus.FAILED and "403" in job.error


def test_a_wrong_key_is_a_clear_401(emulator, chat_data, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-000000")
    with pytest.raises(BackendError, match="401") as info:
        Client().submit(openai_spec(chat_data))
    assert "OPENAI_API_KEY" in info.value.hint
    assert emulator.recorder.count("GET", "/v1/fine_tuning/jobs") == 1  # not retried


def test_retired_models_are_refused_and_cutoffs_warn(emulator, chat_data, monkeypatch):
    client = Client()
    with pytest.raises(CapabilityError) as info:
        client.preflight(openai_spec(chat_data, base_model="gpt-4.1-nano"))
    assert "retired on 2026-10-23" in str(info.value) and "source:" in str(info.value)
    warnings = client.preflight(openai_spec(chat_data)).warnings
    assert any("no new fine-tuning jobs after 2027-01-06, in 39 days" in w for w in warnings)
    assert any("stop serving on 2027-01-14" in w for w in warnings)
    monkeypatch.setenv("ANYTUNE_TODAY", "2027-01-07")
    with pytest.raises(CapabilityError, match="no new fine-tuning jobs since 2027-01-06"):
        client.preflight(openai_spec(chat_data))
    monkeypatch.setenv("ANYTUNE_TODAY", "2026-06-01")
    assert not [
        w for w in client.preflight(openai_spec(chat_data)).warnings if "base_model" in w or "provider" in w
    ]
    assert not emulator.jobs


def test_the_key_is_never_stored_or_logged(emulator, chat_data, anytune_home, caplog):
    caplog.set_level(logging.DEBUG)
    client = Client()
    job = client.follow(client.submit(openai_spec(chat_data)).id, interval=0)
    client.evaluate(job.id)
    stored = b"".join(p.read_bytes() for p in anytune_home.rglob("*") if p.is_file())
    assert KEY.encode() not in stored
    assert KEY not in caplog.text
    assert "Authorization" not in caplog.text


def test_generate_through_chat_completions(emulator, chat_data):
    client = Client()
    job = client.follow(client.submit(openai_spec(chat_data)).id, interval=0)
    result = client.evaluate(job.id)
    assert result.subject("base").metrics["exact_match"] == 0.0
    base_answers = set(result.subject("base").predictions)
    assert base_answers == {"This is a reply from gpt-4o-mini-2024-07-18."}
    assert all(p.startswith("Reversed: ") for p in result.subject("fine-tuned").predictions)
    assert emulator.recorder.count("POST", "/v1/chat/completions") == 20


def test_the_same_job_file_runs_on_local_spec_with_a_provider_model(emulator, chat_data):
    spec = spec_from_dict(
        {
            "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
            "provider": "openai",
            "data": chat_data,
            "adapter": {"type": "lora", "r": 8},
            "provider_options": {"openai": {"base_model": "gpt-4o-mini"}},
        }
    )
    pre = Client().preflight(spec)
    assert pre.quote.model == "gpt-4o-mini-2024-07-18"
    assert any("adapter settings are not used" in w for w in pre.warnings)


def test_cli_emulate_and_run_the_example(tmp_path):
    """`anytune emulate openai` in one process, `anytune run examples/openai-sft.yaml` in another."""
    from anytune.testing.server import free_port

    port = free_port()
    env = cli_env(
        tmp_path,
        OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1",
        OPENAI_API_KEY="sk-emulator-cli",
        ANYTUNE_PROGRESS_SECONDS="0.5",
        COLUMNS="80",
    )
    with emulator_cli("openai", env, port, speed=20):
        run = run_anytune("run", str(EXAMPLES / "openai-sft.yaml"), env=env, timeout=180)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "succeeded" in run.stdout and "100/100" in run.stdout
        # not a terminal: progress comes as lines while the job runs, not only at the end
        progress = [
            line for line in run.stdout.splitlines() if re.match(r"\s+running\s+\d+/100\s+loss", line)
        ]
        assert len(progress) >= 2, run.stdout
        # the job panel wraps at 80 columns instead of cutting the quote's lines off
        assert "prices seen 2026-11-28" in run.stdout
        assert (
            "model registered as reverse-letters-openai@1: ft:gpt-4o-mini-2024-07-18:anytune-emulator:reverse:"
            in run.stdout
        )
        assert "token_f1" in run.stdout
        listing = run_anytune("jobs", "list", env=env, check=True).stdout
        assert "openai" in listing and "succeeded" in listing


def test_polls_are_paced_by_the_job_state(emulator, chat_data, monkeypatch):
    import anytune.pipeline.follow as client_module

    client = Client()
    job = client.submit(openai_spec(chat_data))
    slept: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", slept.append)
    job = client.follow(job.id)
    assert job.status is JobStatus.SUCCEEDED
    assert slept and set(slept) <= {2.0, 5.0, 10.0}  # running jobs every 2 s, queued ones every 5 s


def test_slow_answers_are_waited_for(emulator, chat_data):
    import time

    emulator.faults.add(method="GET", path=r"/v1/fine_tuning/jobs/[^/]+", delay=0.3, times=2)
    client = Client()
    started = time.monotonic()
    job = client.follow(client.submit(openai_spec(chat_data)).id, interval=0)
    assert job.status is JobStatus.SUCCEEDED
    assert time.monotonic() - started >= 0.6
