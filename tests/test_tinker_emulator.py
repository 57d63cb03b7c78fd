"""The Tinker emulator, driven by the official `tinker` SDK: the session handshake, futures (with queued
try-again answers), LoRA training that really trains a small model, saved state that restores exactly,
sampling from saved weights, and the errors the SDK surfaces. The `tinker` backend's loop (issue 33) is
built against it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

tinker = pytest.importorskip("tinker")
from tinker import types  # noqa: E402

from anytune.testing import EmulatorServer  # noqa: E402
from anytune_tinker.emulator import TinkerEmulator  # noqa: E402

KEY = "tml-emulator-test-0123456789abcdef"
BASE = "anytune/tiny-llama"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from anytune_local.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tinker") / "tiny")


@pytest.fixture
def served(tiny: Path) -> Iterator[tuple[TinkerEmulator, str]]:
    emulator = TinkerEmulator(api_key=KEY, models={BASE: tiny}, pending=2)  # two try-agains per future
    with EmulatorServer(emulator.app) as server:
        yield emulator, server.url


def datum(tokenizer: Any, text: str) -> Any:
    ids = tokenizer(text)["input_ids"]
    return types.Datum(
        model_input=types.ModelInput.from_ints(ids[:-1]),
        loss_fn_inputs={"target_tokens": ids[1:], "weights": [1.0] * (len(ids) - 1)},
    )


def test_lora_training_through_the_sdk_lowers_the_loss_and_saved_state_restores_it(served, tiny):
    from transformers import AutoTokenizer

    emulator, url = served
    tokenizer = AutoTokenizer.from_pretrained(str(tiny))
    service = tinker.ServiceClient(base_url=url, api_key=KEY)
    trainer = service.create_lora_training_client(base_model=BASE, rank=8)
    batch = [
        datum(tokenizer, "the quick brown fox jumps over the lazy dog"),
        datum(tokenizer, "tinker trains here"),
    ]
    losses = []
    for _ in range(6):
        step = trainer.forward_backward(batch, "cross_entropy")
        trainer.optim_step(types.AdamParams(learning_rate=1e-2)).result()
        losses.append(step.result().metrics["loss:sum"])
    assert losses[-1] < losses[0] * 0.9, losses
    saved = trainer.save_state("after-6").result().path
    assert saved.startswith("tinker://") and saved.endswith("/weights/after-6")
    at_save = trainer.forward([batch[0]], "cross_entropy").result().metrics["loss:sum"]
    for _ in range(3):  # move on, then come back to the saved state
        trainer.forward_backward(batch, "cross_entropy")
        trainer.optim_step(types.AdamParams(learning_rate=1e-2)).result()
    moved = trainer.forward([batch[0]], "cross_entropy").result().metrics["loss:sum"]
    trainer.load_state(saved).result()  # the weights only
    back = trainer.forward([batch[0]], "cross_entropy").result().metrics["loss:sum"]
    assert back == pytest.approx(at_save, rel=1e-5) and moved != pytest.approx(at_save, rel=1e-3)
    [run] = emulator.runs.values()
    assert run.steps == 9  # the optimizer (and its step count) kept going
    # a new process resumes from the state, optimizer included, as a resumed loop will
    resumed_service = tinker.ServiceClient(base_url=url, api_key=KEY)
    resumed = resumed_service.create_training_client_from_state_with_optimizer(saved)
    again = resumed.forward([batch[0]], "cross_entropy").result().metrics["loss:sum"]
    assert again == pytest.approx(at_save, rel=1e-5)
    [fresh] = [r for r in emulator.runs.values() if r is not run]
    assert fresh.steps == 6 and fresh.applied == run.applied[:6]  # the saved steps, none applied again
    assert emulator.counters.train > 0
    for client in (service, resumed_service):
        client.close("success").result()
    assert len(emulator.finished) == 2 and not emulator.sessions  # closed clients end their sessions


def test_sampling_from_saved_weights_and_from_the_base(served, tiny):
    from transformers import AutoTokenizer

    emulator, url = served
    tokenizer = AutoTokenizer.from_pretrained(str(tiny))
    service = tinker.ServiceClient(base_url=url, api_key=KEY)
    trainer = service.create_lora_training_client(base_model=BASE, rank=8)
    batch = [datum(tokenizer, "abc abc abc abc abc abc")]
    for _ in range(8):
        trainer.forward_backward(batch, "cross_entropy")
        trainer.optim_step(types.AdamParams(learning_rate=5e-2)).result()
    tuned = trainer.save_weights_and_get_sampling_client("tuned")
    base = service.create_sampling_client(base_model=BASE)
    prompt = types.ModelInput.from_ints(tokenizer("abc abc")["input_ids"])
    params = types.SamplingParams(max_tokens=6, temperature=1.0, seed=3)
    from_tuned = tuned.sample(prompt=prompt, num_samples=2, sampling_params=params).result()
    from_base = base.sample(prompt=prompt, num_samples=2, sampling_params=params).result()
    assert len(from_tuned.sequences) == 2 and all(len(s.tokens) >= 1 for s in from_tuned.sequences)
    assert all(len(s.logprobs) == len(s.tokens) for s in from_tuned.sequences)
    assert [s.tokens for s in from_tuned.sequences] != [s.tokens for s in from_base.sequences]
    assert emulator.counters.sample >= sum(len(s.tokens) for s in from_tuned.sequences + from_base.sequences)
    service.close("success").result()


def test_the_sdk_surfaces_the_emulators_refusals(served):
    emulator, url = served
    stranger = tinker.ServiceClient(base_url=url, api_key="tml-not-the-key-0000000000")
    with pytest.raises(tinker.AuthenticationError):  # the session starts lazily, on first use
        stranger.create_lora_training_client(base_model=BASE, rank=8)
    service = tinker.ServiceClient(base_url=url, api_key=KEY)
    with pytest.raises(Exception, match="not available"):
        service.create_lora_training_client(base_model="no/such-model", rank=8).get_info()
    assert emulator.runs == {}
    service.close("success").result()
