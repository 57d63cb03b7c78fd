"""Every request the Together backend (through the `together` SDK) sends and every answer the emulator gives,
checked against Together's published OpenAPI spec (2026-04-28; the part anytune uses is kept in
tests/fixtures/specs). Deviations, where the SDK and the spec disagree, are listed here and in
docs/providers/together.md; anything else fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from anytune.client import Client
from tests import spec_check
from tests.conftest import chat_splits, preference_rows, write_jsonl
from tests.test_together import emulator, together_spec  # noqa: F401  (the fixture)

# Known and accepted: (path pattern, validator message, why). Listed in docs/providers/together.md. Each must
# really occur in the run below, or the entry is stale and the test says so.
DEVIATIONS = [
    (
        r"/v1/files",
        "Operation post not found",
        "SDK: its signed-URL upload (POST /v1/files -> 302, PUT, preprocess) is not in the spec, which documents "
        "POST /files/upload",
    ),
    (
        r"/v1/files",
        "not an error body",
        "SDK: a known checksum answers 409 {\"file_id\": ...}, which the SDK reads as 'already uploaded'",
    ),
    (
        r"/v1/files/[^/]+/preprocess",
        "Path not found",
        "SDK: the preprocess step of that upload is not in the spec",
    ),
    (
        r"/v1/fine-tunes",
        "'model' is a required property",
        "SDK: model XOR from_checkpoint; the spec requires model even when continuing from a checkpoint",
    ),
    (
        r"/v1/fine-tunes.*",
        "is valid under each of",
        "spec: lr_scheduler_args is a oneOf of cosine and linear args, and {min_lr_ratio, num_cycles} fits both",
    ),
    (
        r"/v1/fine-tunes/[^/]+(/.*)?",
        "is not a 'uuid'",
        "spec: job ids are declared format uuid, but they are 'ft-<uuid>' (SDK and docs)",
    ),
    (
        r"/v1/finetune/download",
        "Unknown response http status: 206",
        "SDK: its DownloadManager asks for Range bytes=0-1 and needs 206 + Content-Range; the spec lists only 200",
    ),
    (
        r"/v1/finetune/download",
        "is not of type 'string'",
        "validator: openapi-core hands a binary body to the `type: string` schema as bytes",
    ),
]


def test_every_exchange_matches_togethers_spec(emulator, tmp_path: Path):  # noqa: F811
    openapi = spec_check.load("together")
    data = chat_splits(tmp_path, seed=6, validation=True)
    pref = preference_rows()
    client = Client()
    spec = together_spec(
        data,
        provider_options={"together": {"download": "adapter", "n_checkpoints": 2}},
        hyperparameters={
            "epochs": 2,
            "batch_size": 8,
            "learning_rate": 1e-4,
            "early_stopping": {"patience": 2},
        },
    )
    job = client.follow(client.submit(spec).id, interval=0)
    client.evaluate(job.id)
    client.follow(client.continue_job(job.id, step=4).id, interval=0)
    dpo = client.submit(
        together_spec(
            {"train": str(write_jsonl(tmp_path / "p.jsonl", pref))},
            method="dpo",
            adapter="full",
            hyperparameters={"epochs": 20, "batch_size": 8},
        )
    )
    client.cancel(dpo.id)
    client.follow(dpo.id, interval=0)
    again = client.submit(together_spec(data, suffix="again"))  # the same data again: a 409 on upload
    emulator.faults.add(method="GET", path=r"/v1/fine-tunes/ft-[^/]+", status=429, retry_after_ms=5)
    emulator.faults.add(method="GET", path=r"/v1/fine-tunes/ft-[^/]+", status=503)
    client.refresh(again.id)

    exchanges = [e for e in emulator.recorder.exchanges if not e.dropped]
    spec_check.assert_conforms(
        openapi,
        exchanges,
        "https://api.together.ai",
        DEVIATIONS,
        routes={
            ("POST", "/v1/files"),
            ("POST", "/v1/files/{id}/preprocess"),
            ("GET", "/v1/files/{id}"),
            ("GET", "/v1/fine-tunes/models/limits"),
            ("POST", "/v1/fine-tunes/estimate-price"),
            ("POST", "/v1/fine-tunes"),
            ("GET", "/v1/fine-tunes"),
            ("GET", "/v1/fine-tunes/{id}"),
            ("GET", "/v1/fine-tunes/{id}/events"),
            ("GET", "/v1/fine-tunes/{id}/metrics"),
            ("GET", "/v1/fine-tunes/{id}/checkpoints"),
            ("POST", "/v1/fine-tunes/{id}/cancel"),
            ("GET", "/v1/finetune/download"),
            ("POST", "/v1/chat/completions"),
        },
        statuses={200, 206, 302, 409, 429, 503},
    )


@pytest.mark.skipif(
    not (spec_check.SHARED / "together-openapi.yaml").exists(),
    reason="the full spec lives in the team's shared folder",
)
def test_the_kept_subset_matches_the_full_spec():
    assert spec_check.subset_is_current("together")
