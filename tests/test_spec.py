from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from anytune.errors import SpecError
from anytune.jobfile import apply_override, load_job_file, spec_from_dict
from anytune.spec import DPOMethod, JobSpec, LoraAdapter, QLoraAdapter


def minimal(**extra):
    return {"base_model": "tiny", "data": {"train": "train.jsonl"}, **extra}


def test_defaults_are_sft_with_lora_on_local():
    spec = JobSpec.model_validate(minimal())
    assert spec.method.type == "sft"
    assert isinstance(spec.adapter, LoraAdapter) and spec.adapter.r == 16
    assert spec.adapter.effective_alpha == 32
    assert spec.provider == "local"
    assert spec.hyperparameters.explicitly_set() == set()


def test_shorthand_and_synonyms_for_method_and_adapter():
    spec = JobSpec.model_validate(minimal(method="preference", adapter="qlora"))
    assert isinstance(spec.method, DPOMethod)
    assert isinstance(spec.adapter, QLoraAdapter) and spec.adapter.bits == 4
    spec = JobSpec.model_validate(
        minimal(method={"type": "dpo", "beta": 0.2}, adapter={"type": "adapter_layers"})
    )
    assert spec.method.beta == 0.2
    assert spec.adapter.type == "bottleneck"
    assert JobSpec.model_validate(minimal(method="continued-pretraining")).method.type == "cpt"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"hyperparameters": {"learning_rate": -1}}, "greater than 0"),
        ({"hyperparameters": {"warmup_ratio": 0.1, "warmup_steps": 10}}, "not both"),
        ({"hyperparameters": {"early_stopping": {"patience": 2}}}, "needs validation data"),
        ({"suffix": "has spaces"}, "1-64"),
        ({"method": {"type": "dpo", "beta": 5}}, "less than or equal to 2"),
        ({"data": {"train": "a.jsonl", "validation": "b.jsonl", "validation_split": 0.1}}, "not both"),
        ({"data": {"train": "a.jsonl", "format": "weird"}}, "unknown data format"),
    ],
)
def test_invalid_specs_are_refused_with_a_reason(extra, needle):
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate(minimal(**extra))
    assert needle in str(info.value)


def test_unknown_adapter_lists_the_known_ones():
    with pytest.raises(SpecError) as info:
        spec_from_dict(minimal(adapter="loar"))
    text = str(info.value)
    assert "adapter" in text and "'loar'" in text and "lora" in text


def test_early_stopping_with_validation_split_is_fine():
    spec = JobSpec.model_validate(
        minimal(data={"train": "t.jsonl", "validation_split": 0.1}, hyperparameters={"early_stopping": {}})
    )
    assert spec.hyperparameters.early_stopping.patience == 3
    assert spec.hyperparameters.explicitly_set() == {"early_stopping"}


def test_job_file_errors_name_the_line_and_field(tmp_path: Path):
    job = tmp_path / "job.yaml"
    job.write_text(
        "base_model: tiny\n"
        "data:\n"
        "  train: t.jsonl\n"
        "hyperparameters:\n"
        "  learning_rate: -0.1\n"
        "  batch_sise: 4\n"
        "adapter:\n"
        "  type: lora\n"
        "  r: 0\n"
    )
    with pytest.raises(SpecError) as info:
        load_job_file(job)
    details = info.value.details
    assert any(f"{job}:5: hyperparameters.learning_rate" in d for d in details), details
    assert any(f"{job}:6: hyperparameters.batch_sise: unknown field" in d for d in details), details
    assert any(f"{job}:9: adapter.r" in d for d in details), details
    assert info.value.exit_code == 2


def test_invalid_yaml_names_the_line(tmp_path: Path):
    job = tmp_path / "job.yaml"
    job.write_text("base_model: tiny\ndata: [unclosed\n")
    with pytest.raises(SpecError, match=r"job\.yaml:3: not valid YAML"):
        load_job_file(job)


def test_missing_job_file(tmp_path: Path):
    with pytest.raises(SpecError, match="no such job file"):
        load_job_file(tmp_path / "nope.yaml")


def test_overrides_and_relative_paths(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    job = tmp_path / "sub" / "job.yaml"
    job.write_text("base_model: tiny\nadapter: lora\ndata:\n  train: data/train.jsonl\n")
    spec = load_job_file(
        job,
        overrides=["hyperparameters.learning_rate=1e-4", "adapter.r=8", "tags=[a, b]", "data.test=t.jsonl"],
        provider="other",
    )
    assert spec.hyperparameters.learning_rate == pytest.approx(1e-4)
    assert spec.adapter.r == 8 and spec.adapter.type == "lora"
    assert spec.tags == ["a", "b"]
    assert spec.provider == "other"
    assert spec.data.train == str(tmp_path / "sub" / "data" / "train.jsonl")
    assert spec.data.test == str(tmp_path / "sub" / "t.jsonl")


@pytest.mark.parametrize("bad", ["no-equals-sign", "=1", "base_model.x=1"])
def test_bad_overrides_are_usage_errors(bad):
    with pytest.raises(SpecError):
        apply_override({"base_model": "tiny"}, bad)


def test_options_for_provider_and_display_name():
    spec = JobSpec.model_validate(
        minimal(provider_options={"local": {"merge": True}}, base_model="org/Model-1")
    )
    assert spec.options_for() == {"merge": True}
    assert spec.options_for("openai") == {}
    assert spec.display_name() == "Model-1-sft-lora"
    spec.options_for()["merge"] = False  # a copy: the spec is unchanged
    assert spec.options_for() == {"merge": True}


def test_spec_round_trips_through_json():
    spec = JobSpec.model_validate(minimal(adapter={"type": "qlora", "r": 4}, method="dpo"))
    again = JobSpec.model_validate(spec.model_dump(mode="json"))
    assert again == spec
