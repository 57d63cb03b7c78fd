"""Every training method of the local backend on the tiny model, each judged by the metric it should move:
DPO's reward margin, a reward model's pairwise accuracy, continued pre-training's loss, GRPO's reward."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from anytune.client import Client
from anytune.errors import AnytuneError, CapabilityError
from anytune.jobs import JobStatus
from anytune.spec import JobSpec
from tests.conftest import preference_rows, reversal_rows, write_jsonl

pytestmark = pytest.mark.slow
REPO = Path(__file__).parents[1]


def _run(tiny_model: Path, tmp_path: Path, method: dict[str, Any], rows: list[Any], **extra: Any):  # type: ignore[no-untyped-def]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    hp = {
        "max_steps": 16,
        "batch_size": 8,
        "learning_rate": 5e-3,
        "max_seq_length": 128,
        **extra.pop("hp", {}),
    }
    spec = JobSpec.model_validate(
        {
            "name": f"tiny-{method['type']}",
            "base_model": str(tiny_model),
            "provider": "local",
            "method": method,
            "adapter": extra.pop("adapter", {"type": "lora", "r": 8}),
            "data": {"train": str(train)},
            "hyperparameters": hp,
            "provider_options": {"local": {"logging_steps": 2, **extra}},
        }
    )
    client = Client()
    job = client.follow(client.submit(spec).id, interval=0.3, timeout=600)
    assert job.status is JobStatus.SUCCEEDED, job.error
    logs = [e.data for e in client.registry.events(job.id, kind="metric") if "loss" in e.data]
    return job, logs


def _first_last(logs: list[dict[str, Any]], key: str, n: int = 2) -> tuple[float, float]:
    values = [d[key] for d in logs if key in d]
    assert len(values) >= 2 * n, (key, logs)
    return sum(values[:n]) / n, sum(values[-n:]) / n


def test_dpo_widens_the_margin_between_chosen_and_rejected(tiny_model: Path, tmp_path: Path):
    job, logs = _run(tiny_model, tmp_path, {"type": "dpo", "beta": 0.1}, preference_rows(48))
    first, last = _first_last(logs, "rewards/margins")
    assert last > first + 0.5, (first, last)
    assert _first_last(logs, "rewards/accuracies")[1] >= 0.9
    assert job.artifact.metadata["method"] == "dpo"


def test_dpo_loss_variants_reach_trl(tiny_model: Path, tmp_path: Path):
    from anytune_local.methods import config_for

    method = {"type": "dpo", "loss_type": "ipo", "rpo_alpha": 0.5}
    _job, logs = _run(tiny_model, tmp_path, method, preference_rows(24), hp={"max_steps": 4})
    assert logs and all(d["loss"] == d["loss"] for d in logs)
    dpo = JobSpec.model_validate({"base_model": "tiny", "method": method, "data": {"train": "x.jsonl"}})
    config = config_for(dpo, {"output_dir": str(tmp_path), "use_cpu": True}, 64)
    assert config.loss_type == ["ipo", "sft"] and config.loss_weights == [1.0, 0.5]
    simpo = dpo.model_copy(update={"method": dpo.method.model_copy(update={"loss_type": "simpo"})})
    with pytest.raises(CapabilityError, match="SimPO"):
        config_for(simpo, {"output_dir": str(tmp_path), "use_cpu": True}, 64)


def test_reward_model_learns_to_rank_chosen_above_rejected(tiny_model: Path, tmp_path: Path):
    job, logs = _run(tiny_model, tmp_path, {"type": "reward"}, preference_rows(48))
    first, last = _first_last(logs, "margin")
    assert last > first and _first_last(logs, "accuracy")[1] >= 0.9
    from anytune.hookspecs import GenerationParams
    from anytune_local.backend import LocalBackend

    prompt = [[{"role": "user", "content": "hi"}]]
    with pytest.raises(CapabilityError, match="reward model"):
        LocalBackend().generate(job.artifact, prompt, GenerationParams())


def test_continued_pretraining_on_raw_text_lowers_the_loss(tiny_model: Path, tmp_path: Path):
    rows = [{"text": f"The quick brown fox number {i} jumps over the lazy dog."} for i in range(64)]
    _job, logs = _run(
        tiny_model, tmp_path, {"type": "cpt"}, rows, hp={"max_steps": 20, "learning_rate": 1e-2}
    )
    first, last = _first_last(logs, "loss")
    assert last < first - 0.5, (first, last)


def test_grpo_raises_a_toy_reward(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the worker imports the reward by its dotted path
    _job, logs = _run(
        tiny_model,
        tmp_path,
        {"type": "grpo", "reward_functions": ["tests.toy_rewards:starts_with_space"], "num_generations": 8},
        reversal_rows(64),
        adapter={"type": "full"},
        hp={"max_steps": 30, "batch_size": 16, "learning_rate": 1e-2},
        max_completion_length=4,
    )
    first, last = _first_last(logs, "reward", n=3)
    assert last > first + 0.25, (first, last)


def test_ppo_is_refused_with_the_reason(tiny_model: Path, tmp_path: Path):
    train = write_jsonl(tmp_path / "train.jsonl", reversal_rows(8))
    spec = JobSpec.model_validate(
        {"base_model": str(tiny_model), "provider": "local", "method": "ppo", "data": {"train": str(train)}}
    )
    with pytest.raises(CapabilityError, match=r"trl\.experimental.*grpo"):
        Client().submit(spec)


def test_what_the_worker_would_refuse_is_refused_before_the_job_is_recorded(tiny_model: Path, tmp_path: Path):
    train = write_jsonl(tmp_path / "train.jsonl", reversal_rows(8))
    pairs = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(8))
    client = Client()

    def submit(method: dict[str, Any], data: Path) -> CapabilityError:
        spec = JobSpec.model_validate(
            {
                "base_model": str(tiny_model),
                "provider": "local",
                "method": method,
                "data": {"train": str(data)},
            }
        )
        with pytest.raises(CapabilityError) as info:
            client.submit(spec)
        return info.value

    assert "at least one reward function" in str(submit({"type": "grpo"}, train))
    assert "cannot be imported" in str(submit({"type": "grpo", "reward_functions": ["no.such:fn"]}, train))
    assert "SimPO" in str(submit({"type": "dpo", "loss_type": "simpo"}, pairs))
    assert client.registry.list_jobs() == []


def _difference_interval(before: list[float], after: list[float]) -> tuple[float, float, float]:
    """mean(after) - mean(before), and its 95% bootstrap interval (fixed seed: the test is deterministic)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = np.asarray(before), np.asarray(after)
    draws = [rng.choice(b, len(b)).mean() - rng.choice(a, len(a)).mean() for _ in range(2000)]
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(b.mean() - a.mean()), float(low), float(high)


def test_rft_rewards_the_model_with_its_compiled_multi_grader(tiny_model: Path, tmp_path: Path):
    """The grader, compiled to TRL reward functions (the weighted sum as reward_weights, each part logged):
    a task a tiny random model learns in seconds (start the answer with a space) plus a similarity."""
    grader = {
        "type": "multi",
        "graders": {
            "space": {"type": "string_check", "operation": "regex", "reference": r"^\s"},
            "close": {"type": "text_similarity", "metric": "fuzzy_match", "reference": "{{item.reference}}"},
        },
        "formula": "0.8 * space + 0.2 * close",
    }
    method = {"type": "rft", "grader": grader, "samples_per_prompt": 8, "max_completion_tokens": 4}
    job, logs = _run(
        tiny_model,
        tmp_path,
        method,
        reversal_rows(64),
        adapter={"type": "full"},
        hp={"max_steps": 30, "batch_size": 16, "learning_rate": 1e-2},
    )
    rewards = [d["reward"] for d in logs if "reward" in d]
    assert len(rewards) >= 10 and all("rewards/space/mean" in d and "rewards/close/mean" in d for d in logs)
    delta, low, high = _difference_interval(rewards[:5], rewards[-5:])
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    print(
        f"reward: first 5 logged {first:.3f}, last 5 {last:.3f}, change {delta:+.3f} [{low:+.3f}, {high:+.3f}]"
    )
    assert low > 0, (delta, low, high, rewards)
    assert job.artifact.metadata["method"] == "rft"
    from anytune.spec import EvalSpec

    client = Client()  # the job's own grader as the metric: base and fine-tuned scored the same way
    scored = client.evaluate(
        job.id, EvalSpec(data=str(tmp_path / "train.jsonl"), metrics=["grader"], limit=24, max_new_tokens=4)
    )
    base, tuned = scored.subject("base"), scored.subject("fine-tuned")
    [change] = scored.comparisons
    print(
        f"grader: base {base.metrics['grader']} {base.ci['grader']}, fine-tuned {tuned.metrics['grader']} "
        f"{tuned.ci['grader']}, change {change.delta:+} [{change.low:+}, {change.high:+}]"
    )
    assert tuned.metrics["grader"] > base.metrics["grader"] and change.low > 0, (base, tuned, change)
    written = client.report([job.id], tmp_path / "report")  # the reward curve is in the report
    assert any(image.name == "reward.png" for image in written.images)
    assert "Mean reward per step" in written.html.read_text()


def test_rft_refusals_come_before_anything_is_recorded(tiny_model: Path, tmp_path: Path):
    train = write_jsonl(tmp_path / "train.jsonl", reversal_rows(8))
    client = Client()

    def submit(grader: dict[str, Any]) -> str:
        spec = JobSpec.model_validate(
            {
                "base_model": str(tiny_model),
                "provider": "local",
                "method": {"type": "rft", "grader": grader},
                "data": {"train": str(train)},
            }
        )
        with pytest.raises(AnytuneError) as info:
            client.submit(spec)
        return str(info.value)

    judge = {"type": "model_judge", "model": "gpt-4o-mini", "prompt": "Rate {{sample.output_text}} 0-10"}
    assert "cannot run the model_judge grader" in submit(judge)
    missing = {"type": "string_check", "operation": "equals", "reference": "{{item.answer}}"}
    said = submit(missing)
    assert f"{train}:1" in said and "no 'answer' field, which the grader reads" in said
    crashing = {"type": "python", "source": "def grade(sample, item):\n    return 1 / 0\n"}
    said = submit(crashing)
    assert "the grader fails on this line's own answer" in said and "ZeroDivisionError" in said
    assert client.registry.list_jobs() == []
