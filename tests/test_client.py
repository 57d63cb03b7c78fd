"""The core's order of work: refuse early, record before calling the backend, follow, register, evaluate."""

from __future__ import annotations

from pathlib import Path

import pytest

from anytune.client import Client
from anytune.errors import BackendError, BudgetExceededError, CapabilityError, DataError
from anytune.jobs import JobStatus
from anytune.plugins import PluginManager
from anytune.registry import Registry
from anytune.spec import EvalSpec, JobSpec
from tests.conftest import reversal_rows, write_jsonl
from tests.scripted_backend import ScriptedBackend, ScriptedPlugin


@pytest.fixture
def data(tmp_path: Path) -> dict[str, str]:
    rows = reversal_rows(60, seed=3)
    return {
        "train": str(write_jsonl(tmp_path / "train.jsonl", rows[:50])),
        "test": str(write_jsonl(tmp_path / "test.jsonl", rows[50:])),
    }


def make_client(backend: ScriptedBackend | None = None) -> tuple[Client, ScriptedBackend]:
    backend = backend or ScriptedBackend()
    pm = PluginManager()
    pm.register(ScriptedPlugin(backend), name="scripted")
    return Client(registry=Registry(), plugins=pm), backend


def spec(data: dict[str, str], **extra) -> JobSpec:
    return JobSpec.model_validate({"base_model": "base", "provider": "scripted", "data": data, **extra})


def test_everything_a_backend_cannot_do_is_refused_at_once_and_nothing_is_recorded(data):
    client, _ = make_client()
    bad = spec(data, method="ppo", adapter="qlora", provider="scripted", base_model="/no/such/model")
    bad = bad.model_copy(update={"provider": "local"})
    with pytest.raises(CapabilityError) as info:
        client.submit(bad)
    text = "\n".join(info.value.details)
    assert "cannot run method 'ppo'" in text and "no installed provider can" in text
    assert "/no/such/model" in text
    on_scripted = spec(data, adapter="qlora")
    with pytest.raises(CapabilityError) as info:
        client.submit(on_scripted)
    assert "scripted cannot train adapter 'qlora'" in str(info.value)
    assert "providers that can: hf, local" in str(info.value)  # the built-in local backend is installed too
    assert client.registry.list_jobs() == []


def test_a_method_no_backend_runs_says_so(data):
    client, _ = make_client()
    with pytest.raises(CapabilityError) as info:
        client.submit(spec(data, method="ppo"))
    assert "scripted cannot run method 'ppo'" in str(info.value)
    assert "no installed provider can" in str(info.value)


def test_ignored_hyperparameters_warn_or_refuse_when_strict(data):
    client, _ = make_client()
    pre = client.preflight(spec(data, hyperparameters={"epochs": 2, "weight_decay": 0.1}))
    assert any("hyperparameters.weight_decay" in w and "ignored" in w for w in pre.warnings)
    with pytest.raises(CapabilityError, match="weight_decay"):
        client.preflight(spec(data, strict=True, hyperparameters={"weight_decay": 0.1}))


def test_invalid_data_is_refused_with_every_line(data, tmp_path: Path):
    client, backend = make_client()
    bad = write_jsonl(tmp_path / "bad.jsonl", [*reversal_rows(3), "nope", {"messages": []}])
    with pytest.raises(DataError) as info:
        client.submit(spec({"train": str(bad)}))
    assert [d.split(": ")[0] for d in info.value.details] == [f"{bad}:4", f"{bad}:5"]
    assert backend.calls == [] and client.registry.list_jobs() == []


def test_data_in_the_wrong_format_for_the_method(data, tmp_path: Path):
    client, _ = make_client()
    pref = write_jsonl(tmp_path / "pref.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}] * 3)
    with pytest.raises(CapabilityError, match="needs one of: chat, completion, instruction"):
        client.submit(spec({"train": str(pref)}))


def test_over_budget_is_refused_before_anything_is_recorded(data):
    client, backend = make_client(ScriptedBackend(price=12.5))
    with pytest.raises(BudgetExceededError, match=r"12\.50 USD, above budget_usd 5\.00"):
        client.submit(spec(data, budget_usd=5))
    assert "submit" not in backend.calls and client.registry.list_jobs() == []


def test_job_row_is_written_before_the_backend_is_called(data):
    client, backend = make_client()
    seen = {}

    def check(request):
        job = client.registry.get_job(request.job_id)
        seen["status"] = job.status
        seen["fingerprint"] = job.dataset_fingerprint

    backend.on_submit = check
    job = client.submit(spec(data))
    assert seen["status"] is JobStatus.PENDING and seen["fingerprint"].startswith("sha256:")
    assert job.provider_job_id == f"remote-{job.id}"


def test_a_failed_submit_leaves_a_failed_job_with_the_reason(data):
    client, backend = make_client()
    backend.fail_submit = ConnectionError("connection reset")
    with pytest.raises(BackendError, match="connection reset"):
        client.submit(spec(data))
    [job] = client.registry.list_jobs()
    assert job.status is JobStatus.FAILED and "connection reset" in job.error
    assert "submit failed" in client.registry.events(job.id)[-1].message


def test_follow_records_status_events_metrics_and_registers_the_model_once(data):
    client, backend = make_client()
    job = client.submit(spec(data, name="rev"))
    updates = []
    job = client.follow(job.id, interval=0, on_update=lambda j, ev: updates.append((j.status, len(ev))))
    assert job.status is JobStatus.SUCCEEDED and job.provider_status == "completed"
    assert job.artifact.model_id == f"ft:remote-{job.id}"
    assert [s for s, _ in updates][-1] is JobStatus.SUCCEEDED
    assert JobStatus.RUNNING in [s for s, _ in updates]
    metrics = client.registry.events(job.id, kind="metric")
    assert [e.data["step"] for e in metrics] == [1, 2, 3]
    client.refresh(job.id)
    client.refresh(job.id)
    assert backend.calls.count("result") == 1
    [model] = client.registry.models_for_job(job.id)
    assert model.ref == "rev@1" and model.dataset_fingerprint == job.dataset_fingerprint
    assert job.started_at is not None and job.finished_at is not None


def test_a_backwards_status_from_the_provider_is_ignored_and_noted(data):
    backend = ScriptedBackend(
        script=[
            (JobStatus.RUNNING, "running"),
            (JobStatus.QUEUED, "queued"),
            (JobStatus.VALIDATING, "validating_files"),
            (JobStatus.FAILED, "error"),
        ]
    )
    client, _ = make_client(backend)
    job = client.follow(client.submit(spec(data)).id, interval=0)
    assert job.status is JobStatus.FAILED and job.error == "boom"
    messages = [e.message for e in client.registry.events(job.id)]
    assert any("ignored a status change from queued to validating" in m for m in messages)


def test_cancel(data):
    backend = ScriptedBackend(script=[(JobStatus.RUNNING, "running")])
    client, _ = make_client(backend)
    job = client.submit(spec(data))
    job = client.cancel(job.id)
    assert job.status is JobStatus.CANCELLED and "cancel" in backend.calls
    assert client.cancel(job.id).status is JobStatus.CANCELLED  # idempotent


def test_validation_split_and_leakage_warnings(data, tmp_path: Path):
    client, _ = make_client()
    rows = reversal_rows(60, seed=3)
    leaky_test = write_jsonl(tmp_path / "leaky.jsonl", rows[:5])
    pre = client.preflight(spec({"train": data["train"], "test": str(leaky_test), "validation_split": 0.2}))
    assert pre.data.validation is not None
    assert pre.data.train.rows + pre.data.validation.rows == 50
    assert abs(pre.data.validation.rows - 10) <= 2
    assert any("share a prompt with the training data" in w for w in pre.warnings)


def test_evaluate_scores_base_and_fine_tuned_and_stores_both(data):
    client, _ = make_client()
    job = client.follow(client.submit(spec(data, name="rev")).id, interval=0)
    result = client.evaluate(job.id, EvalSpec(metrics=["exact_match", "token_f1"]))
    assert result.subject("base").metrics["exact_match"] == 0.0
    assert result.subject("fine-tuned").metrics["exact_match"] == 1.0
    assert result.n == 10
    stored = client.registry.evaluations(job_id=job.id)
    assert [e.subject for e in stored] == ["base", "fine-tuned"]
    assert stored[1].model_name == "rev" and stored[1].model_version == 1
    assert stored[1].dataset_fingerprint == result.dataset_fingerprint


def test_evaluate_needs_a_succeeded_job_and_data(data):
    from anytune.errors import UsageError

    backend = ScriptedBackend(script=[(JobStatus.RUNNING, "running")])
    client, _ = make_client(backend)
    job = client.submit(spec({"train": data["train"]}))
    with pytest.raises(UsageError, match="has not succeeded"):
        client.evaluate(job.id)
    backend.script = [(JobStatus.SUCCEEDED, "completed")]
    with pytest.raises(UsageError, match="no evaluation data"):
        client.evaluate(job.id)


def test_resume_finds_the_job_the_provider_already_made(data):
    """The provider created the job but the answer was lost: resume must adopt it, not create another."""
    client, backend = make_client()
    lost = ConnectionError("connection dropped after create")
    lost.after_create = True
    backend.fail_submit = lost
    pre = client.preflight(spec(data))
    job = client.registry.create_job(
        pre.spec, data=pre.prepared.model_dump(mode="json")
    )  # recorded, then crash
    from anytune.hookspecs import SubmitRequest

    with pytest.raises(ConnectionError):
        backend.submit(SubmitRequest(job_id=job.id, spec=pre.spec, prepared=pre.prepared))
    backend.fail_submit = None
    job = client.resume(job.id)
    assert backend.calls.count("submit") == 1 and "find_existing" in backend.calls
    assert job.provider_job_id == f"remote-{job.id}" and job.status is not JobStatus.PENDING
    assert any("found the job" in e.message for e in client.registry.events(job.id))


def test_resume_submits_when_the_provider_never_saw_the_job(data):
    client, backend = make_client()
    pre = client.preflight(spec(data))
    job = client.registry.create_job(pre.spec, data=pre.prepared.model_dump(mode="json"))
    job = client.resume(job.id)
    assert backend.calls.count("submit") == 1 and job.provider_ref is not None
    from anytune.errors import UsageError

    with pytest.raises(UsageError, match="nothing to resume"):
        client.resume(job.id)
