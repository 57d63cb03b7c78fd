"""The `tinker` backend: anytune's training loop on this machine, the steps on a training API, through the
official `tinker` SDK against the emulator (a real small model with LoRA on CPU). The same job file runs on
`local` and, unchanged, with `--provider tinker`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("tinker")

from anytune.client import Client
from anytune.jobfile import load_job_file
from anytune.jobs import JobStatus
from anytune.spec import EvalSpec
from anytune.testing import EmulatorServer
from anytune_tinker.emulator import TinkerEmulator
from tests.conftest import job_yaml, reversal_rows, write_jsonl

KEY = "tml-emulator-backend-0123456789abcdef"


@pytest.fixture
def emulator(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TinkerEmulator]:
    """The emulator serving the tiny model under the name the job file gives it (its folder)."""
    emu = TinkerEmulator(api_key=KEY, models={str(tiny_model): tiny_model}, pending=1)
    with EmulatorServer(emu.app) as server:
        monkeypatch.setenv("TINKER_BASE_URL", server.url)
        monkeypatch.setenv("TINKER_API_KEY", KEY)
        yield emu


def job_file(folder: Path, base: Path, epochs: int = 8, **extra: Any) -> Path:
    rows = reversal_rows(24, seed=3)
    train = write_jsonl(folder / "train.jsonl", rows)
    return job_yaml(
        folder / "job.yaml",
        name="reverse-tinker",
        base_model=str(base),
        provider="local",
        data={"train": str(train)},
        adapter={"type": "lora", "r": 8},
        hyperparameters={"epochs": epochs, "batch_size": 8, "learning_rate": 5e-3, "seed": 1},
        **extra,
    )


def test_sft_through_the_sdk_lowers_the_loss_and_the_model_beats_its_base(emulator, tiny_model, tmp_path):
    client = Client()
    path = job_file(tmp_path, tiny_model)
    here = client.follow(client.submit(load_job_file(path)).id, interval=0.2, timeout=300)
    assert here.status is JobStatus.SUCCEEDED and here.provider == "local", (
        here.error
    )  # the file runs locally
    spec = load_job_file(path, provider="tinker")  # and, unchanged, on the training API
    job = client.follow(client.submit(spec).id, interval=0.2, timeout=300)
    assert job.status is JobStatus.SUCCEEDED, job.error
    losses = [e.data["loss"] for e in client.events(job.id) if e.kind == "metric" and "loss" in e.data]
    print(
        f"loss per answer token: first 3 steps {sum(losses[:3]) / 3:.3f}, last 3 {sum(losses[-3:]) / 3:.3f}"
    )
    assert len(losses) == 24 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 * 0.8, losses
    saved = [e.data["path"] for e in client.events(job.id) if e.data.get("path", "").startswith("tinker://")]
    assert saved and saved[-1].endswith("step-000024-r1")  # the final state, saved
    model = client.get_model("reverse-tinker")  # version 2: the local run registered version 1
    assert model.job_id == job.id and model.version == 2 and job.artifact.model_id.startswith("tinker://")
    [run] = emulator.runs.values()
    assert run.steps == 24 and len(set(run.applied)) == 24  # every step applied once
    scored = client.evaluate(
        job.id,
        EvalSpec(data=str(tmp_path / "train.jsonl"), metrics=["token_f1"], limit=12, max_new_tokens=12),
    )
    base, tuned = scored.subject("base"), scored.subject("fine-tuned")
    [change] = scored.comparisons
    print(
        f"token_f1 base {base.metrics['token_f1']}, tuned {tuned.metrics['token_f1']}, change {change.delta:+}"
    )
    assert tuned.metrics["token_f1"] > base.metrics["token_f1"] and change.low > 0, (base, tuned, change)


def test_a_loop_killed_five_times_resumes_from_its_saved_state_and_applies_no_saved_step_twice(
    emulator, tiny_model, tmp_path
):
    """SIGKILL at random steps, five times: each time the job fails (its loop is gone), `jobs resume` starts a
    new job from the last saved state, and in the end the model's weights hold each planned optimizer step
    exactly once (the emulator's lineage of the final weights is 1..plan)."""
    import os
    import random
    import signal
    import time

    client = Client()
    path = job_file(tmp_path, tiny_model, epochs=14, provider_options={"tinker": {"save_every": 3}})
    spec = load_job_file(path, provider="tinker")  # 24 rows, batch 8, 14 epochs: 42 steps
    job = client.submit(spec)
    rng = random.Random(7)
    kills = 0
    while kills < 5:
        folder = Path(job.provider_ref["data"]["dir"])
        target = rng.randint(3, 5)  # steps past where this loop started
        deadline = time.monotonic() + 120
        started: int | None = None
        while time.monotonic() < deadline:  # kill once this loop has saved a state and gone `target` steps on
            status = (
                json.loads((folder / "status.json").read_text()) if (folder / "status.json").exists() else {}
            )
            loop = json.loads((folder / "loop.json").read_text()) if (folder / "loop.json").exists() else {}
            step = status.get("step")
            if step is not None and started is None:
                started = step
            saved_here = started is not None and loop.get("saved_step", -1) > started
            if saved_here and step is not None and step >= started + target:
                break
            time.sleep(0.02)
        os.kill(int((folder / "pid").read_text()), signal.SIGKILL)
        kills += 1
        job = client.follow(job.id, interval=0.1, timeout=60)
        assert job.status is JobStatus.FAILED and "exited without a result" in (job.error or ""), job.error
        job = client.resume(job.id)  # a new job, from the last saved state
    job = client.follow(job.id, interval=0.2, timeout=300)
    assert job.status is JobStatus.SUCCEEDED, job.error
    final = next(
        r
        for r in emulator.runs.values()
        if r.steps == 42 and job.artifact.model_id.startswith(f"tinker://{r.model_id}")
    )
    assert final.lineage == list(range(1, 43))  # every planned step once, none repeated after a saved state
    resumed = [e.message for e in client.events(job.id) if e.message.startswith("resumed from")]
    assert resumed, "the last job went on from a saved state"


def test_a_budget_below_the_cost_stops_the_loop_at_the_cap_with_its_state_saved(
    tiny_model, tmp_path, monkeypatch
):
    """Qwen3-8B's catalog price on a loop that counts more tokens than the quote estimated (the quote counts
    with Qwen's tokenizer, the emulator's model has its own): the quote passes the budget, the loop stops
    before the step that would cross it, saved, and the recorded cost is the emulator's trained tokens at
    the catalog's train price."""
    emu = TinkerEmulator(api_key=KEY, models={"Qwen/Qwen3-8B": tiny_model})
    with EmulatorServer(emu.app) as server:
        monkeypatch.setenv("TINKER_BASE_URL", server.url)
        monkeypatch.setenv("TINKER_API_KEY", KEY)
        client = Client()
        path = job_file(
            tmp_path,
            tiny_model,
            provider_options={"tinker": {"base_model": "Qwen/Qwen3-8B", "tokenizer": str(tiny_model)}},
        )
        spec = load_job_file(path, provider="tinker")
        [quote] = client.quote(spec, ["tinker"]).quotes
        assert quote.price is not None and quote.unit_price == 0.40
        budget = quote.price * 1.01
        job = client.submit(spec.model_copy(update={"budget_usd": budget}))
        job = client.follow(job.id, interval=0.2, timeout=300)
        said = [e.message for e in client.events(job.id) if "budget" in e.message]
        assert job.status is JobStatus.CANCELLED and said and "over budget_usd" in said[-1], said
        folder = Path(job.provider_ref["data"]["dir"])
        state = json.loads((folder / "loop.json").read_text())
        assert 0 < state["step"] < 24 and state["saved_step"] == state["step"]  # stopped at the cap, saved
        assert state["cost"] <= budget
        assert state["cost"] == pytest.approx(emu.counters.train * 0.40 / 1e6)  # tokens x the catalog price
        assert job.cost.actual == pytest.approx(state["cost"])


def _difference_interval(before: list[float], after: list[float]) -> tuple[float, float, float]:
    """mean(after) - mean(before), and its 95% bootstrap interval (fixed seed: the test is deterministic)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = np.asarray(before), np.asarray(after)
    draws = [rng.choice(b, len(b)).mean() - rng.choice(a, len(a)).mean() for _ in range(2000)]
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(b.mean() - a.mean()), float(low), float(high)


def test_rft_with_a_grader_raises_the_mean_reward(emulator, tiny_model, tmp_path):
    """RL through the SDK: samples per prompt from the sampling client, anytune's grader, group-normalised
    advantages, importance_sampling; a reward the tiny model can learn in 30 steps (answers containing an
    "e", through LoRA on attention, MLP and the unembedding, Tinker's defaults)."""
    grader = {
        "type": "multi",
        "graders": {
            "letter": {"type": "string_check", "operation": "icontains", "reference": "e"},
            "close": {"type": "text_similarity", "metric": "fuzzy_match", "reference": "{{item.reference}}"},
        },
        "formula": "0.8 * letter + 0.2 * close",
    }
    method = {"type": "rft", "grader": grader, "samples_per_prompt": 8, "max_completion_tokens": 3}
    path = job_file(tmp_path, tiny_model, epochs=10, method=method)
    raw = yaml.safe_load(path.read_text())
    raw["hyperparameters"]["learning_rate"] = 5e-2
    path.write_text(yaml.safe_dump(raw))
    client = Client()
    job = client.follow(client.submit(load_job_file(path, provider="tinker")).id, interval=0.2, timeout=600)
    assert job.status is JobStatus.SUCCEEDED, job.error
    rewards = [e.data["reward"] for e in client.events(job.id) if e.kind == "metric" and "reward" in e.data]
    delta, low, high = _difference_interval(rewards[:5], rewards[-5:])
    print(
        f"reward: first 5 {sum(rewards[:5]) / 5:.3f}, last 5 {sum(rewards[-5:]) / 5:.3f}, "
        f"change {delta:+.3f} [{low:+.3f}, {high:+.3f}]"
    )
    assert low > 0, (delta, low, high, rewards)
    assert client.get_model("reverse-tinker").job_id == job.id
    judged = {"type": "model_judge", "model": "gpt-4o-mini", "prompt": "Rate {{sample.output_text}}"}
    raw["method"]["grader"] = judged
    path.write_text(yaml.safe_dump(raw))
    from anytune.errors import AnytuneError

    with pytest.raises(AnytuneError, match="cannot run the model_judge grader"):
        client.submit(load_job_file(path, provider="tinker"))
