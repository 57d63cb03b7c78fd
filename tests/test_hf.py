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
from anytune.plugin import PreparedData, ProviderRef, SubmitRequest
from anytune.testing import emulated
from anytune_hf.backend import LABEL, HFBackend, job_label
from tests.conftest import anytune_in_process, chat_splits, cli_env, reversal_rows, run_anytune, write_jsonl

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
    # and exported as merged weights, as a local model is (the adapter merged into its base)
    merged, version = client.export("hf-test", tmp_path / "merged")
    assert merged.kind == "merged" and (tmp_path / "merged" / "config.json").exists() and version is not None
    # the data went to the private dataset repo, under its content address, once
    data_repo = hub.repos[("dataset", "alice/anytune-data")]
    _, staged = data_repo.files()
    assert any(name.startswith("data/") for name in staged) and f"jobs/{job.id}/request.json" in staged


def wait_for(condition: Any, timeout: float = 120.0, *, seen: Any = None) -> None:
    """Until `condition()`; on a timeout, `seen()` says what there was to see (a stalled job's last lines)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting: {seen() if seen else ''}"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_timeout_fails_with_the_reason_and_resume_starts_from_the_pushed_checkpoint(
    hub, tmp_path, tiny_model
):
    import os
    import signal

    client = Client()
    data = chat_splits(tmp_path, seed=4)
    run = {"epochs": 15, "learning_rate": 3e-3, "batch_size": 8}  # 60 steps, a checkpoint every 10
    job = client.submit(
        spec(data, tiny_model, hyperparameters=run, hf={"timeout": "10m", "checkpoint_steps": 10})
    )
    [remote] = hub.jobs.values()
    assert remote.spec["timeoutSeconds"] == 600
    repo = job.provider_ref["data"]["output_repo"]

    def checkpoint_pushed() -> bool:
        client.refresh(job.id)  # polls: the emulated job starts on the first one
        stored = hub.repos.get(("model", repo))
        pushed = stored is not None and any("checkpoints/" in f for f in stored.files()[1])
        if pushed:  # frozen where it is, so that it is still running when its time is up, however fast
            os.killpg(remote.process.pid, signal.SIGSTOP)
        return pushed

    def last_lines() -> list[
        str
    ]:  # this wait timed out in 3 of about 12 runs on 2026-12-07: what was the job at?
        stored = hub.repos.get(("model", repo))
        files = sorted(stored.files()[1]) if stored is not None else None
        return [
            f"stage={remote.stage}",
            f"repo files={files}",
            *[line[:300] for _, line in remote.logs][-25:],
        ]

    wait_for(checkpoint_pushed, seen=last_lines)
    hub.clock.advance(601)  # ten minutes and a second on the emulator's clock: past the job's timeout
    os.killpg(remote.process.pid, signal.SIGCONT)  # the Hub's SIGTERM is then handled at once
    failed = client.refresh(job.id)
    assert failed.status is JobStatus.FAILED and failed.provider_status == "ERROR"
    assert "timeout" in (failed.error or "").lower() and "600" in (failed.error or "")
    resumed = client.resume(job.id)
    point = resumed.spec.provider_options["hf"]["resume_from"]
    assert point.startswith(f"hf://{repo}/checkpoints/checkpoint-")
    done = client.follow(resumed.id, interval=0)
    assert done.status is JobStatus.SUCCEEDED, [line for _, line in hub.jobs[done.provider_job_id].logs][-4:]
    messages = [e.message for e in client.registry.events(resumed.id)]
    assert any(m == f"resuming from {point}" for m in messages)


@pytest.mark.slow
def test_cancel_stops_the_running_job(hub, tmp_path, tiny_model):
    client = Client()
    job = client.submit(spec(chat_splits(tmp_path, seed=5), tiny_model, hyperparameters={"epochs": 50}))
    wait_for(lambda: client.refresh(job.id).status is JobStatus.RUNNING)
    cancelled = client.cancel(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    [remote] = hub.jobs.values()
    assert remote.stage == "CANCELED" and remote.process is not None and remote.process.poll() is not None


def test_marked_log_lines_that_other_output_cut_into_are_still_read(hub):
    """A job's log is one stream that the trainer's output shares: a line of it can follow a marked line
    before its newline, a progress bar's carriage-return text can stand before the marker, a line can be cut
    short. Polling reads what each holds instead of failing the poll (a clean-clone CI run did)."""
    backend = HFBackend()

    def marked(marker: str, payload: dict[str, Any]) -> str:
        return f"anytune-{marker} {json.dumps(payload)}"

    def metric(loss: float) -> dict[str, Any]:
        return {"time": 1.0, "kind": "metric", "level": "info", "message": "step", "data": {"loss": loss}}

    lines = [
        marked("event", metric(1.5)) + "{'train_runtime': '0.41', 'epoch': '6'}",
        "\r 10%|#         | 1/10 [00:01<00:09]" + marked("event", metric(1.25)),
        marked("event", metric(1.0))[:-12],  # cut short: left as plain log
        marked("status", {"state": "running", "step": 5, "total_steps": 10}) + " trailing",
        marked("result", {"repo": "alice/out", "revision": "abc", "result": {"trained_tokens": 7}}) + "}",
    ]
    script = f"for line in {lines!r}:\n    print(line)"
    job = backend.api().run_job(image="python:3.12", command=["python", "-c", script], namespace="alice")
    ref = ProviderRef(provider="hf", id=job.id, data={"namespace": "alice", "mode": "jobs"})
    wait_for(lambda: not backend.poll(ref).status.active)
    snap = backend.poll(ref)
    assert snap.status is JobStatus.SUCCEEDED, snap.error
    assert [e.data for e in snap.events] == [{"loss": 1.5}, {"loss": 1.25}]
    assert (snap.step, snap.total_steps, snap.trained_tokens) == (5, 10, 7)


def test_the_runner_writes_each_log_line_whole_while_the_worker_prints(tmp_path):
    """The runner is the only writer of the job's log: the worker's output is copied in line by line, so
    its lines never land inside the runner's marked ones."""
    import subprocess
    import sys

    script = """
import subprocess, sys, threading
from anytune_hf.runner import EVENT, forward_output, say
worker = subprocess.Popen(
    [sys.executable, "-c", "import sys\\nfor i in range(3000): sys.stderr.write('x' * 60 + '\\\\n')"],
    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
)
copier = threading.Thread(target=forward_output, args=(worker.stdout,))
copier.start()
for i in range(3000):
    say(EVENT, {"kind": "log", "message": "m" * 40, "data": {"i": i}})
worker.wait()
copier.join()
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**__import__("os").environ, "PYTHONUNBUFFERED": "1"},
    ).stdout.splitlines()
    marked = [line for line in out if "anytune-event" in line]
    assert [json.loads(line.removeprefix("anytune-event "))["data"]["i"] for line in marked] == list(
        range(3000)
    )
    assert sorted(set(out) - set(marked)) == ["x" * 60] and len(out) == 6000


def test_a_create_whose_answer_is_lost_makes_one_job(hub, tmp_path, tiny_model):
    hub.faults.add(method="POST", path=r"/api/jobs/alice", drop=True)
    hub.prices["cpu-upgrade"] = 0.06  # Hugging Face's list moved since the catalog was written
    client = Client()
    job = client.submit(spec(chat_splits(tmp_path, seed=6), tiny_model))
    assert len(hub.jobs) == 1 and job.provider_job_id in hub.jobs
    assert job.provider_ref["data"]["price_per_hour"] == 0.06  # the job is costed at the price listed now
    creates = [e for e in hub.recorder.exchanges if e.method == "POST" and e.path == "/api/jobs/alice"]
    assert len(creates) == 1 and creates[0].dropped  # no second create: the label found the first job
    # and a crash between the create and the record: the job is found again, not created twice
    prepared = PreparedData.model_validate(job.data)  # the job row stores the prepared data
    again = HFBackend().find_existing(SubmitRequest(job_id=job.id, spec=job.spec, prepared=prepared))
    assert again is not None and again.id == job.provider_job_id
    client.cancel(job.id)


@pytest.mark.slow
def test_autotrain_mode_project_runs_to_completed(hub, tmp_path, tiny_model):
    client = Client()
    data = chat_splits(tmp_path, seed=7)
    job_spec = spec(data, tiny_model, hf={"mode": "autotrain", "flavor": "a10g-large"})
    job = client.follow(client.submit(job_spec).id, interval=0)
    assert job.status is JobStatus.SUCCEEDED, [line for j in hub.jobs.values() for _, line in j.logs][-5:]
    assert job.provider_status == "PAUSED"  # AutoTrain pauses the Space once the model is pushed
    project = job.provider_job_id
    assert project.startswith("alice/autotrain-anytune-")
    [create] = [e for e in hub.recorder.exchanges if e.path == "/api/create_project"]
    body = json.loads(create.request_body)
    assert body["task"] == "llm:sft" and body["hardware"] == "spaces-a10g-large"
    assert body["column_mapping"] == {"text_column": "messages"} and body["params"]["lora_r"] == 8
    assert body["hub_dataset"] == f"{body['username']}/{body['project_name']}-data"
    first = json.loads(hub.repos[("dataset", body["hub_dataset"])].files()[1]["train.jsonl"].splitlines()[0])
    assert set(first) == {"messages"}
    assert job.artifact is not None and job.artifact.metadata["repo"] == f"alice/{body['project_name']}"
    assert Path(job.artifact.path, "adapter_config.json").exists()


def quote_rows(capsys: Any, tmp_path: Path, model: str, **extra: Any) -> tuple[int, str]:
    import yaml

    words = " ".join(f"word{i}" for i in range(150))  # 2,000 support answers of some length
    rows = [
        {"messages": [{"role": "user", "content": f"Q{i}?"}, {"role": "assistant", "content": words}]}
        for i in range(2000)
    ]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    raw = {
        "name": "sizes",
        "base_model": model,
        "provider": "hf",
        "data": {"train": str(train)},
        "hyperparameters": {"epochs": 1, "batch_size": 4, "max_seq_length": 2048},
        **extra,
    }
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(raw))
    return anytune_in_process(capsys, "quote", str(job), "--providers", "hf", "--details", "--json")


def test_quote_chooses_a_flavor_by_the_memory_model_and_says_why(tmp_path, capsys):
    code, out = quote_rows(capsys, tmp_path, "meta-llama/Llama-2-7b-hf", adapter={"type": "qlora"})
    assert code == 0, out
    [row] = json.loads(out)["quotes"]
    assert row["available"] and row["hardware"] in ("t4", "l4", "a10g")  # 4-bit 7B fits 16-24 GB
    memory = next(a for a in row["assumptions"] if a.startswith("memory:"))
    assert "7B qlora" in memory and "weights 3.9" in memory and "GB per GPU" in memory
    assert any("cheapest of" in a and "too small: t4-small, t4-medium;" in a for a in row["assumptions"])

    code, out = quote_rows(capsys, tmp_path, "meta-llama/Llama-3.1-8B-Instruct", adapter={"type": "full"})
    [row] = json.loads(out)["quotes"]
    assert row["available"] and row["hardware"] not in ("h200", "a100", "t4")  # 8B full needs > 141 GB
    memory = next(a for a in row["assumptions"] if a.startswith("memory:"))
    assert "8B full" in memory and "sharded" in memory
    too_small = next(a for a in row["assumptions"] if "too small" in a)
    assert "h200" in too_small and "a100-large" in too_small


def test_a_70b_full_fine_tune_on_single_gpu_flavors_is_refused_with_the_figures(tmp_path, capsys):
    code, out = quote_rows(
        capsys,
        tmp_path,
        "meta-llama/Llama-3.1-70B-Instruct",
        adapter={"type": "full"},
        provider_options={"hf": {"max_gpus": 1}},
    )
    assert code != 0 or out
    [row] = json.loads(out[out.index("{") :])["quotes"]
    assert not row["available"]
    reason = row["reason"]
    assert "max_gpus: 1" in reason and "70B full" in reason and "weights 140.0" in reason
    assert "H200 has 141 GB per GPU" in reason


@pytest.mark.slow
def test_anywhere_example_runs_with_only_the_provider_flag(tmp_path, tiny_model):
    from anytune.testing import free_port
    from tests.conftest import emulator_cli

    port = free_port()
    env = cli_env(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_TOKEN=TOKEN, HF_HUB_OFFLINE="0")
    example = Path(__file__).resolve().parents[1] / "examples" / "anywhere.yaml"
    # the job file unchanged; the tiny model stands in for SmolLM2 to keep the suite fast (the same for both)
    small = [
        "--set",
        f"base_model={tiny_model}",
        "--set",
        "data.train=" + str(write_jsonl(tmp_path / "train.jsonl", reversal_rows(40, seed=9))),
    ]
    with emulator_cli("hf", {**env, "HF_TOKEN": TOKEN}, port, speed=1):
        run = run_anytune("run", str(example), "--provider", "hf", *small, env=env, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "succeeded in" in run.stdout and "held-out evaluation" in run.stdout
    assert "model registered as reverse-letters-anywhere@1: alice/" in run.stdout
    # the same file with --provider local: tests/test_anywhere.py


def test_the_model_checked_is_the_one_the_job_trains(tmp_path, tiny_model):
    """provider_options.hf.base_model is what the container trains, so it is what the local checks see."""
    data = chat_splits(tmp_path, seed=12)
    named = spec(data, "not a model name", hf={"base_model": str(tiny_model)})
    assert not [p for p in HFBackend().check_spec(named) if p.field == "" and p.is_error]
    wrong = spec(data, str(tiny_model), hf={"base_model": "/no/such/folder"})
    assert any("no such folder" in p.message for p in HFBackend().check_spec(wrong))


def test_offline_mode_is_refused_before_the_job_is_recorded(tmp_path, tiny_model, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    problems = HFBackend().check_spec(spec(chat_splits(tmp_path, seed=13), tiny_model))
    assert any("HF_HUB_OFFLINE" in p.message for p in problems)
    with pytest.raises(Exception, match="HF_HUB_OFFLINE"):
        Client().submit(spec(chat_splits(tmp_path, seed=13), tiny_model))
    assert Client().registry.list_jobs() == []


def test_every_flavor_huggingface_hub_names_is_rented_and_priced(hub):
    """The emulator refused t4-small, a10g-small, cpu-performance and the rtx-pro-6000 flavors that
    huggingface_hub's JobHardware lists, and the quote's catalog did not know them."""
    from huggingface_hub import JobHardware

    from anytune.plugin import load_catalog
    from anytune_hf.catalog import flavor_named

    catalog = load_catalog()
    api = HFBackend().api()
    listed = {h.name for h in api.list_jobs_hardware()}  # GET /api/jobs/hardware
    for flavor in (h.value for h in JobHardware):
        known = flavor_named(flavor)
        assert known is not None and known.price > 0, f"{flavor} is not priced"
        entry = catalog.price("hf", hardware=known.hardware)
        assert entry is not None and catalog.sources["hf"].seen, flavor  # priced, with source and date
        assert flavor in listed, f"GET /api/jobs/hardware does not list {flavor}"
        job = api.run_job(
            image="python:3.12", command=["python", "-c", "print(1)"], flavor=flavor, namespace="alice"
        )
        assert job.flavor == flavor
    with pytest.raises(Exception, match="Invalid flavor"):
        api.run_job(image="python:3.12", command=["true"], flavor="tpu-v5", namespace="alice")


def test_attempts_rerun_and_labels_are_served(hub):
    """`attempts` (retries of a failed run), `rerun_job` (/duplicate) and `update_job_labels` (/labels) were
    not served."""
    api = HFBackend().api()
    flaky = (  # fails its first run, succeeds on the second
        "import pathlib; p = pathlib.Path('tried'); n = int(p.read_text()) if p.exists() else 0; "
        "p.write_text(str(n + 1)); raise SystemExit(0 if n >= 1 else 3)"
    )
    job = api.run_job(image="python:3.12", command=["python", "-c", flaky], attempts=3, namespace="alice")
    wait_for(lambda: api.inspect_job(job_id=job.id, namespace="alice").status.stage in ("COMPLETED", "ERROR"))
    done = api.inspect_job(job_id=job.id, namespace="alice")
    assert done.status.stage == "COMPLETED" and hub.jobs[job.id].retry == 1
    once = api.run_job(
        image="python:3.12", command=["python", "-c", "raise SystemExit(3)"], namespace="alice"
    )
    wait_for(
        lambda: api.inspect_job(job_id=once.id, namespace="alice").status.stage in ("COMPLETED", "ERROR")
    )
    assert api.inspect_job(job_id=once.id, namespace="alice").status.stage == "ERROR"  # attempts: 1
    again = api.rerun_job(job_id=job.id, namespace="alice")
    assert again.id != job.id and hub.jobs[again.id].spec["attempts"] == 3
    labeled = api.update_job_labels(job_id=again.id, labels={"team": "nlp", "run": "b-2"}, namespace="alice")
    assert labeled.labels == {"team": "nlp", "run": "b-2"}
    with pytest.raises(Exception, match="labels"):
        api.update_job_labels(job_id=again.id, labels={"bad key": "x"}, namespace="alice")
    with pytest.raises(Exception, match="attempts"):
        api.run_job(image="python:3.12", command=["true"], attempts=0, namespace="alice")
