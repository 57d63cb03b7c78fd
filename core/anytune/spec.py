"""JobSpec: one description of a fine-tuning job that every backend understands.

A spec says *what* to train (base model, method, adapter, data) and *how* (hyperparameters), in neutral
terms. Backends declare which parts they honour (`Capabilities`); the core refuses a spec a backend cannot
run before anything is uploaded. Hyperparameters left unset mean "the backend's default", which is what a
hosted provider's "auto" means too.

`method` and `adapter` accept a bare name as shorthand (`method: dpo`, `adapter: qlora`) and the full
object otherwise (`adapter: {type: lora, r: 32}`).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from anytune.graders.spec import GraderSpec, RFTGrader

__all__ = [
    "SPEC_VERSION",
    "AdapterSpec",
    "AdapterType",
    "DataFormat",
    "DataSpec",
    "EarlyStopping",
    "EvalSpec",
    "FreezeSpec",
    "Hyperparameters",
    "JobSpec",
    "Method",
    "MethodSpec",
    "RFTMethod",
    "parse_format",
]


# ------------------------------------------------------------------------------------------ data formats


class DataFormat(StrEnum):
    """The shapes of a data file's records (detection and checks: `anytune.data.formats`)."""

    CHAT = "chat"  # {"messages": [{"role", "content"}, ...]}  (OpenAI's SFT format; anytune's canonical one)
    INSTRUCTION = "instruction"  # {"instruction", "input"?, "output"}  (Alpaca)
    COMPLETION = "completion"  # {"prompt", "completion"}
    TEXT = "text"  # {"text"}  (continued pre-training)
    PREFERENCE = "preference"  # {"prompt", "chosen", "rejected"}  (TRL)
    OPENAI_PREFERENCE = "openai_preference"  # {"input", "preferred_output", "non_preferred_output"}


def parse_format(value: str) -> DataFormat:
    """A DataFormat from a user's string, accepting a few common synonyms."""
    synonyms = {
        "messages": DataFormat.CHAT,
        "conversation": DataFormat.CHAT,
        "conversational": DataFormat.CHAT,
        "alpaca": DataFormat.INSTRUCTION,
        "prompt_completion": DataFormat.COMPLETION,
        "dpo": DataFormat.PREFERENCE,
        "openai-preference": DataFormat.OPENAI_PREFERENCE,
        "general": DataFormat.TEXT,
    }
    key = value.strip().lower()
    if key in synonyms:
        return synonyms[key]
    return DataFormat(key)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------------------------- methods


class Method(StrEnum):
    SFT = "sft"
    DPO = "dpo"
    REWARD = "reward"
    CPT = "cpt"  # continued pre-training on raw text
    PPO = "ppo"  # named so that a spec can say it; no built-in backend runs it (each says why)
    GRPO = "grpo"  # online RL with reward functions (the local backend)
    RFT = (
        "rft"  # reinforcement fine-tuning with a grader: one definition for every provider (docs/graders.md)
    )


_METHOD_SYNONYMS = {
    "supervised": "sft",
    "continued-pretraining": "cpt",
    "continued_pretraining": "cpt",
    "pretraining": "cpt",
    "preference": "dpo",
    "reward_model": "reward",
    "reward-model": "reward",
    "reinforcement": "rft",
}


class SFTMethod(_Strict):
    type: Literal["sft"] = "sft"
    train_on_inputs: bool = Field(
        False, description="Also compute the loss on prompts/user turns (default: completions only)."
    )


class DPOMethod(_Strict):
    type: Literal["dpo"] = "dpo"
    beta: float | None = Field(
        None, strict=True, gt=0, le=2, description="KL penalty strength; backend default if unset."
    )
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust", "simpo", "apo_zero", "apo_down"] | None = None
    rpo_alpha: float | None = Field(None, strict=True, ge=0)
    simpo_gamma: float | None = Field(None, strict=True, ge=0)


class RewardMethod(_Strict):
    type: Literal["reward"] = "reward"


class CPTMethod(_Strict):
    type: Literal["cpt"] = "cpt"


class PPOMethod(_Strict):
    type: Literal["ppo"] = "ppo"
    reward_model: str | None = None


class GRPOMethod(_Strict):
    type: Literal["grpo"] = "grpo"
    reward_functions: list[str] = Field(
        default_factory=list, description="Dotted paths or entry-point names of reward callables."
    )
    num_generations: int | None = Field(None, strict=True, ge=2)


class RFTMethod(_Strict):
    """Reinforcement fine-tuning: the model writes several answers to each prompt and learns from the grader's
    scores. The grader is compiled to what each provider runs (OpenAI's grader JSON, a Fireworks evaluator, a
    Bedrock Lambda, TRL reward functions); the settings below are mapped to each provider's names."""

    type: Literal["rft"] = "rft"
    grader: RFTGrader = Field(
        ...,
        description="One grader, or a list of graders whose scores are averaged (not on OpenAI or Azure).",
    )
    samples_per_prompt: int | None = Field(
        None, strict=True, ge=2, le=128, description="Answers sampled per prompt (GRPO's group size)."
    )
    max_completion_tokens: int | None = Field(None, strict=True, ge=1, le=131_072)
    temperature: float | None = Field(None, gt=0, le=2)
    kl_beta: float | None = Field(None, ge=0, le=10, description="KL penalty towards the base model.")
    reasoning_effort: Literal["low", "medium", "high"] | None = None
    compute_multiplier: float | None = Field(None, gt=0, le=10, description="OpenAI and Azure OpenAI only.")
    eval_interval: int | None = Field(None, strict=True, ge=1)
    eval_samples: int | None = Field(None, strict=True, ge=1)


MethodSpec = Annotated[
    SFTMethod | DPOMethod | RewardMethod | CPTMethod | PPOMethod | GRPOMethod | RFTMethod,
    Field(discriminator="type"),
]


# -------------------------------------------------------------------------------------------- adapters


class AdapterType(StrEnum):
    FULL = "full"
    LORA = "lora"
    QLORA = "qlora"
    DORA = "dora"
    PREFIX = "prefix"
    PROMPT = "prompt"
    PTUNING = "p_tuning"
    IA3 = "ia3"
    LLAMA_ADAPTER = "llama_adapter"
    BOTTLENECK = "bottleneck"  # Houlsby/Pfeiffer adapter layers


_ADAPTER_SYNONYMS = {
    "none": "full",
    "full_finetune": "full",
    "adapter": "bottleneck",
    "adapters": "bottleneck",
    "adapter_layers": "bottleneck",
    "prefix_tuning": "prefix",
    "prompt_tuning": "prompt",
    "ptuning": "p_tuning",
    "p-tuning": "p_tuning",
    "adaption_prompt": "llama_adapter",
}


class FullAdapter(_Strict):
    """Full fine-tuning: every weight that is not frozen (see `hyperparameters.freeze`) is trained."""

    type: Literal["full"] = "full"


class LoraAdapter(_Strict):
    type: Literal["lora"] = "lora"
    r: int = Field(16, strict=True, ge=1, le=4096)
    alpha: float | None = Field(None, strict=True, gt=0, description="Scaling numerator; defaults to 2*r.")
    dropout: float = Field(0.05, strict=True, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    modules_to_save: list[str] = Field(default_factory=list)
    use_rslora: bool = False
    init: Literal["default", "gaussian", "pissa", "olora", "loftq"] = "default"

    @property
    def effective_alpha(self) -> float:
        return self.alpha if self.alpha is not None else 2.0 * self.r


class DoraAdapter(LoraAdapter):
    type: Literal["dora"] = "dora"  # type: ignore[assignment]


class QLoraAdapter(LoraAdapter):
    type: Literal["qlora"] = "qlora"  # type: ignore[assignment]
    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"


class PrefixAdapter(_Strict):
    type: Literal["prefix"] = "prefix"
    num_virtual_tokens: int = Field(20, strict=True, ge=1)
    projection: bool = False


class PromptAdapter(_Strict):
    type: Literal["prompt"] = "prompt"
    num_virtual_tokens: int = Field(20, strict=True, ge=1)
    init_text: str | None = None


class PTuningAdapter(_Strict):
    type: Literal["p_tuning"] = "p_tuning"
    num_virtual_tokens: int = Field(20, strict=True, ge=1)
    encoder_hidden_size: int = Field(128, strict=True, ge=1)


class IA3Adapter(_Strict):
    type: Literal["ia3"] = "ia3"
    target_modules: list[str] | None = None
    feedforward_modules: list[str] | None = None


class LlamaAdapter(_Strict):
    type: Literal["llama_adapter"] = "llama_adapter"
    adapter_len: int = Field(10, strict=True, ge=1)
    adapter_layers: int = Field(8, strict=True, ge=1)


class BottleneckAdapter(_Strict):
    type: Literal["bottleneck"] = "bottleneck"
    style: Literal["houlsby", "pfeiffer"] = "pfeiffer"
    reduction_factor: int = Field(16, strict=True, ge=1)
    non_linearity: Literal["relu", "gelu", "swish"] = "relu"


AdapterSpec = Annotated[
    FullAdapter
    | LoraAdapter
    | QLoraAdapter
    | DoraAdapter
    | PrefixAdapter
    | PromptAdapter
    | PTuningAdapter
    | IA3Adapter
    | LlamaAdapter
    | BottleneckAdapter,
    Field(discriminator="type"),
]


# ------------------------------------------------------------------------------------- hyperparameters


class FreezeSpec(_Strict):
    """Which weights full fine-tuning leaves alone."""

    first_n_layers: int | None = Field(
        None, strict=True, ge=0, description="Freeze the first N transformer blocks."
    )
    patterns: list[str] = Field(default_factory=list, description="Regexes on parameter names to freeze.")
    embeddings: bool = Field(False, description="Freeze the input embeddings (and tied output head).")


class EarlyStopping(_Strict):
    patience: int = Field(
        3, strict=True, ge=1, description="Evaluations without improvement before stopping."
    )
    metric: str = "eval_loss"
    mode: Literal["min", "max"] = "min"
    min_delta: float = Field(0.0, strict=True, ge=0)


class Hyperparameters(_Strict):
    """Training knobs. None means "the backend's default"; backends say which ones they honour."""

    epochs: float | None = Field(None, strict=True, gt=0, le=1000)
    max_steps: int | None = Field(None, strict=True, ge=1)
    learning_rate: float | None = Field(None, strict=True, gt=0, lt=1)
    batch_size: int | None = Field(None, strict=True, ge=1, le=4096)
    gradient_accumulation_steps: int | None = Field(None, strict=True, ge=1, le=4096)
    lr_scheduler: (
        Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial"]
        | None
    ) = None
    warmup_ratio: float | None = Field(None, strict=True, ge=0, lt=1)
    warmup_steps: int | None = Field(None, strict=True, ge=0)
    weight_decay: float | None = Field(None, strict=True, ge=0)
    max_grad_norm: float | None = Field(None, strict=True, gt=0)
    max_seq_length: int | None = Field(None, strict=True, ge=8, le=1_048_576)
    seed: int | None = Field(None, strict=True, ge=0, le=2_147_483_647)
    freeze: FreezeSpec | None = None
    early_stopping: EarlyStopping | None = None

    @model_validator(mode="after")
    def _one_warmup(self) -> Hyperparameters:
        if self.warmup_ratio is not None and self.warmup_steps is not None:
            raise ValueError("give warmup_ratio or warmup_steps, not both")
        return self

    def explicitly_set(self) -> set[str]:
        """Names of the hyperparameters the user set (so a backend that ignores them can say so)."""
        return {name for name in self.model_fields_set if getattr(self, name) is not None}


# ------------------------------------------------------------------------------------------------ data


class DataSpec(_Strict):
    train: str = Field(..., min_length=1, description="Training file (JSONL, CSV or Parquet).")
    validation: str | None = None
    test: str | None = None
    format: DataFormat | Literal["auto"] = "auto"
    validation_split: float | None = Field(
        None,
        strict=True,
        gt=0,
        le=0.5,
        description="Carve a validation split out of train (no leakage by prompt).",
    )

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> Any:
        if isinstance(value, str) and value != "auto":
            try:
                return parse_format(value)
            except ValueError:
                known = ", ".join(f.value for f in DataFormat)
                raise ValueError(f"unknown data format {value!r}; use auto or one of {known}") from None
        return value

    @field_validator("train", "validation", "test")
    @classmethod
    def _local_file(cls, value: str | None) -> str | None:
        if value and "://" in value:
            raise ValueError(
                f"{value[:200]!r} is a URL; anytune reads local files: download it first "
                "(e.g. curl -o train.jsonl URL) and name the file"
            )
        return value

    @model_validator(mode="after")
    def _one_validation(self) -> DataSpec:
        if self.validation and self.validation_split:
            raise ValueError("give data.validation or data.validation_split, not both")
        return self


# -------------------------------------------------------------------------------------------- the spec

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SUFFIX = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _shorthand(value: Any, synonyms: dict[str, str]) -> Any:
    """`"lora"` -> `{"type": "lora"}`, with synonyms, so YAML can stay short."""
    if isinstance(value, str):
        key = value.strip().lower()
        return {"type": synonyms.get(key, key)}
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        key = value["type"].strip().lower()
        return {**value, "type": synonyms.get(key, key)}
    return value


class EvalSpec(BaseModel):
    """A held-out evaluation run on the fine-tuned model and, by default, on its base model too.

    The same spec runs against every backend through its `generate()`, so that the numbers of a local
    adapter and of a provider's fine-tune mean the same thing.
    """

    model_config = ConfigDict(extra="forbid")

    data: str | None = Field(None, description="Evaluation file; defaults to the job's data.test.")
    metrics: list[str] = Field(
        default_factory=lambda: ["exact_match"],
        min_length=1,
        description="Metric names; `{grader: ..., name: ...}` adds a grader as a metric (docs/graders.md), and "
        "`grader` alone is an RFT job's own grader.",
    )
    graders: dict[str, GraderSpec] = Field(
        default_factory=dict, description="Graders scored as metrics, by name (each name also in `metrics`)."
    )
    compare_base: bool = Field(True, description="Also score the base model, for an A/B.")
    max_new_tokens: int = Field(64, strict=True, ge=1, le=4096)
    limit: int | None = Field(None, strict=True, ge=1, description="Score only the first N examples.")
    batch_size: int = Field(16, strict=True, ge=1, le=512)
    judge: str | None = Field(
        None,
        description="A model that judges each pair of answers (a model reference, a job id, or provider:model "
        "for a provider's base model, e.g. openai:gpt-4o-mini); adds a `judge` head-to-head.",
    )

    @model_validator(mode="before")
    @classmethod
    def _graders_in_metrics(cls, data: Any) -> Any:
        """`metrics: [exact_match, {grader: {...}, name: reward}]`: each grader entry moves to `graders`
        under its name (`grader` when it has none), and its name stays in `metrics`."""
        if not isinstance(data, dict) or not isinstance(data.get("metrics"), list):
            return data
        names, graders = [], dict(data.get("graders") or {})
        for entry in data["metrics"]:
            if isinstance(entry, dict) and "grader" in entry:
                extra = sorted(set(entry) - {"grader", "name"})
                if extra:
                    raise ValueError(f"a grader metric has `grader` and `name` only, not {', '.join(extra)}")
                name = str(entry.get("name") or "grader")
                if name in graders or name in names:
                    raise ValueError(f"two metrics are named {name!r}: give each grader its own `name`")
                graders[name] = entry["grader"]
                names.append(name)
            else:
                names.append(entry)
        return {**data, "metrics": names, "graders": graders}

    @model_validator(mode="after")
    def _every_grader_is_a_metric(self) -> EvalSpec:
        unused = sorted(set(self.graders) - set(self.metrics))
        if unused:
            raise ValueError(f"graders {', '.join(unused)} are not in metrics: add their names to metrics")
        return self


MAX_OPTIONS_BYTES = 64 * 1024

# The version of JobSpec's shape. Raise it with every change to a field's name, place or meaning, and add the
# step from the previous version to anytune.spec_upgrades.UPGRADES (stored specs are upgraded on read).
SPEC_VERSION = 2


class JobSpec(_Strict):
    """A fine-tuning job, independent of where it runs."""

    spec_version: int = Field(
        SPEC_VERSION,
        ge=1,
        le=SPEC_VERSION,
        description="The version of the spec's shape; older specs are upgraded on read (anytune writes it).",
    )
    name: str | None = Field(None, description="A name for the job and the model it produces.")
    base_model: str = Field(..., min_length=1, description="Neutral model id, hub id or local path.")
    method: MethodSpec = Field(default_factory=SFTMethod)
    adapter: AdapterSpec = Field(default_factory=LoraAdapter)
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    data: DataSpec
    evaluation: EvalSpec | None = None
    budget_usd: float | None = Field(
        None, strict=True, gt=0, description="Refuse the job if its quote is above this."
    )
    suffix: str | None = Field(None, description="Appended to the provider's model name (1-64 chars).")
    tags: list[str] = Field(default_factory=list)
    provider: str = Field("local", min_length=1)
    provider_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-provider extras, keyed by provider name."
    )
    strict: bool = Field(
        False, description="Refuse (instead of warn about) hyperparameters the backend ignores."
    )

    @field_validator("provider_options")
    @classmethod
    def _options_size(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Options pass through to providers as they are: a few keys, not megabytes (an alias bomb that
        stayed under the YAML budget would otherwise be sent, and stored with every job)."""
        import json

        size = len(json.dumps(value, default=str))
        if size > MAX_OPTIONS_BYTES:
            raise ValueError(f"{size:,} bytes of provider options; at most {MAX_OPTIONS_BYTES:,}")
        return value

    @field_validator("method", mode="before")
    @classmethod
    def _method_shorthand(cls, value: Any) -> Any:
        return _shorthand(value, _METHOD_SYNONYMS)

    @field_validator("adapter", mode="before")
    @classmethod
    def _adapter_shorthand(cls, value: Any) -> Any:
        return _shorthand(value, _ADAPTER_SYNONYMS)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError("use letters, digits, '.', '_' and '-' (at most 100 characters)")
        return value

    @field_validator("suffix")
    @classmethod
    def _suffix(cls, value: str | None) -> str | None:
        if value is not None and not _SUFFIX.match(value):
            raise ValueError("use 1-64 letters, digits, '_' or '-'")
        return value

    @model_validator(mode="after")
    def _early_stopping_needs_validation(self) -> JobSpec:
        if self.hyperparameters.early_stopping and not (self.data.validation or self.data.validation_split):
            raise ValueError(
                "hyperparameters.early_stopping needs validation data: set data.validation or data.validation_split"
            )
        return self

    def files_read(self) -> list[str]:
        """Every file this spec makes whoever runs it read: its data, its evaluation data, its Python graders'
        files (a server allows only those under ANYTUNE_DATA_ROOT)."""
        from anytune.graders.spec import grader_files

        evaluation = self.evaluation.data if self.evaluation is not None else None
        paths = [p for p in (self.data.train, self.data.validation, self.data.test, evaluation) if p]
        graders = [
            getattr(self.method, "grader", None),
            *(self.evaluation.graders.values() if self.evaluation else []),
        ]
        return paths + [f for g in graders if g is not None for f in grader_files(g)]

    @property
    def method_type(self) -> Method:
        return Method(self.method.type)

    @property
    def adapter_type(self) -> AdapterType:
        return AdapterType(self.adapter.type)

    def model_for(self, provider: str | None = None) -> str:
        """The base model on `provider`: `provider_options.<provider>.base_model`, else `base_model`.

        A job file that names a hub model for local runs can name the provider's own model for each
        provider, and so run unchanged with `--provider`."""
        return str(self.options_for(provider).get("base_model") or self.base_model)

    def options_for(self, provider: str | None = None) -> dict[str, Any]:
        """The provider-specific extras for `provider` (default: the spec's own provider)."""
        return dict(self.provider_options.get(provider or self.provider, {}))

    def display_name(self) -> str:
        if self.name:
            return self.name
        base = self.base_model.rstrip("/").rsplit("/", 1)[-1]
        return f"{base}-{self.method.type}-{self.adapter.type}"
