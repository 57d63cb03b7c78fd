"""Every exchange between the Azure OpenAI backend and its emulator on a path of Microsoft's authoring API
document (azure-openai-openapi.yaml, 2025-04-01-preview, kept whole in tests/fixtures/specs), checked against
it: statuses (a create is 201 with Location), bodies (no null where the schema has none), and error codes from
its `ErrorCode` enumeration, which the backend reads (a quota refusal is not retried and says so)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anytune.client import Client
from anytune.errors import BackendError
from anytune.jobs import JobStatus
from anytune_openai.azure_emulator import AzureOpenAIEmulator
from tests import spec_check
from tests.conftest import AZURE_TEST_KEY, chat_splits, preference_rows, write_jsonl
from tests.test_azure_openai import azure, azure_spec  # noqa: F401  (the fixture)

ENUM = set(spec_check.Swagger2.load("azure-openai-openapi.yaml").doc["definitions"]["ErrorCode"]["enum"])


def test_every_exchange_matches_microsofts_document(azure: AzureOpenAIEmulator, tmp_path: Path):  # noqa: F811
    import openai

    doc = spec_check.Swagger2.load("azure-openai-openapi.yaml")
    client = Client()
    sft = client.follow(
        client.submit(azure_spec(chat_splits(tmp_path, seed=3, validation=True), evaluation=None)).id,
        interval=0,
    )
    assert sft.status is JobStatus.SUCCEEDED
    train = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(12))
    dpo = client.submit(
        azure_spec(
            {"train": str(train)},
            base_model="gpt-4.1-mini",
            method={"type": "dpo"},
            hyperparameters={"epochs": 20, "batch_size": 1},
            evaluation=None,
        )
    )
    while client.refresh(dpo.id).provider_status != "running":
        pass
    client.pause(dpo.id)
    client.resume(dpo.id)
    client.cancel(dpo.id)
    azure.faults.add(method="GET", path=r"/openai/fine_tuning/jobs/[^/]+", status=429, retry_after_ms=5)
    azure.faults.add(method="GET", path=r"/openai/fine_tuning/jobs/[^/]+", status=500)
    client.refresh(dpo.id)
    sdk = openai.AzureOpenAI(api_key=AZURE_TEST_KEY, api_version="2025-04-01-preview")
    with pytest.raises(openai.NotFoundError):
        sdk.fine_tuning.jobs.retrieve("ftjob-does-not-exist")
    with pytest.raises(openai.AuthenticationError):
        openai.AzureOpenAI(api_key="wrong", api_version="2025-04-01-preview", max_retries=0).files.list()
    with pytest.raises(openai.BadRequestError):  # no trainingType: Azure's misleading answer
        sdk.fine_tuning.jobs.create(
            model="gpt-4o-mini-2024-07-18", training_file=sft.provider_ref["data"]["training_file"]
        )

    exchanges = [e for e in azure.recorder.exchanges if not e.dropped]
    checked = [e for e in exchanges if doc.route(e) is not None]
    problems = [p for e in checked for p in doc.problems(e)]
    assert problems == [], "\n".join(sorted(set(problems)))
    statuses = {e.status for e in checked}
    assert {200, 201, 400, 401, 404, 429, 500} <= statuses, statuses
    made = [
        e
        for e in checked
        if e.method == "POST" and e.path in ("/openai/files", "/openai/fine_tuning/jobs") and e.status < 400
    ]
    assert made and all(e.status == 201 and "location" in e.response_headers for e in made)
    for e in made:  # Location names the item made, where a GET finds it
        item = json.loads(e.response_body)
        assert e.response_headers["location"].split("?")[0].endswith(f"{e.path}/{item['id']}")
    codes = {json.loads(e.response_body)["error"]["code"] for e in checked if e.status >= 400}
    assert codes <= ENUM and {"notFound", "unauthorized", "tooManyRequests", "invalidPayload"} <= codes, codes
    jobs = [json.loads(e.response_body) for e in checked if e.path.startswith("/openai/fine_tuning/jobs/")]
    assert not [k for j in jobs if e.status < 400 for k, v in j.items() if v is None]


def test_the_checker_catches_what_the_emulator_did_before(azure: AzureOpenAIEmulator, tmp_path: Path):  # noqa: F811
    """200 for a create, OpenAI's error shape and null fields: what the emulator answered before, each found."""
    from anytune.testing.asgi import Exchange

    doc = spec_check.Swagger2.load("azure-openai-openapi.yaml")
    job = {"object": "fine_tuning.job", "id": "ftjob-1", "model": "m", "training_file": "f",
           "status": "pending", "created_at": 1, "fine_tuned_model": None}  # fmt: skip
    old = [
        Exchange("POST", "/openai/fine_tuning/jobs", "api-version=x", {}, b"{}", 200, {}, json.dumps(job).encode()),
        Exchange("GET", "/openai/fine_tuning/jobs/ftjob-1", "api-version=x", {}, b"", 200, {}, json.dumps(job).encode()),
        Exchange("GET", "/openai/files", "api-version=x", {}, b"", 404, {},
                 b'{"error": {"message": "no", "type": "invalid_request_error", "param": null, "code": null}}'),
    ]  # fmt: skip
    found = [p for e in old for p in doc.problems(e)]
    assert any("status not documented (the document says 201)" in p for p in found), found
    assert any("fine_tuned_model: None is not of type 'string'" in p for p in found), found
    assert any("error/code" in p for p in found), found


@pytest.mark.parametrize(
    ("code", "status", "retried", "says"),
    [
        ("quotaExceeded", 429, False, "fine-tuning quota is used up"),
        ("tooManyRequests", 429, True, "retried with back-off"),
        ("contentFilter", 400, False, "content filter"),
        ("jsonlValidationFailed", 400, False, "anytune validate"),
    ],
)
def test_the_backend_reads_azures_error_codes(azure, tmp_path, code, status, retried, says):  # noqa: F811
    """The status alone misleads: a 429 quotaExceeded is not cured by waiting a few seconds."""
    azure.faults.add(method="POST", path="/openai/fine_tuning/jobs", status=status, code=code, times=9)
    client = Client()
    with pytest.raises(BackendError) as info:
        client.submit(azure_spec(chat_splits(tmp_path, seed=4), evaluation=None))
    creates = [
        e for e in azure.recorder.exchanges if e.method == "POST" and e.path == "/openai/fine_tuning/jobs"
    ]
    assert (len(creates) > 1) is retried, [e.status for e in creates]
    assert says in str(info.value) and "Azure OpenAI" in info.value.message and code in info.value.message
