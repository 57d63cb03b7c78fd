"""anytune's conformance suite, run against this plugin and its emulator."""

from anytune.testing.conformance import BackendConformance

SYSTEM_NOT_FIRST = {
    "messages": [
        {"role": "user", "content": "hello"},
        {"role": "system", "content": "be brief"},
        {"role": "assistant", "content": "hi"},
    ]
}


class TestFireworks(BackendConformance):
    provider = "fireworks"
    emulator = "fireworks"
    base_model = "accounts/fireworks/models/llama-v3p1-8b-instruct"
    hyperparameters = {"epochs": 1, "batch_size": 8}
    bad_rows = (SYSTEM_NOT_FIRST,)
