"""The Azure OpenAI backend, driving the real `openai` SDK's `AzureOpenAI` client against the Azure emulator
(served by the OpenAI plugin) on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anytune.client import Client
from anytune.errors import CapabilityError
from anytune.jobfile import spec_from_dict
from anytune.jobs import JobStatus
from anytune.registry import Registry
from anytune.spec import JobSpec
from anytune_openai.azure_emulator import AzureOpenAIEmulator
from tests.conftest import (
    AZURE_TEST_KEY,
    anytune_in_process,
    chat_splits,
    cli_env,
    emulated,
    emulator_cli,
    preference_rows,
    run_anytune,
    write_jsonl,
)

KEY = AZURE_TEST_KEY
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BASE = "gpt-4o-mini-2024-07-18"


@pytest.fixture
def azure(azure_emu: AzureOpenAIEmulator) -> AzureOpenAIEmulator:
    """As Azure is: nothing deployed but what a test deploys (`anytune emulate` deploys everything)."""
    azure_emu.auto_deploy = False
    azure_emu.deployments.clear()
    return azure_emu


def azure_spec(data: dict[str, str], **extra: object) -> JobSpec:
    return spec_from_dict(
        {
            "name": "az-test",
            "base_model": "gpt-4o-mini",
            "provider": "azure-openai",
            "data": data,
            "hyperparameters": {"epochs": 2},
            "evaluation": {"metrics": ["token_f1"]},
            **extra,
        }
    )


def creates(emu: AzureOpenAIEmulator) -> list[dict]:
    return [
        json.loads(e.request_body)
        for e in emu.recorder.exchanges
        if e.method == "POST" and e.path == "/openai/fine_tuning/jobs"
    ]


def test_sft_on_azure_to_succeeded_registered_and_evaluated_through_deployments(azure, tmp_path):
    azure.deployments.update({"my-base": BASE, "my-tune": "pending"})
    spec = azure_spec(
        chat_splits(tmp_path, seed=41),
        provider_options={
            "azure-openai": {
                "training_type": "globalstandard",
                "deployment": "my-tune",
                "base_deployment": "my-base",
            }
        },
    )
    client = Client()
    job = client.submit(spec)
    seen = {job.provider_status}
    while not job.status.terminal:
        job = client.refresh(job.id)
        seen.add(job.provider_status)
        if job.status is JobStatus.SUCCEEDED:
            azure.deployments["my-tune"] = job.artifact.model_id  # deployed once trained, as on Azure
    assert job.status is JobStatus.SUCCEEDED and "pending" in seen  # Azure's word for queued
    assert job.artifact.model_id == f"{BASE}.ft-{job.provider_job_id[-12:]}"
    assert str(job.artifact.base_model_retires) == "2027-10-01"  # deployments retire after training does
    # what went over the wire: Azure's paths, api-version, api-key, and the training type it requires
    exchanges = azure.recorder.exchanges
    assert all("api-version=" in e.query for e in exchanges)
    assert all(e.request_headers.get("api-key") == KEY for e in exchanges)
    [body] = creates(azure)
    assert body["trainingType"] == "globalstandard" and body["model"] == BASE
    # priced at the tier, with the hourly hosting apart
    assert job.cost.actual == pytest.approx(job.cost.trained_tokens * 2.40 / 1e6)
    assert [r.unit for r in job.cost.recurring] == ["hour"] and job.cost.recurring[0].price == 1.70
    [model] = client.registry.models_for_job(job.id)
    result = client.evaluate(job.id)
    scores = {s.subject: s.metrics["token_f1"] for s in result.subjects}
    assert scores["fine-tuned"] > scores["base"]
    chats = [e.path for e in exchanges if e.path.endswith("/chat/completions")]
    assert "/openai/deployments/my-base/chat/completions" in chats
    assert "/openai/deployments/my-tune/chat/completions" in chats
    assert model.ref == "az-test@1"


def test_dpo_on_azure(azure, tmp_path):
    train = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(12))
    spec = azure_spec(
        {"train": str(train)}, base_model="gpt-4.1-mini", method={"type": "dpo", "beta": 0.2}, evaluation=None
    )
    job = Client().submit(spec)
    job = Client().follow(job.id, interval=0)
    assert job.status is JobStatus.SUCCEEDED
    [body] = creates(azure)
    assert body["method"]["type"] == "dpo" and body["method"]["dpo"]["hyperparameters"]["beta"] == 0.2
    assert body["trainingType"] == "standard"  # the default: data stays in the resource's region


def test_the_emulator_answers_a_create_without_training_type_as_azure_does(azure, tmp_path):
    """Other layers forgot the field and got a misleading answer; anytune always sends it (above)."""
    import openai

    client = openai.AzureOpenAI(
        azure_endpoint=str(azure_endpoint(azure)), api_key=KEY, api_version="2025-04-01-preview"
    )
    upload = client.files.create(
        file=("t.jsonl", (Path(chat_splits(tmp_path, seed=2)["train"])).read_bytes()), purpose="fine-tune"
    )
    with pytest.raises(openai.BadRequestError, match="does not support fine-tuning"):
        client.fine_tuning.jobs.create(model=BASE, training_file=upload.id)


def azure_endpoint(emu: AzureOpenAIEmulator) -> str:
    import os

    return os.environ["AZURE_OPENAI_ENDPOINT"]


def test_a_retired_azure_model_is_refused_with_its_date_and_source(azure, tmp_path, monkeypatch):
    prices = tmp_path / "retired.yaml"
    prices.write_text(
        "prices:\n"
        f"  - {{provider: azure-openai, model: {BASE}, tier: standard, unit: 1m_tokens, price: 3.0,"
        " retires: 2026-11-01}\n"
        "sources:\n  azure-openai: {source: our contract, seen: 2026-11-20,"
        " retires_source: 'Azure model retirements page, 2026-10'}\n"
    )
    monkeypatch.setenv("ANYTUNE_PRICES", str(prices))
    with pytest.raises(CapabilityError) as info:
        Client().submit(azure_spec(chat_splits(tmp_path, seed=5)))
    text = " ".join(info.value.details)
    assert "was retired for fine-tuning on 2026-11-01" in text and "Azure model retirements page" in text
    assert azure.recorder.exchanges == []


def test_azure_retirement_dates_ship_in_the_catalog_with_their_source(azure, tmp_path, monkeypatch):
    monkeypatch.setenv("ANYTUNE_TODAY", "2027-05-02")
    with pytest.raises(CapabilityError) as info:
        Client().submit(azure_spec(chat_splits(tmp_path, seed=12)))
    text = " ".join(info.value.details)
    assert "retired for fine-tuning on 2027-04-01; its fine-tunes serve until 2027-10-01" in text
    assert "MicrosoftDocs/azure-ai-docs" in text
    monkeypatch.setenv("ANYTUNE_TODAY", "2027-03-01")  # within 60 days: a warning, and the job goes ahead
    pre = Client().preflight(azure_spec(chat_splits(tmp_path, seed=12)))
    assert any("takes no new fine-tuning jobs from 2027-04-01, in 31 days" in w for w in pre.warnings)


def test_dpo_and_regions_as_azure_offers_them(azure, tmp_path):
    data = chat_splits(tmp_path, seed=13)
    pairs = {"train": str(write_jsonl(tmp_path / "pairs.jsonl", preference_rows(12)))}
    with pytest.raises(CapabilityError, match="can be tuned with: sft"):  # DPO on 4o and 4.1, not on 4o-mini
        Client().submit(azure_spec(pairs, method={"type": "dpo"}, evaluation=None))
    regional = {"azure-openai": {"region": "westeurope"}}
    with pytest.raises(CapabilityError, match="standard training of gpt-4o-mini-2024-07-18 is offered in"):
        Client().submit(azure_spec(data, provider_options=regional))
    regional["azure-openai"]["training_type"] = "globalstandard"  # West Europe trains on the global tier
    assert Client().preflight(azure_spec(data, provider_options=regional)).quote.price > 0


def test_a_dropped_create_makes_one_azure_job(azure, tmp_path):
    azure.faults.add(method="POST", path="/openai/fine_tuning/jobs", drop=True)
    job = Client().submit(azure_spec(chat_splits(tmp_path, seed=6), evaluation=None))
    assert len(azure.jobs) == 1 and job.provider_job_id == next(iter(azure.jobs))
    assert len(creates(azure)) == 1


def test_the_azure_key_is_never_stored(azure, tmp_path):
    job = Client().follow(Client().submit(azure_spec(chat_splits(tmp_path, seed=7), evaluation=None)).id)
    assert job.status is JobStatus.SUCCEEDED
    home = Path(__import__("os").environ["ANYTUNE_HOME"])
    for path in home.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_missing_azure_settings_are_credentials_problems(tmp_path, monkeypatch, capsys):
    for name in ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_AD_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    train = chat_splits(tmp_path, 1)["train"]
    job = tmp_path / "job.yaml"
    job.write_text(f"base_model: gpt-4o-mini\nprovider: azure-openai\ndata: {{train: {train}}}\n")
    code, output = anytune_in_process(capsys, "run", str(job))
    assert code == 2 and "AZURE_OPENAI_ENDPOINT" in output and "AZURE_OPENAI_API_KEY" in output
    assert Registry().list_jobs(limit=None) == []


def test_openai_sft_example_runs_on_azure_and_quotes_show_hosting_apart(tmp_path):
    from anytune.testing import free_port

    port = free_port()
    env = cli_env(
        tmp_path,
        AZURE_OPENAI_ENDPOINT=f"http://127.0.0.1:{port}",
        AZURE_OPENAI_API_KEY="az-emulator-cli-key",
        OPENAI_API_VERSION="2025-04-01-preview",
        OPENAI_API_KEY="sk-unused-for-quotes",
        ANYTUNE_TODAY="2026-11-28",
    )
    quote = run_anytune(
        "quote", str(EXAMPLES / "openai-sft.yaml"), "--providers", "openai,azure-openai", "--json", env=env
    )
    assert quote.returncode == 0, quote.stderr
    rows = {r["provider"]: r for r in json.loads(quote.stdout)["quotes"]}
    assert rows["openai"]["recurring"] == []
    [hosting] = rows["azure-openai"]["recurring"]
    assert hosting["unit"] == "hour" and hosting["price"] > 0 and rows["azure-openai"]["price"] > 0
    with emulator_cli("azure-openai", env, port, speed=20):
        run = run_anytune(
            "run", str(EXAMPLES / "openai-sft.yaml"), "--provider", "azure-openai", env=env, timeout=180
        )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "succeeded" in run.stdout and "token_f1" in run.stdout


def test_an_openai_job_migrates_to_azure_with_its_data_and_lineage(azure, tmp_path, monkeypatch, capsys):
    with emulated("openai", api_key="sk-openai-for-migration-0123456789", tick=3.0) as openai_emu:
        client = Client()
        spec = azure_spec(chat_splits(tmp_path, seed=8), provider="openai", evaluation=None)
        first = client.follow(client.submit(spec).id, interval=0)
        assert first.status is JobStatus.SUCCEEDED and len(openai_emu.jobs) == 1
    code, output = anytune_in_process(
        capsys,
        "jobs",
        "migrate",
        first.id,
        "--to",
        "azure-openai",
        "--set",
        "provider_options.azure-openai.training_type=globalstandard",
    )
    assert code == 0, output
    [moved] = [j for j in Registry().list_jobs(limit=None) if j.provider == "azure-openai"]
    assert moved.status is JobStatus.SUCCEEDED and moved.spec.data == first.spec.data
    assert creates(azure)[0]["trainingType"] == "globalstandard"
    assert [m.ref for m in Registry().models_for_job(moved.id)] == [
        "az-test@2"
    ]  # the same model, a new version
    assert any(f"migrated from {first.id}" in e.message for e in Registry().events(moved.id))
    assert any(f"migrated to {moved.id}" in e.message for e in Registry().events(first.id))
    code, shown = anytune_in_process(capsys, "jobs", "show", moved.id)
    assert "hosting a deployment of the fine-tune: 1.70 USD per hour" in " ".join(shown.split())


def test_a_deployment_made_for_evaluation_is_deleted_and_its_hosting_added_to_the_cost(
    azure, tmp_path, monkeypatch
):
    import os

    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "sub-0001")
    monkeypatch.setenv("AZURE_RESOURCE_GROUP", "rg-tuning")
    monkeypatch.setenv("AZURE_OPENAI_RESOURCE", "my-aoai")
    monkeypatch.setenv("AZURE_MANAGEMENT_TOKEN", KEY)  # the emulator takes its key as the Bearer token
    monkeypatch.setenv("AZURE_MANAGEMENT_ENDPOINT", os.environ["AZURE_OPENAI_ENDPOINT"])
    azure.deployments["my-base"] = BASE
    spec = azure_spec(
        chat_splits(tmp_path, seed=9),
        provider_options={"azure-openai": {"create_deployment": True, "base_deployment": "my-base"}},
    )
    result = Client().run(spec)
    assert result.job.status is JobStatus.SUCCEEDED and result.evaluation is not None
    scores = {s.subject: s.metrics["token_f1"] for s in result.evaluation.subjects}
    assert scores["fine-tuned"] > scores["base"]
    managed = [e for e in azure.recorder.exchanges if e.path.startswith("/subscriptions/sub-0001/")]
    methods = [e.method for e in managed]
    assert methods[0] == "PUT" and methods[-1] == "DELETE" and "GET" in methods
    assert (
        "/providers/Microsoft.CognitiveServices/accounts/my-aoai/deployments/anytune-eval-" in managed[0].path
    )
    assert azure.deployments == {"my-base": BASE}  # the evaluation's deployment is gone
    job = Registry().get_job(result.job.id)
    assert any(n.startswith("serving for evaluation") for n in job.cost.notes)
    assert job.cost.actual > job.cost.trained_tokens * 3.00 / 1e6  # the standard tier's training, and hosting
    # a second evaluation in the same process adds its own deployment's hosting, not the first one's again
    from anytune.plugins import get_plugin_manager

    backend = get_plugin_manager().get_backend("azure-openai")
    assert backend.serving_cost(result.job.artifact) is None  # the first one was counted, once
    backend._serving[result.job.artifact.model_id] = 0.5  # what a second deployment cost
    from anytune.pipeline.evaluate import add_serving_costs

    client = Client()
    add_serving_costs(client.pipeline, [client.resolve_target(result.job.id)])
    assert Registry().get_job(result.job.id).cost.actual == pytest.approx(job.cost.actual + 0.5)


def test_creating_a_deployment_needs_the_management_settings(azure, tmp_path, monkeypatch):
    for name in (
        "AZURE_SUBSCRIPTION_ID",
        "AZURE_RESOURCE_GROUP",
        "AZURE_OPENAI_RESOURCE",
        "AZURE_MANAGEMENT_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    spec = azure_spec(
        chat_splits(tmp_path, seed=10), provider_options={"azure-openai": {"create_deployment": True}}
    )
    with pytest.raises(CapabilityError, match="AZURE_SUBSCRIPTION_ID"):
        Client().submit(spec)
    assert azure.recorder.exchanges == []


def test_a_file_over_the_upload_limit_goes_through_blob_storage(azure, tmp_path, monkeypatch):
    import os

    from anytune.plugins import get_plugin_manager

    monkeypatch.setenv(
        "AZURE_OPENAI_BLOB_CONTAINER_URL",
        os.environ["AZURE_OPENAI_ENDPOINT"] + "/_blob/training?sv=1&sig=abc123",
    )
    backend = get_plugin_manager().get_backend("azure-openai")
    monkeypatch.setattr(backend, "upload_limit", 1024)  # the 30-example file stands in for a 600 MB one
    client = Client()
    first = client.follow(client.submit(azure_spec(chat_splits(tmp_path, seed=11), evaluation=None)).id)
    assert first.status is JobStatus.SUCCEEDED
    [blob] = azure.blobs  # put once...
    assert blob.startswith("training/anytune-")
    imports = [e for e in azure.recorder.exchanges if e.path == "/openai/files/import"]
    assert len(imports) == 1 and json.loads(imports[0].request_body)["content_url"].endswith("sig=abc123")
    direct = [e for e in azure.recorder.exchanges if e.method == "POST" and e.path == "/openai/files"]
    assert direct == []  # ...imported, not uploaded through the API
    second = client.submit(azure_spec(chat_splits(tmp_path, seed=11), evaluation=None, suffix="again"))
    assert second.provider_job_id != first.provider_job_id
    assert (
        len([e for e in azure.recorder.exchanges if e.path == "/openai/files/import"]) == 1
    )  # found, not again


def test_a_microsoft_entra_token_provider_authenticates_every_call(azure, tmp_path, monkeypatch):
    """AZURE_OPENAI_AUTH=entra: tokens come from azure-identity's provider, fresh for each request (here a
    stand-in for the package, whose DefaultAzureCredential needs a real tenant)."""
    import sys
    import types

    asked: list[str] = []
    identity = types.ModuleType("azure.identity")
    identity.DefaultAzureCredential = lambda: "credential"  # type: ignore[attr-defined]

    def provider(credential: str, scope: str):  # type: ignore[no-untyped-def]
        def token() -> str:
            asked.append(scope)
            return KEY  # the emulator takes its key as the Bearer token

        return token

    identity.get_bearer_token_provider = provider  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "azure", types.ModuleType("azure"))
    monkeypatch.setitem(sys.modules, "azure.identity", identity)
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")
    monkeypatch.setenv("AZURE_OPENAI_AUTH", "entra")
    job = Client().follow(Client().submit(azure_spec(chat_splits(tmp_path, seed=14), evaluation=None)).id)
    assert job.status is JobStatus.SUCCEEDED
    assert asked and set(asked) == {"https://cognitiveservices.azure.com/.default"}
    assert all(e.request_headers.get("authorization") == f"Bearer {KEY}" for e in azure.recorder.exchanges)


def test_entra_without_azure_identity_says_what_to_install(azure, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "azure.identity", None)  # not installed
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")
    monkeypatch.setenv("AZURE_OPENAI_AUTH", "entra")
    from anytune.errors import CredentialsError

    with pytest.raises(CredentialsError, match="pip install azure-identity"):
        Client().submit(azure_spec(chat_splits(tmp_path, seed=15), evaluation=None))
    assert Registry().list_jobs(limit=None) == [] and azure.recorder.exchanges == []


def test_the_endpoint_and_api_version_can_come_from_provider_options(azure, tmp_path, monkeypatch):
    import os

    endpoint = os.environ["AZURE_OPENAI_ENDPOINT"]
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    options = {"azure-openai": {"endpoint": endpoint, "api_version": "2024-10-21"}}
    client = Client()
    job = client.follow(
        client.submit(azure_spec(chat_splits(tmp_path, seed=16), provider_options=options)).id
    )
    assert job.status is JobStatus.SUCCEEDED  # every poll went where the job was created
    assert {e.query.split("api-version=")[1].split("&")[0] for e in azure.recorder.exchanges} == {
        "2024-10-21"
    }
