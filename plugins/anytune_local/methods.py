"""The training methods of the local backend, each on TRL: the rows it trains on, its config and its trainer.

- sft: chat / instruction / completion rows as TRL's conversational prompt/completion (loss on the answer),
  or whole conversations with `train_on_inputs`.
- cpt: continued pre-training: raw text (or every other format flattened to text), loss on every token.
- dpo: preference pairs (prompt, chosen, rejected), with TRL's loss variants (sigmoid, ipo, hinge, robust,
  apo_zero, apo_down) and RPO (DPO + NLL on the chosen answer, `rpo_alpha`).
- reward: a reward model (sequence classification, one score) trained on the same pairs.
- grpo: online RL: the model samples several answers per prompt and learns from reward functions.
- rft: GRPO rewarded by the job's grader (anytune_local.graders), each data line (with its answer as
  `reference`) handed to the grader as the item.
"""

from __future__ import annotations

import json
from typing import Any

from anytune.plugin import (
    CapabilityError,
    DataFormat,
    JobSpec,
    Method,
    RecordValidator,
    as_messages,
    convert_record,
    full_text,
    grader_item,
    normalize_messages,
    prompt_and_target,
)


def preference_row(record: dict[str, Any], fmt: DataFormat) -> dict[str, Any]:
    pair = convert_record(record, fmt, DataFormat.OPENAI_PREFERENCE)
    return {
        "prompt": normalize_messages(pair["input"]["messages"]),
        "chosen": normalize_messages(pair["preferred_output"]),
        "rejected": normalize_messages(pair["non_preferred_output"]),
    }


def to_trl_row(record: dict[str, Any], fmt: DataFormat, train_on_inputs: bool) -> dict[str, Any]:
    """One record as a TRL dataset row."""
    if (
        fmt is DataFormat.COMPLETION
        and isinstance(record["prompt"], str)
        and isinstance(record["completion"], str)
    ):
        if train_on_inputs:
            return {"text": record["prompt"] + record["completion"]}
        return {"prompt": record["prompt"], "completion": record["completion"]}
    prompt, target = prompt_and_target(record, fmt)
    if fmt is DataFormat.CHAT:
        messages = record["messages"]
        last = max(i for i, m in enumerate(messages) if m.get("role") == "assistant")
        completion = normalize_messages([messages[last]])
    elif fmt is DataFormat.COMPLETION:
        completion = normalize_messages(as_messages(record["completion"], "assistant"))
    else:
        completion = [{"role": "assistant", "content": target}]
    prompt = normalize_messages(prompt)
    if train_on_inputs:
        return {"messages": prompt + completion}
    return {"prompt": prompt, "completion": completion}


def rows_for(spec: JobSpec, path: str, fmt: DataFormat, *, all_turns: bool = False) -> list[dict[str, Any]]:
    """The dataset rows the method's trainer takes, from a validated file of any format it accepts.

    `all_turns`: a chat with several assistant turns becomes one row trained on every assistant turn (the Trainer
    path masks the rest); without it, TRL's prompt/completion rows train the last turn."""
    method = spec.method_type
    inputs = bool(getattr(spec.method, "train_on_inputs", False))
    out = []
    for _, record in RecordValidator(path, format=fmt, collect_stats=False):
        if method is Method.SFT:
            turns = (
                sum(m.get("role") == "assistant" for m in record.get("messages", []))
                if fmt is DataFormat.CHAT
                else 0
            )
            if all_turns and turns > 1 and not inputs:
                out.append({"messages": normalize_messages(record["messages"]), "assistant_only": True})
            else:
                out.append(to_trl_row(record, fmt, inputs))
        elif method is Method.CPT:
            out.append({"text": record["text"] if fmt is DataFormat.TEXT else full_text(record, fmt)})
        elif method in (Method.DPO, Method.REWARD):
            out.append(preference_row(record, fmt))
        elif method is Method.GRPO:
            prompt, target = prompt_and_target(record, fmt)
            out.append({"prompt": normalize_messages(prompt), "reference": target})
        elif method is Method.RFT:
            from anytune_local.graders import ITEM_COLUMN

            prompt, _ = prompt_and_target(record, fmt)
            item = json.dumps(grader_item(record, fmt), ensure_ascii=False)  # what `{{item.FIELD}}` reads
            out.append({"prompt": normalize_messages(prompt), ITEM_COLUMN: item})
        else:
            raise CapabilityError(f"the local backend cannot run method {method.value!r}")
    return out


def dpo_loss(spec: JobSpec) -> dict[str, Any]:
    m = spec.method
    loss = m.loss_type or "sigmoid"
    if loss == "simpo":
        raise CapabilityError(
            "SimPO is not in TRL 1.16's DPOTrainer (it moved to trl.experimental's CPOTrainer)",
            hint="use loss_type ipo, hinge, robust, apo_zero, apo_down or sigmoid",
        )
    kwargs: dict[str, Any] = {"loss_type": [loss]}
    if m.rpo_alpha:
        kwargs = {"loss_type": [loss, "sft"], "loss_weights": [1.0, float(m.rpo_alpha)]}
    if m.beta is not None:
        kwargs["beta"] = float(m.beta)
    return kwargs


def config_for(spec: JobSpec, common: dict[str, Any], max_length: int) -> Any:
    method = spec.method_type
    if method in (Method.SFT, Method.CPT):
        from trl import SFTConfig

        extra = {"completion_only_loss": False} if method is Method.CPT else {}
        return SFTConfig(**common, max_length=max_length, **extra)
    if method is Method.DPO:
        from trl import DPOConfig

        return DPOConfig(**common, max_length=max_length, **dpo_loss(spec))
    if method is Method.REWARD:
        from trl import RewardConfig

        return RewardConfig(**common, max_length=max_length)
    if method in (Method.GRPO, Method.RFT):
        from trl import GRPOConfig

        options, m = spec.options_for("local"), spec.method
        rft = method is Method.RFT
        generations = (m.samples_per_prompt if rft else m.num_generations) or 4
        batch = common["per_device_train_batch_size"]
        if batch % generations:
            common = {**common, "per_device_train_batch_size": max(generations, batch - batch % generations)}
        max_completion = (m.max_completion_tokens if rft else None) or options.get(
            "max_completion_length", 32
        )
        temperature = (m.temperature if rft else None) or options.get("temperature", 1.0)
        beta = m.kl_beta if rft and m.kl_beta is not None else options.get("kl_beta", 0.0)
        extra: dict[str, Any] = {}
        if rft:
            from anytune_local.graders import reward_functions

            _, weights = reward_functions(spec.method)
            if weights is not None:
                extra["reward_weights"] = weights
        return GRPOConfig(
            **common,
            num_generations=generations,
            max_completion_length=int(max_completion),
            temperature=float(temperature),
            beta=float(beta),
            **extra,
        )
    raise CapabilityError(f"the local backend cannot run method {method.value!r}")


def load_model(spec: JobSpec, path: Any, device: str, dtype: Any, tokenizer: Any) -> Any:
    """A causal LM, or for reward modelling a one-score sequence classifier on the same weights."""
    from anytune_local import adapters

    if spec.method_type is Method.REWARD:
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1, dtype=dtype)
        model.config.pad_token_id = tokenizer.pad_token_id
        return model
    return adapters.load_for_training(path, spec, device, dtype)


def trainer_for(
    spec: JobSpec,
    model: Any,
    tokenizer: Any,
    config: Any,
    train_rows: list[dict[str, Any]],
    eval_rows: list[dict[str, Any]] | None,
    peft_config: Any,
    callbacks: list[Any],
) -> Any:
    from datasets import Dataset

    train_ds = Dataset.from_list(train_rows)
    eval_ds = Dataset.from_list(eval_rows) if eval_rows else None
    common = {
        "model": model,
        "args": config,
        "train_dataset": train_ds,
        "eval_dataset": eval_ds,
        "processing_class": tokenizer,
        "peft_config": peft_config,
        "callbacks": callbacks,
    }
    method = spec.method_type
    if method in (Method.SFT, Method.CPT):
        from trl import SFTTrainer

        return SFTTrainer(**common)
    if method is Method.DPO:
        from trl import DPOTrainer

        return DPOTrainer(**common)
    if method is Method.REWARD:
        from trl import RewardTrainer

        return RewardTrainer(**common)
    if method is Method.GRPO:
        from trl import GRPOTrainer

        from anytune_local.rewards import resolve_rewards

        return GRPOTrainer(reward_funcs=resolve_rewards(spec.method.reward_functions), **common)
    if method is Method.RFT:
        from trl import GRPOTrainer

        from anytune_local.graders import reward_functions

        funcs, _weights = reward_functions(spec.method)  # the weights are in the config
        return GRPOTrainer(reward_funcs=funcs, **common)
    raise CapabilityError(f"the local backend cannot run method {method.value!r}")
