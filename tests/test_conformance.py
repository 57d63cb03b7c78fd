"""anytune's own backends pass the conformance suite that plugin authors run (anytune.testing.conformance):
the remote ones against their emulators, the local one on the parts that apply to it."""

from __future__ import annotations

import pytest

from anytune.testing.conformance import BackendConformance

TWO_USER_TURNS = {
    "messages": [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "c"},
    ]
}
OVER_LONG = {  # over gpt-4o-mini's 65,536 tokens per example
    "messages": [{"role": "user", "content": "word " * 70_000}, {"role": "assistant", "content": "ok"}]
}


class TestOpenAI(BackendConformance):
    provider = "openai"
    emulator = "openai"
    base_model = "gpt-4o-mini"
    bad_rows = (OVER_LONG,)
    environment = {"ANYTUNE_TODAY": "2026-11-28"}  # before OpenAI's last day for new jobs


class TestAzureOpenAI(BackendConformance):
    provider = "azure-openai"
    emulator = "azure-openai"
    base_model = "gpt-4o-mini"
    models = {"dpo": "gpt-4.1-mini"}  # gpt-4o-mini takes only SFT on Azure
    bad_rows = (OVER_LONG,)
    environment = {"ANYTUNE_TODAY": "2026-11-28"}


class TestTogether(BackendConformance):
    provider = "together"
    emulator = "together"
    base_model = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
    hyperparameters = {"epochs": 1, "batch_size": 8}
    bad_rows = (TWO_USER_TURNS,)


class TestLocal(BackendConformance):
    """No provider API, no key: what applies is the capability refusals, data refusals, the quote, the job
    row, cancel and the event cursor (every method and adapter is trained in test_local_*)."""

    provider = "local"
    base_model_fixture = "tiny_model"
    hyperparameters = {"epochs": 1, "batch_size": 4}
    skip = {"capabilities-declared": "each method and adapter is trained in test_local_methods/adapters"}


class TestBedrock(BackendConformance):
    """Against moto's server with the plugin's front (job ends, idempotent creates, Converse)."""

    provider = "bedrock"
    emulator = "bedrock"
    base_model = "amazon.nova-micro-v1:0:128k"
    models = {"cpt": "meta.llama3-1-8b-instruct-v1:0:128k"}  # Nova takes fine-tuning only
    bad_rows = (  # Bedrock's conversations end with the assistant's answer
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"},
                {"role": "user", "content": "c"},
            ]
        },
    )


class TestHF(BackendConformance):
    """Against the Hugging Face emulator, whose jobs run the runner (and so the local worker) on this machine."""

    provider = "hf"
    emulator = "hf"
    base_model_fixture = "tiny_model"
    options = {"flavor": "cpu-upgrade"}
    hyperparameters = {"epochs": 1, "batch_size": 4}
    skip = {
        "capabilities-declared": "the trainer is the local worker: each method and adapter is trained in test_local_*",
        "status-map": "COMPLETED means only that the container exited 0: the backend calls a job succeeded once its "
        "model is pushed (test_hf.py follows each stage through real runs)",
    }

    @pytest.fixture(autouse=True)
    def _hub_online(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The suite sets HF_HUB_OFFLINE=1, which huggingface_hub reads at import: online for these checks."""
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
