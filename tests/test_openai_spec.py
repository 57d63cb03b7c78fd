"""Every request the OpenAI backend sends and every answer the emulator gives, checked against OpenAI's
published OpenAPI spec (2026-08-21; the part anytune uses is kept in tests/fixtures/specs). Deliberate
deviations are listed in DEVIATIONS and in docs/providers/openai.md; anything else fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anytune.client import Client
from tests import spec_check
from tests.conftest import chat_splits, preference_rows, write_jsonl
from tests.test_openai import emulator, openai_spec  # noqa: F401  (the fixture)

# Known and accepted: (path pattern, validator message, why). Listed in docs/providers/openai.md. Each must
# really occur in the run below, or the entry is stale and the test says so.
DEVIATIONS = [
    (
        r"/v1/fine_tuning/jobs/[^/]+(/pause|/resume)?",
        "'paused' is not one of",
        "emulator: the spec's FineTuningJob.status enum lacks 'paused', which its own pause endpoint returns",
    ),
    (
        r"/v1/files",
        "None is not of type 'string'",
        "emulator: ListFilesResponse requires first_id/last_id strings; an empty list has none, so they are null",
    ),
    (
        r"/v1/files",
        "is not of type 'string'",
        "validator: openapi-core passes the uploaded file part as bytes to a `type: string` schema (3.1)",
    ),
]


def test_every_exchange_matches_openais_spec(emulator, tmp_path: Path):  # noqa: F811
    openapi = spec_check.load("openai")
    data = chat_splits(tmp_path, seed=5, validation=True)
    pref = preference_rows()
    client = Client()
    # SFT with a validation file, to success; then evaluation through chat completions
    job = client.follow(client.submit(openai_spec(data)).id, interval=0)
    client.evaluate(job.id)
    # DPO; pause, resume and cancel
    dpo = client.submit(
        openai_spec(
            {"train": str(write_jsonl(tmp_path / "p.jsonl", pref))},
            method="dpo",
            hyperparameters={"epochs": 20, "batch_size": 1},
        )
    )
    while client.refresh(dpo.id).provider_status != "running":
        pass
    client.pause(dpo.id)
    client.resume(dpo.id)
    client.cancel(dpo.id)
    # errors: rate limit, server error, not found
    emulator.faults.add(method="GET", path=r"/v1/fine_tuning/jobs/[^/]+", status=429, retry_after_ms=5)
    emulator.faults.add(method="GET", path=r"/v1/fine_tuning/jobs/[^/]+", status=500)
    client.refresh(dpo.id)
    from openai import NotFoundError, OpenAI

    with pytest.raises(NotFoundError):
        OpenAI().fine_tuning.jobs.retrieve("ftjob-does-not-exist")

    exchanges = [e for e in emulator.recorder.exchanges if not e.dropped]
    spec_check.assert_conforms(
        openapi,
        exchanges,
        "https://api.openai.com",
        DEVIATIONS,
        routes={
            ("POST", "/v1/files"),
            ("GET", "/v1/files"),
            ("POST", "/v1/fine_tuning/jobs"),
            ("GET", "/v1/fine_tuning/jobs"),
            ("GET", "/v1/fine_tuning/jobs/{id}"),
            ("GET", "/v1/fine_tuning/jobs/{id}/events"),
            ("GET", "/v1/fine_tuning/jobs/{id}/checkpoints"),
            ("POST", "/v1/fine_tuning/jobs/{id}/pause"),
            ("POST", "/v1/fine_tuning/jobs/{id}/resume"),
            ("POST", "/v1/fine_tuning/jobs/{id}/cancel"),
            ("POST", "/v1/chat/completions"),
        },
        statuses={200, 404, 429, 500},
    )
    assert len(exchanges) > 50
    assert json.loads(exchanges[0].response_body)  # the recorder keeps real bodies


@pytest.mark.skipif(
    not (spec_check.SHARED / "openai-openapi.yaml").exists(),
    reason="the full spec lives in the team's shared folder",
)
def test_the_kept_subset_matches_the_full_spec():
    assert spec_check.subset_is_current("openai")
