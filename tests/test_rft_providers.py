"""One RFT job file, with one `multi` grader (a string check and a similarity), run unchanged on each hosted
provider's emulator: the grader compiled to what each provider runs, the job ending succeeded and registered
with its reward per step in the events; and each provider's refusals before anything is recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from anytune.client import Client
from anytune.jobfile import load_job_file
from anytune.jobs import JobStatus
from anytune.spec import EvalSpec
from tests.conftest import reversal_rows, write_jsonl

GRADER = {
    "type": "multi",
    "graders": {
        "exact": {"type": "string_check", "operation": "iequals", "reference": "{{item.reference}}"},
        "close": {"type": "text_similarity", "metric": "fuzzy_match", "reference": "{{item.reference}}"},
    },
    "formula": "0.6 * exact + 0.4 * close",
}


def job_file(folder: Path, local_model: Path | None = None, **method: Any) -> Path:
    """The one job file: a base model per provider, the same data and grader everywhere."""
    rows = reversal_rows(60, seed=7)
    train = write_jsonl(folder / "train.jsonl", rows[:48])
    validation = write_jsonl(folder / "val.jsonl", rows[48:])
    job = {
        "name": "rft-everywhere",
        "base_model": "o4-mini",
        "provider": "azure-openai",
        "method": {"type": "rft", "grader": GRADER, "samples_per_prompt": 4, **method},
        "data": {"train": str(train), "validation": str(validation)},
        "hyperparameters": {"epochs": 3, "batch_size": 16},
        "provider_options": {
            "fireworks": {"base_model": "accounts/fireworks/models/qwen3-8b"},
            "bedrock": {"base_model": "amazon.nova-2-lite-v1:0:256k"},
            "local": {
                "base_model": str(local_model or "HuggingFaceTB/SmolLM2-135M-Instruct"),
                "logging_steps": 2,
            },
        },
    }
    path = folder / "rft.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def run_to_end(client: Client, path: Path, provider: str) -> Any:
    spec = load_job_file(path, provider=provider)
    job = client.submit(spec)
    for _ in range(200):
        if job.status.terminal:
            break
        job = client.refresh(job.id)
    return job


def rewards_of(client: Client, job_id: str) -> list[float]:
    return [e.data["reward"] for e in client.events(job_id) if e.kind == "metric" and "reward" in e.data]


def check_succeeded_with_rising_reward(client: Client, job: Any, folder: Path) -> list[float]:
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert client.registry.get_model("rft-everywhere").job_id == job.id  # registered under the job's name
    rewards = rewards_of(client, job.id)
    assert len(rewards) >= 2, rewards
    assert sum(rewards[-2:]) / 2 > sum(rewards[:2]) / 2, rewards  # the emulated policy learns the grader
    scored = client.evaluate(  # the job's own grader as the metric: base and fine-tuned, with intervals
        job.id, EvalSpec(data=str(folder / "val.jsonl"), metrics=["grader"], max_new_tokens=16)
    )
    base, tuned = scored.subject("base"), scored.subject("fine-tuned")
    assert tuned.metrics["grader"] > base.metrics["grader"] and "grader" in tuned.ci, (base, tuned)
    written = client.report([job.id], folder / "report")  # the reward curve is in the report
    assert any(image.name == "reward.png" for image in written.images)
    return rewards


def test_the_rft_job_file_runs_on_azure_openai(azure_emu, tmp_path):
    client = Client()
    job = run_to_end(client, job_file(tmp_path), "azure-openai")
    rewards = check_succeeded_with_rising_reward(client, job, tmp_path)
    print("azure-openai rewards", rewards)
    [create] = [e for e in azure_emu.recorder.exchanges if e.method == "POST" and e.path.endswith("/jobs")]
    import json

    method = json.loads(create.request_body)["method"]
    assert method["type"] == "reinforcement"
    grader = method["reinforcement"]["grader"]
    assert grader["type"] == "multi" and grader["calculate_output"] == "0.6 * exact + 0.4 * close"
    # iequals has no OpenAI operation: it runs as anytune's own rules in a python grader
    assert grader["graders"]["exact"]["type"] == "python"
    assert method["reinforcement"]["hyperparameters"]["n_epochs"] == 3


def test_the_rft_job_file_runs_on_fireworks_with_a_generated_evaluator(tmp_path):
    from anytune.testing import emulated

    with emulated("fireworks", api_key="fw-emulator-rft-0123456789abcdef", tick=3.0) as emu:
        client = Client()
        job = run_to_end(client, job_file(tmp_path), "fireworks")
        rewards = check_succeeded_with_rising_reward(client, job, tmp_path)
        print("fireworks rewards", rewards)
        [evaluator] = emu.evaluators.values()  # the grader as Fireworks runs it: anytune's rules in main.py
        assert evaluator.state == "ACTIVE"
        source = evaluator.body["criteria"][0]["codeSnippets"]["fileContents"]["main.py"]
        assert "def evaluate(" in source and "0.6 * exact + 0.4 * close" in source
        [rft] = [j for j in emu.jobs.values() if j.kind == "rft"]
        assert rft.body["evaluator"] == evaluator.name
        assert rft.body["lossConfig"]["method"] == "GRPO"
        assert rft.body["inferenceParameters"]["responseCandidatesCount"] == 4
        quote = client.quote(
            load_job_file(tmp_path / "rft.yaml", provider="fireworks"), providers=["fireworks"]
        )
        assert quote


def test_the_rft_job_file_runs_on_bedrock_with_its_lambda_created_in_moto(tmp_path):
    from anytune.testing import emulated

    with emulated("bedrock", api_key="bedrock-emulator-rft-0123456789", tick=10.0) as emu:
        client = Client()
        job = run_to_end(client, job_file(tmp_path), "bedrock")
        rewards = check_succeeded_with_rising_reward(client, job, tmp_path)
        print("bedrock rewards", rewards)
        lambdas = emu._aws("lambda").list_functions()["Functions"]  # the grader, deployed with boto3 in moto
        [function] = [f for f in lambdas if f["FunctionName"].startswith("anytune-grader-")]
        assert function["Role"].endswith(":role/anytune-bedrock") and function["Handler"].endswith(
            "lambda_handler"
        )
        [name] = emu.rft  # the job's rftConfig names that Lambda, with Bedrock's hyperparameters
        config = emu.rft[name]
        assert config["graderConfig"]["lambdaGrader"]["lambdaArn"] == function["FunctionArn"]
        assert config["hyperParameters"] == {"epochCount": 3, "batchSize": 16, "trainingSamplePerPrompt": 4}


def test_the_rft_job_file_runs_locally_as_grpo(tiny_model, tmp_path):
    """The same file on the local backend: TRL's GRPO with the grader's parts as reward functions (whether the
    reward rises on a learnable task is test_local_methods' RFT test; here: the file runs unchanged)."""
    client = Client()
    spec = load_job_file(job_file(tmp_path, tiny_model), provider="local")
    spec = spec.model_copy(
        update={
            "adapter": spec.adapter,
            "hyperparameters": spec.hyperparameters.model_copy(update={"max_steps": 6}),
        }
    )
    job = client.follow(client.submit(spec).id, interval=0.3, timeout=600)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert client.registry.get_model("rft-everywhere").job_id == job.id
    rewards = rewards_of(client, job.id)
    assert len(rewards) >= 2 and all(0 <= r <= 1 for r in rewards), rewards
    scored = client.evaluate(
        job.id, EvalSpec(data=str(tmp_path / "val.jsonl"), metrics=["grader"], limit=6, max_new_tokens=4)
    )
    assert "grader" in scored.subject("fine-tuned").ci and "grader" in scored.subject("base").ci
    written = client.report([job.id], tmp_path / "report")
    assert any(image.name == "reward.png" for image in written.images)


JUDGE = {"type": "model_judge", "model": "gpt-4o-mini", "prompt": "Rate {{sample.output_text}} from 0 to 10"}


def refuse(capsys: Any, path: Path, provider: str, *sets: str) -> str:
    """`anytune run FILE --provider X` exits 2 before anything is recorded: its words, flattened."""
    from tests.conftest import anytune_in_process

    args = ["run", str(path), "--provider", provider, "--detach"]
    for item in sets:
        args += ["--set", item]
    code, output = anytune_in_process(capsys, *args)
    assert code == 2, output
    code, listing = anytune_in_process(capsys, "jobs", "list", "--json")
    assert code == 0 and json.loads(listing[listing.index("[") :]) == [], listing
    return " ".join(output.split())


def test_each_providers_refusals_come_before_anything_is_recorded_or_uploaded(
    azure_emu, tmp_path, capsys, monkeypatch
):
    from anytune.testing import emulated

    path = job_file(tmp_path)
    raw = yaml.safe_load(path.read_text())
    two = tmp_path / "two.yaml"  # two top-level graders: averaged elsewhere, refused by Azure (one grader)
    two.write_text(
        yaml.safe_dump({**raw, "method": {**raw["method"], "grader": list(GRADER["graders"].values())}})
    )
    judged = tmp_path / "judged.yaml"
    judged.write_text(
        yaml.safe_dump(
            {
                **raw,
                "method": {
                    **raw["method"],
                    "grader": {
                        **GRADER,
                        "graders": {**GRADER["graders"], "judge": JUDGE},
                        "formula": "0.4 * exact + 0.3 * close + 0.3 * judge",
                    },
                },
            }
        )
    )
    said = refuse(capsys, two, "azure-openai")
    assert "Azure OpenAI takes one grader, not 2" in said and "type: multi" in said
    assert not [e for e in azure_emu.recorder.exchanges if e.method == "POST"]  # no file uploaded
    with emulated("fireworks", api_key="fw-emulator-rft-0123456789abcdef", tick=3.0) as fireworks:
        said = refuse(capsys, judged, "fireworks")
        assert "Fireworks cannot run the model_judge grader 'judge'" in said
        assert fireworks.datasets == {} and fireworks.evaluators == {}
    with emulated("bedrock", api_key="bedrock-emulator-rft-0123456789", tick=10.0) as bedrock:
        said = refuse(capsys, judged, "bedrock")
        assert "Bedrock cannot run the model_judge grader 'judge'" in said
        monkeypatch.delenv("ANYTUNE_BEDROCK_ROLE_ARN")
        said = refuse(capsys, path, "bedrock")
        assert "no role for Bedrock to assume (nor for the grader's Lambda)" in said
        assert bedrock._aws("s3").list_objects_v2(Bucket="anytune-emulated").get("KeyCount", 0) == 0
        assert bedrock._aws("lambda").list_functions()["Functions"] == []
    said = refuse(capsys, path, "bedrock", "hyperparameters.batch_size=8")  # Bedrock: batchSize 16-512
    assert "Bedrock's RFT takes batchSize from 16 to 512" in said


def test_rft_quotes_as_each_provider_bills_it(azure_emu, tmp_path):
    """Azure per training hour with its automatic pause noted, a model judge's calls apart; Fireworks free
    under 16B; Bedrock per token of the sampled work (no public price: said so, not invented)."""
    from anytune.testing import emulated

    path = job_file(tmp_path)
    raw = yaml.safe_load(path.read_text())
    judged = {
        **GRADER,
        "graders": {**GRADER["graders"], "judge": JUDGE},
        "formula": "0.5 * exact + 0.5 * judge",
    }
    with (
        emulated("fireworks", api_key="fw-emulator-rft-0123456789abcdef", tick=3.0),
        emulated("bedrock", api_key="bedrock-emulator-rft-0123456789", tick=10.0),
    ):
        table = Client().quote(load_job_file(path), ["azure-openai", "fireworks", "bedrock"])
    quotes = {q.provider: q for q in table.quotes}
    azure = quotes["azure-openai"]
    assert azure.available and azure.unit == "hour" and azure.unit_price == 100.0
    assert azure.price == pytest.approx(azure.hours * 100.0) and azure.hours > 0
    notes = " ".join(azure.assumptions)
    assert (
        "48 prompts x 3 epoch(s) x 8" in notes and "5,000 USD" in notes
    )  # Azure picks the answers per prompt
    assert "answers per prompt left to the provider; quoted as 8" in notes
    fireworks = quotes["fireworks"]
    assert (
        fireworks.available
        and fireworks.price == 0.0
        and "free for models under 16B" in " ".join(fireworks.assumptions)
    )
    bedrock = quotes["bedrock"]
    assert "x 3 epoch(s) x 4 answers per prompt" in " ".join(bedrock.assumptions)
    raw["method"]["grader"] = judged
    (tmp_path / "judged.yaml").write_text(yaml.safe_dump(raw))
    spec = load_job_file(tmp_path / "judged.yaml")
    [judge_quote] = Client().quote(spec, ["azure-openai"]).quotes
    assert "model-judge calls, billed apart at gpt-4o-mini's token price" in " ".join(judge_quote.assumptions)
    assert "about 1,152 calls" in " ".join(judge_quote.assumptions)  # 48 prompts x 3 epochs x 8 answers


def test_the_azure_emulator_answers_an_invalid_grader_as_azure_does(azure_emu):
    import openai

    from anytune_openai.azure import AzureOpenAIBackend

    client = AzureOpenAIBackend()._client()
    line = json.dumps({"messages": [{"role": "user", "content": "Reverse abc"}], "reference": "cba"})
    upload = client.files.create(file=("rft.jsonl", ("\n".join([line] * 10)).encode()), purpose="fine-tune")
    good = {
        "type": "string_check",
        "name": "x",
        "input": "{{sample.output_text}}",
        "reference": "a",
        "operation": "eq",
    }

    def create(grader: dict[str, Any], **files: str) -> openai.BadRequestError:
        with pytest.raises(openai.BadRequestError) as info:
            client.fine_tuning.jobs.create(
                model="o4-mini-2025-04-16",
                training_file=upload.id,
                method={"type": "reinforcement", "reinforcement": {"grader": grader}},
                extra_body={"trainingType": "standard"},
                **files,
            )
        return info.value

    refused = create({**good, "operation": "equals"}, validation_file=upload.id)
    assert refused.status_code == 400 and "operation" in refused.message
    refused = create(
        {"type": "multi", "name": "m", "graders": {"a": good}, "calculate_output": "a + b"},
        validation_file=upload.id,
    )
    assert "calculate_output" in refused.message
    refused = create(good)  # Azure's rule: RFT needs a validation file
    assert "validation file" in refused.message
    assert azure_emu.jobs == {}
