"""Amazon Bedrock through boto3 against moto's real server (S3, IAM, Bedrock) and the plugin's thin front for
what moto lacks (job ends, metrics, idempotent creates, Converse): upload, create, poll, stop, list, limits
refused before any upload, the retired Claude 3 Haiku, a Nova job to Completed, registered and evaluated."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anytune.client import Client
from anytune.errors import CapabilityError, DataError
from anytune.jobfile import spec_from_dict
from anytune.jobs import JobStatus
from anytune.testing import emulated
from anytune_bedrock.backend import BedrockBackend, job_name
from tests.conftest import anytune_in_process, chat_splits, cli_env, reversal_rows, run_anytune, write_jsonl

SECRET = "bedrock-emulator-secret-0123456789"
NOVA = "amazon.nova-micro-v1:0:128k"
LLAMA = "meta.llama3-1-8b-instruct-v1:0:128k"


@pytest.fixture
def emu() -> Iterator[Any]:
    with emulated("bedrock", api_key=SECRET, tick=10.0) as emulator:
        yield emulator


def spec(data: dict[str, str], **extra: Any) -> Any:
    raw = {
        "name": "bedrock-test",
        "base_model": NOVA,
        "provider": "bedrock",
        "suffix": "rev",
        "data": data,
        "hyperparameters": {"epochs": 2, "learning_rate": 2e-5},
    }
    raw.update(extra)
    return spec_from_dict(raw)


def s3_keys(emu: Any, bucket: str = "anytune-emulated") -> list[str]:
    return [o["Key"] for o in emu._aws("s3").list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_nova_job_uploads_polls_completes_registers_and_is_evaluated(emu, tmp_path):
    data = chat_splits(tmp_path, seed=5)
    client = Client()
    result = client.run(spec(data, evaluation={"metrics": ["token_f1"], "limit": 10}), interval=0)
    job = result.job
    assert job.status is JobStatus.SUCCEEDED and job.provider_status == "Completed"
    remote = emu._jobs()[job_name(job.id)]
    assert remote.hyper_parameters == {"epochCount": "2", "learningRate": "2e-05"}
    assert remote.customization_type == "FINE_TUNING" and remote.base_model_identifier == NOVA
    assert remote.client_request_token == job_name(job.id)
    [staged] = [k for k in s3_keys(emu) if k.startswith("training/anytune/data/")]
    first = json.loads(
        emu._aws("s3").get_object(Bucket="anytune-emulated", Key=staged)["Body"].read().splitlines()[0]
    )
    assert first["schemaVersion"] == "bedrock-conversation-2024"
    assert first["messages"][0] == {
        "role": "user",
        "content": [{"text": first["messages"][0]["content"][0]["text"]}],
    }
    losses = [e.data["loss"] for e in client.registry.events(job.id) if e.kind == "metric"]
    assert len(losses) == 8 and losses[-1] < losses[0]  # 30 records / 8 per step x 2 epochs, from the CSV
    assert job.artifact is not None and job.artifact.model_id == remote.output_model_arn
    assert job.artifact.metadata["serving"] == "on-demand"
    assert client.registry.get_model("bedrock-test").version == 1
    base, tuned = (s.metrics["token_f1"] for s in result.evaluation.subjects)
    assert tuned > base + 0.3  # the base answers a fixed sentence; the custom model answers like its data


def test_stop_and_list(emu, tmp_path):
    client = Client()
    job = client.submit(spec(chat_splits(tmp_path, seed=6)))
    job = client.follow(client.cancel(job.id).id, interval=0)
    assert job.status is JobStatus.CANCELLED and job.provider_status == "Stopped"
    listed = BedrockBackend().list_jobs("us-east-1")
    assert [(j["jobName"], j["status"]) for j in listed] == [(job.provider_job_id, "Stopped")]


def test_the_backend_signs_with_the_environments_credentials_whatever_boto3_met_first(emu, monkeypatch):
    """boto3's default session keeps the credentials it first resolved for the whole process: an S3 client
    made first under other credentials (the storage tests') made every later Bedrock call sign with them, a
    401 from the emulator, in a shuffled order of the suite (seed 4444). The backend makes its own session."""
    import boto3

    before = boto3.DEFAULT_SESSION
    try:
        boto3.DEFAULT_SESSION = None
        with monkeypatch.context() as other:
            other.setenv("AWS_ACCESS_KEY_ID", "someone-else")
            boto3.client("s3", region_name="us-east-1")  # the default session now holds someone else's key
        assert boto3.DEFAULT_SESSION.get_credentials().access_key == "someone-else"
        assert BedrockBackend().list_jobs("us-east-1") == []  # signed with the emulator's key: no 401
    finally:
        boto3.DEFAULT_SESSION = before


def test_the_same_client_request_token_makes_one_job(emu, tmp_path):
    client = Client()
    job = client.submit(spec(chat_splits(tmp_path, seed=7)))
    remote = emu._jobs()[job.provider_job_id]
    bedrock = emu._aws("bedrock")
    args = {
        "jobName": remote.job_name,
        "customModelName": remote.custom_model_name,
        "roleArn": remote.role_arn,
        "baseModelIdentifier": NOVA,
        "trainingDataConfig": remote.training_data_config,
        "outputDataConfig": remote.output_data_config,
        "hyperParameters": remote.hyper_parameters,
    }
    import boto3

    # through the front, as the backend (a session of its own, as the backend: not the default one)
    bedrock_front = boto3.session.Session().client("bedrock", region_name="us-east-1")
    again = bedrock_front.create_model_customization_job(
        **args, clientRequestToken=remote.client_request_token
    )
    assert again["jobArn"] == remote.job_arn and len(emu.job_ids()) == 1
    with pytest.raises(Exception, match="already exists"):
        bedrock_front.create_model_customization_job(**args, clientRequestToken="another-token")
    assert len(bedrock.list_model_customization_jobs()["modelCustomizationJobSummaries"]) == 1
    # a create whose answer is lost: found again by name, one job
    emu.faults.add(method="POST", path="/model-customization-jobs", drop=True)
    second = Client().submit(spec(chat_splits(tmp_path / "b", seed=8), name="second"))
    assert len(emu.job_ids()) == 2 and second.provider_job_id in emu.job_ids()


def test_bedrock_limits_are_refused_before_any_upload_with_the_line(emu, tmp_path):
    rows: list[Any] = reversal_rows(12, seed=9)
    rows[3]["messages"].append({"role": "user", "content": "and one more question"})  # ends with the user
    rows[6]["messages"] = [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        *rows[6]["messages"][1:],
    ]
    train = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as info:
        Client().submit(spec({"train": str(train)}))
    said = "\n".join(info.value.details)
    assert f"{train}:4: a conversation must end with the assistant's answer" in said
    assert f"{train}:7: two user messages in a row" in said
    few = write_jsonl(tmp_path / "few.jsonl", reversal_rows(5))
    with pytest.raises(DataError, match=r"5 records; amazon\.nova-micro-v1:0:128k trains on 8 to 20,000"):
        Client().submit(spec({"train": str(few)}))
    long = reversal_rows(10)
    long[2]["messages"][1]["content"] = "word " * 10_000  # over Llama 3.1's 4,096 tokens per record
    long_file = write_jsonl(tmp_path / "long.jsonl", long)
    with pytest.raises(DataError, match=rf"{long_file}:3: 10,00\d tokens; {LLAMA} takes 4,096 per record"):
        Client().submit(spec({"train": str(long_file)}, base_model=LLAMA))
    assert not [k for k in s3_keys(emu) if "/data/" in k] and emu.job_ids() == []


def test_claude_3_haiku_is_refused_with_its_end_of_life_and_the_source(emu, tmp_path, capsys):
    job = tmp_path / "haiku.yaml"
    job.write_text(
        json.dumps(
            {
                "name": "haiku",
                "base_model": "anthropic.claude-3-haiku-20240307-v1:0:200k",
                "provider": "bedrock",
                "data": chat_splits(tmp_path, seed=10),
            }
        )
    )
    code, output = anytune_in_process(capsys, "run", str(job))
    said = " ".join(output.split())
    assert code == 2, output
    assert "reached its end of life on 2026-09-10" in said and "model card" in said
    assert "Llama 3.1 8B on together, fireworks or local" in said
    with pytest.raises(CapabilityError, match="cannot customize 'claude-2'"):
        Client().submit(spec(chat_splits(tmp_path, seed=11), base_model="claude-2"))
    assert emu.job_ids() == []


def test_hyperparameters_out_of_bedrocks_ranges_are_refused(emu, tmp_path):
    with pytest.raises(CapabilityError) as info:
        Client().submit(
            spec(chat_splits(tmp_path, seed=12), hyperparameters={"epochs": 6, "learning_rate": 0.01})
        )
    said = "\n".join(info.value.details)
    assert "epochCount from 1 to 5" in said and "learningRate from 1e-06 to 0.0001" in said


def test_a_failed_job_keeps_bedrocks_message(emu, tmp_path):
    client = Client()
    job = client.submit(spec(chat_splits(tmp_path, seed=13)))
    emu.fail(job.provider_job_id, "Data validation failed: record 3 is too long")
    job = client.follow(job.id, interval=0)
    assert job.status is JobStatus.FAILED and job.error == "Data validation failed: record 3 is too long"


def test_quote_shows_training_apart_from_monthly_and_hourly_costs(tmp_path, capsys):
    data = chat_splits(tmp_path, seed=14)
    job = tmp_path / "q.yaml"
    job.write_text(
        json.dumps(
            {
                "name": "q",
                "base_model": LLAMA,
                "provider": "bedrock",
                "data": data,
                "hyperparameters": {"epochs": 2},
            }
        )
    )
    code, output = anytune_in_process(capsys, "quote", str(job), "--providers", "bedrock", "--json")
    assert code == 0, output
    [quote] = json.loads(output[output.index("{") :])["quotes"]
    assert quote["available"] and quote["price"] > 0 and quote["unit_price"] == 1.49
    recurring = {r["unit"]: r for r in quote["recurring"]}
    assert recurring["month"]["price"] == 1.95 and "storing" in recurring["month"]["what"]
    assert recurring["hour"]["price"] == 24.0 and "Provisioned Throughput" in recurring["hour"]["what"]
    code, table = anytune_in_process(capsys, "quote", str(job), "--providers", "all")
    flat = " ".join(table.split())
    assert code == 0 and "bedrock: then 1.95 USD per month (storing the custom model)" in flat
    assert "bedrock: then 24.00 USD per hour (Provisioned Throughput" in flat


@pytest.mark.slow
def test_anywhere_example_runs_on_bedrock_with_only_the_provider_flag(tmp_path):
    from anytune.testing import free_port
    from tests.conftest import emulator_cli

    port = free_port()
    env = cli_env(
        tmp_path,
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="AKIAANYTUNEEMULATOR0",
        AWS_SECRET_ACCESS_KEY="cli-secret-0123456789",
        AWS_DEFAULT_REGION="us-east-1",
        ANYTUNE_BEDROCK_S3_URI="s3://anytune-emulated/training",
        ANYTUNE_BEDROCK_ROLE_ARN="arn:aws:iam::123456789012:role/anytune-bedrock",
    )
    example = Path(__file__).resolve().parents[1] / "examples" / "anywhere.yaml"
    with emulator_cli("bedrock", env, port, speed=60):
        run = run_anytune("run", str(example), "--provider", "bedrock", env=env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "succeeded in" in run.stdout and "held-out evaluation" in run.stdout
    assert "model registered as reverse-letters-anywhere@1: arn:aws:bedrock:us-east-1" in run.stdout
