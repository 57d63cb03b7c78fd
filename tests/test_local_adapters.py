"""Every adapter of the spec on the local backend, on the tiny model: train, save, reload from disk, generate;
merge where the mathematics allows; and full fine-tuning that leaves frozen layers exactly as they were."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from anytune.client import Client
from anytune.hookspecs import GenerationParams
from anytune.jobs import JobStatus
from anytune.spec import JobSpec
from tests.conftest import reversal_rows, write_jsonl

pytestmark = pytest.mark.slow

ADAPTERS: list[tuple[str, dict[str, Any]]] = [
    ("lora", {"r": 8, "use_rslora": True}),
    ("dora", {"r": 8}),
    ("qlora", {"r": 8}),
    ("qlora", {"r": 8, "bits": 8}),
    ("prefix", {"num_virtual_tokens": 8}),
    ("prompt", {"num_virtual_tokens": 8}),
    ("p_tuning", {"num_virtual_tokens": 8, "encoder_hidden_size": 32}),
    ("ia3", {}),
    ("llama_adapter", {"adapter_len": 4, "adapter_layers": 2}),
    ("bottleneck", {"style": "pfeiffer", "reduction_factor": 8}),
    ("bottleneck", {"style": "houlsby", "reduction_factor": 8, "non_linearity": "gelu"}),
]
MERGE = {"lora", "dora", "ia3"}


def _train(tiny_model: Path, tmp_path: Path, adapter: dict[str, Any], **hp: Any):  # type: ignore[no-untyped-def]
    train = write_jsonl(tmp_path / "train.jsonl", reversal_rows(64, seed=7))
    spec = JobSpec.model_validate(
        {
            "name": f"tiny-{adapter['type']}",
            "base_model": str(tiny_model),
            "provider": "local",
            "adapter": adapter,
            "data": {"train": str(train)},
            "hyperparameters": {"max_steps": 8, "batch_size": 8, "max_seq_length": 128, **hp},
            "provider_options": {"local": {"merge": adapter["type"] in MERGE, "logging_steps": 1}},
        }
    )
    client = Client()
    job = client.follow(client.submit(spec).id, interval=0.2, timeout=300)
    assert job.status is JobStatus.SUCCEEDED, job.error
    return client, job


def _last_logits(model: Any, ids: list[int]) -> Any:
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].float()


@pytest.mark.parametrize(("kind", "extra"), ADAPTERS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(ADAPTERS)])
def test_adapter_trains_saves_reloads_and_generates(tiny_model: Path, tmp_path: Path, kind: str, extra: dict):
    import torch

    from anytune_local.backend import LocalBackend
    from anytune_local.loading import load_causal_lm

    client, job = _train(tiny_model, tmp_path, {"type": kind, **extra})
    losses = [e.data["loss"] for e in client.registry.events(job.id, kind="metric") if "loss" in e.data]
    assert len(losses) == 8 and all(x == x and x < 20 for x in losses)  # trained, finite
    art = job.artifact
    assert art.kind == "adapter" and art.adapter_type == kind and Path(art.path).is_dir()
    trainable = art.metadata["trainable_parameters"]
    assert 0 < trainable < 1_000_000  # the tiny model has ~0.75M parameters: only the adapter trained

    # reloaded from disk in a fresh backend, it generates, and it is not the base model any more
    answers = LocalBackend().generate(
        art, [[{"role": "user", "content": "Reverse: a b c"}]], GenerationParams(max_new_tokens=8)
    )
    assert len(answers) == 1 and isinstance(answers[0], str)
    ids = [5, 17, 42, 8, 99, 3]
    base = load_causal_lm(tiny_model)
    tuned = load_causal_lm(tiny_model, adapter=art.path)
    again = load_causal_lm(tiny_model, adapter=art.path)
    assert torch.equal(_last_logits(tuned, ids), _last_logits(again, ids))  # reloading is exact
    assert not torch.allclose(_last_logits(tuned, ids), _last_logits(base, ids), atol=1e-6)
    if kind in MERGE:
        merged = load_causal_lm(art.merged_path)
        assert torch.allclose(_last_logits(merged, ids), _last_logits(tuned, ids), atol=1e-4)
    else:
        assert art.merged_path is None


def test_full_fine_tuning_leaves_frozen_layers_and_embeddings_untouched(tiny_model: Path, tmp_path: Path):
    from safetensors.torch import load_file

    _client, job = _train(
        tiny_model,
        tmp_path,
        {"type": "full"},
        learning_rate=1e-3,
        freeze={"first_n_layers": 1, "embeddings": True},
    )
    art = job.artifact
    assert art.kind == "full" and (Path(art.path) / "config.json").exists()
    before = load_file(str(tiny_model / "model.safetensors"))
    after = load_file(str(Path(art.path) / "model.safetensors"))
    for name, tensor in before.items():
        frozen = ".layers.0." in name or "embed_tokens" in name
        same = bool((tensor == after[name]).all())
        assert same == frozen, name
