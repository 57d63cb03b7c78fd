"""The Together backend, driving the real `together` SDK against the emulator on 127.0.0.1."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from anytune.client import Client
from anytune.cost.catalog import load_catalog as load_prices
from anytune.errors import BackendError, CapabilityError, DataError
from anytune.jobfile import spec_from_dict
from anytune.jobs import JobStatus
from anytune.spec import JobSpec
from anytune_together.emulator import TogetherEmulator
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

KEY = "tg-emulator-test-0123456789abcdef"
LLAMA = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[TogetherEmulator]:
    with emulated("together", api_key=KEY, tick=2.0) as emu:
        yield emu


@pytest.fixture
def chat_data(tmp_path: Path) -> dict[str, str]:
    return chat_splits(tmp_path, seed=31)


def together_spec(data: dict[str, str], **extra) -> JobSpec:
    base = {
        "name": "tg-test",
        "base_model": LLAMA,
        "provider": "together",
        "data": data,
        "suffix": "rev",
        "hyperparameters": {"epochs": 2, "batch_size": 8, "learning_rate": 1e-4},
        "adapter": {"type": "lora", "r": 8, "alpha": 16, "dropout": 0.0},
    }
    base.update(extra)
    return spec_from_dict(base)


def remote_jobs(emu: TogetherEmulator) -> list:
    return sorted(emu.jobs.values(), key=lambda j: j.created_at)


def test_sft_with_lora_to_completed_with_prices_and_download(emulator, chat_data):
    client = Client()
    spec = together_spec(
        chat_data, provider_options={"together": {"download": "adapter", "n_checkpoints": 2}}
    )
    job = client.follow(client.submit(spec).id, interval=0)
    assert job.status is JobStatus.SUCCEEDED and job.provider_status == "completed"
    [remote] = remote_jobs(emulator)
    body = remote.body
    assert body["model"] == LLAMA and body["n_epochs"] == 2 and body["batch_size"] == 8
    assert body["training_type"] == {
        "type": "Lora",
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "lora_trainable_modules": "all-linear",
    }
    assert body["training_method"] == {"method": "sft", "train_on_inputs": "auto"}
    assert body["suffix"].startswith("rev-at")
    assert job.artifact.model_id == remote.output_name and job.artifact.adapter_type == "lora"
    # beside anytune's quote: Together's own estimate, the actual cost (trained tokens x the catalog price,
    # $0.48 / 1M for LoRA SFT up to 16B) and what Together billed (nanodollars on the wire)
    entry = load_prices().price("together", method="sft", adapter="lora", params_b=8.0)
    assert entry is not None and entry.price == 0.48
    assert job.cost.quoted is not None and job.cost.provider_quote is not None
    assert job.cost.actual == pytest.approx(remote.token_count * entry.price / 1e6)
    assert job.cost.provider_actual == pytest.approx(remote.price() / 1e9)
    assert job.cost.trained_tokens == remote.token_count > 0
    # the weights came down through the SDK's resumable download (a Range probe first) and were unpacked
    assert sorted(job.artifact.files) == ["adapter_config.json", "manifest.json"]
    assert Path(job.artifact.path, "manifest.json").exists()
    downloads = [e for e in emulator.recorder.exchanges if e.path == "/v1/finetune/download"]
    assert [e.status for e in downloads] == [206, 200] and downloads[0].request_headers[
        "range"
    ] == "bytes=0-1"
    losses = [e.data["loss"] for e in client.registry.events(job.id, kind="metric")]
    assert len(losses) == remote.total_steps and losses[0] > losses[-1]


def test_dpo_with_its_knobs(emulator, tmp_path):
    rows = preference_rows()
    client = Client()
    spec = together_spec(
        {"train": str(write_jsonl(tmp_path / "p.jsonl", rows))},
        method={"type": "dpo", "beta": 0.2, "rpo_alpha": 0.5, "simpo_gamma": 0.1},
    )
    job = client.follow(client.submit(spec).id, interval=0)
    assert job.status is JobStatus.SUCCEEDED
    [remote] = remote_jobs(emulator)
    assert remote.body["training_method"]["method"] == "dpo"
    assert (
        remote.body["training_method"]["dpo_beta"] == 0.2
        and remote.body["training_method"]["rpo_alpha"] == 0.5
    )
    assert remote.training_file.report["dataset_format"] == "PREFERENCE"


def test_full_fine_tune_and_its_limits(emulator, chat_data):
    client = Client()
    job = client.follow(client.submit(together_spec(chat_data, adapter="full")).id, interval=0)
    assert job.status is JobStatus.SUCCEEDED and job.artifact.adapter_type == "full"
    assert remote_jobs(emulator)[0].body["training_type"] == {"type": "Full"}
    with pytest.raises(CapabilityError, match="only LoRA"):
        client.preflight(
            together_spec(
                chat_data, adapter="full", base_model="meta-llama/Meta-Llama-3.1-70B-Instruct-Reference"
            )
        )
    with pytest.raises(CapabilityError, match=r"adapter\.r: Together takes 1 to 64"):
        client.preflight(together_spec(chat_data, adapter={"type": "lora", "r": 128}))


def test_cancel(emulator, chat_data):
    client = Client()
    job = client.submit(together_spec(chat_data, hyperparameters={"epochs": 20, "batch_size": 8}))
    job = client.cancel(job.id)
    job = client.follow(job.id, interval=0)
    assert job.status is JobStatus.CANCELLED and job.provider_status == "cancelled"
    assert "cancel_requested" in {e.data.get("type") for e in client.registry.events(job.id)}


def test_continue_from_a_checkpoint(emulator, chat_data):
    client = Client()
    spec = together_spec(chat_data, provider_options={"together": {"n_checkpoints": 2}})
    first = client.follow(client.submit(spec).id, interval=0)
    second = client.follow(
        client.continue_job(first.id, step=4, overrides=["hyperparameters.epochs=1"]).id, interval=0
    )
    assert second.status is JobStatus.SUCCEEDED
    parent, child = remote_jobs(emulator)
    assert child.body["from_checkpoint"] == f"{parent.id}:4" and "model" not in child.body
    assert child.model == parent.model
    assert second.spec.provider_options["together"]["from_checkpoint"] == f"{parent.id}:4"
    assert any("continues" in e.message for e in client.registry.events(second.id))
    from anytune.errors import BackendError

    with pytest.raises(BackendError, match="no checkpoint at step 3"):  # Together's own refusal, surfaced
        client.continue_job(first.id, step=3)


def test_a_malformed_file_is_refused_before_upload_with_line_numbers(emulator, tmp_path):
    rows = reversal_rows(6, seed=2)
    rows[2]["messages"] = [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "c"},
    ]
    rows[4]["messages"] = [
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "y"},
    ]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as info:
        Client().submit(together_spec({"train": str(path)}))
    details = info.value.details
    assert details[0].startswith(f"{path}:3: two user messages in a row")
    assert details[1].startswith(f"{path}:5: a conversation must start with a system or user message")
    assert emulator.recorder.count("POST", "/v1/files") == 0 and not emulator.jobs


def test_an_adapter_together_does_not_offer_is_refused_naming_who_can(emulator, chat_data, tmp_path):
    from anytune.errors import CapabilityError

    with pytest.raises(CapabilityError) as info:
        Client().submit(together_spec(chat_data, adapter={"type": "prefix", "num_virtual_tokens": 8}))
    assert "together cannot train adapter 'prefix'" in str(info.value)
    assert "providers that can: hf, local" in str(info.value)
    assert emulator.recorder.count("POST", "/v1/files") == 0 and not emulator.jobs


def test_a_duplicate_upload_reuses_the_file(emulator, chat_data):
    client = Client()
    client.submit(together_spec(chat_data))
    client.submit(together_spec(chat_data, suffix="again"))
    first, second = remote_jobs(emulator)
    assert first.training_file.id == second.training_file.id
    assert len([f for f in emulator.files.values() if f.purpose == "fine-tune"]) == 1
    posts = [e.status for e in emulator.recorder.exchanges if e.method == "POST" and e.path == "/v1/files"]
    assert posts[0] == 302 and 409 in posts  # Together's duplicate-checksum answer, used as the file id


def test_a_file_sent_before_a_crash_but_never_checked_is_checked_on_the_next_upload(emulator, chat_data):
    """A crash between sending the file and asking Together to check it leaves it PENDING; the next
    submit of the same data gets that file's id back (409) and must have it checked, or the job is refused."""
    emulator.faults.add(
        method="POST", path=r"/v1/files/[^/]+/preprocess", status=503, retry_after_ms=20, times=99
    )
    client = Client()
    with pytest.raises(BackendError):
        client.submit(together_spec(chat_data))
    [pending] = [f for f in emulator.files.values() if f.purpose == "fine-tune"]
    assert pending.data and pending.report is None
    emulator.faults.clear()
    job = client.follow(client.submit(together_spec(chat_data, suffix="again")).id, interval=0)
    assert job.status is JobStatus.SUCCEEDED and pending.valid
    assert [f.id for f in emulator.files.values() if f.purpose == "fine-tune"] == [pending.id]


def test_429_and_503_are_survived(emulator, chat_data):
    emulator.faults.add(
        method="GET",
        path=r"/v1/fine-tunes/ft-[^/]+",
        status=429,
        retry_after_ms=20,
        code="dynamic_request_limited",
    )
    emulator.faults.add(method="POST", path="/v1/fine-tunes", status=503)
    client = Client()
    job = client.follow(client.submit(together_spec(chat_data)).id, interval=0)
    assert job.status is JobStatus.SUCCEEDED and len(emulator.jobs) == 1
    statuses = [
        e.status for e in emulator.recorder.exchanges if e.method == "POST" and e.path == "/v1/fine-tunes"
    ]
    assert statuses == [503, 200]


def test_exactly_one_job_after_a_dropped_create(emulator, chat_data):
    emulator.faults.add(method="POST", path="/v1/fine-tunes", drop=True)
    client = Client()
    job = client.submit(together_spec(chat_data))
    assert len(emulator.jobs) == 1 and job.provider_job_id == remote_jobs(emulator)[0].id
    creates = [e for e in emulator.recorder.exchanges if e.method == "POST" and e.path == "/v1/fine-tunes"]
    assert len(creates) == 1 and creates[0].dropped  # found by its suffix tag, not created again


def test_the_key_is_never_stored_or_logged(emulator, chat_data, anytune_home, caplog):
    caplog.set_level(logging.DEBUG)
    client = Client()
    job = client.follow(client.submit(together_spec(chat_data)).id, interval=0)
    client.evaluate(job.id)
    stored = b"".join(p.read_bytes() for p in anytune_home.rglob("*") if p.is_file())
    assert KEY.encode() not in stored and KEY not in caplog.text


def test_cpt_on_raw_text(emulator, tmp_path):
    rows = [{"text": f"Document {i}: the quick brown fox jumps over the lazy dog."} for i in range(10)]
    client = Client()
    spec = together_spec({"train": str(write_jsonl(tmp_path / "t.jsonl", rows))}, method="cpt")
    job = client.follow(client.submit(spec).id, interval=0)
    assert job.status is JobStatus.SUCCEEDED
    [remote] = remote_jobs(emulator)
    assert remote.training_file.report["dataset_format"] == "GENERAL"
    assert remote.body["training_method"]["method"] == "sft"


def test_cli_emulate_together_and_run_the_example(tmp_path):
    from anytune.testing.server import free_port

    port = free_port()
    env = cli_env(tmp_path, TOGETHER_BASE_URL=f"http://127.0.0.1:{port}", TOGETHER_API_KEY="emulator-key")
    with emulator_cli("together", env, port):
        run = run_anytune("run", str(EXAMPLES / "together-sft.yaml"), env=env, timeout=180)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "50/50" in run.stdout and "model registered as reverse-letters-together@1" in run.stdout
        job_id = next(w for w in run.stdout.split() if w.startswith("job-"))
        cont = run_anytune("jobs", "continue", job_id, "--step", "25", env=env, timeout=180)
        assert cont.returncode == 0, cont.stdout + cont.stderr
        assert "continuing" in cont.stdout and "succeeded" in cont.stdout


def test_a_zstd_archive_is_kept_where_the_hint_says(emulator, chat_data):
    """Real Together downloads are often .tar.zst: anytune cannot unpack those yet, but the hint must name a
    file that still exists (it used to point into a temporary folder deleted as the error was raised)."""
    from anytune.errors import BackendError

    zstd = b"\x28\xb5\x2f\xfd" + bytes(range(64))
    emulator.archive = lambda job, kind: zstd  # what the real service sends for some models
    client = Client()
    job = client.submit(together_spec(chat_data, provider_options={"together": {"download": "adapter"}}))
    with pytest.raises(BackendError, match=r"\.tar\.zst") as info:
        client.follow(job.id, interval=0)
    kept = Path(info.value.hint.split("kept at ", 1)[1].split(":", 1)[0])
    assert kept.is_file() and kept.read_bytes() == zstd


def test_an_upload_failing_for_a_moment_is_tried_again_and_a_known_file_is_not_waited_for(
    emulator, chat_data
):
    """The SDK's retries are off for the upload (it retried Together's 409, "this file exists", with back-off:
    about 3.5 s for each upload of data Together already had); anytune's retries take a 503."""
    emulator.faults.add(method="POST", path="/v1/files", status=503, times=1)
    client = Client()
    first = client.submit(together_spec(chat_data))
    posts = [e.status for e in emulator.recorder.exchanges if e.method == "POST" and e.path == "/v1/files"]
    assert posts[:2] == [503, 302], posts
    mark = len(emulator.recorder.exchanges)
    again = client.submit(together_spec(chat_data, suffix="again"))
    posts = [e for e in emulator.recorder.exchanges[mark:] if e.method == "POST" and e.path == "/v1/files"]
    assert [e.status for e in posts] == [409], [e.status for e in posts]  # asked once, not three times
    assert first.provider_ref is not None and again.provider_ref is not None
