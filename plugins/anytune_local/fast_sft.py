"""Supervised fine-tuning on transformers' own Trainer: the same tokens and the same loss as TRL's SFTTrainer,
without its per-step extras.

TRL's SFTTrainer computes token entropy and accuracy on every step and pays a second of start-up; on CPU that
was 20-37% of a step (shared/research/local-stack.md section 4). Here each row is tokenized once the way TRL does
it (the chat template over prompt + completion, loss on the completion's tokens only, or on everything with
`train_on_inputs` and for raw text), batches are padded to their longest row, and the loop is Trainer's. The
benchmark (tests/benchmarks/local_train.py) checks that the loss curves match TRL's step for step.
`provider_options.local.trainer: trl` goes back to TRL's SFTTrainer.
"""

from __future__ import annotations

from typing import Any

IGNORE = -100


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def tokenize_row(row: dict[str, Any], tokenizer: Any, max_length: int) -> dict[str, list[int]]:
    """input_ids and labels (prompt tokens masked with -100) for one TRL-style row."""
    if row.get("assistant_only"):  # multi-turn: every assistant turn trained, everything else masked
        return _assistant_turns(row["messages"], tokenizer, max_length)
    if "messages" in row:  # train_on_inputs: the whole conversation
        ids = _ids(tokenizer, tokenizer.apply_chat_template(row["messages"], tokenize=False))
        labels = list(ids)
    elif "text" in row:  # raw text (continued pre-training)
        ids = _ids(tokenizer, row["text"]) + (
            [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        )
        labels = list(ids)
    elif isinstance(row.get("prompt"), list):  # conversational prompt / completion
        prefix = _ids(
            tokenizer,
            tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True),
        )
        ids = _ids(
            tokenizer, tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
        )
        if ids[: len(prefix)] != prefix:  # a template that rewrites earlier turns: mask what matches
            same = next((i for i, (a, b) in enumerate(zip(prefix, ids, strict=False)) if a != b), len(prefix))
            prefix = prefix[:same]
        labels = [IGNORE] * len(prefix) + ids[len(prefix) :]
    else:  # plain prompt / completion strings
        prefix = _ids(tokenizer, row["prompt"])
        completion = _ids(tokenizer, row["completion"])
        if tokenizer.eos_token_id is not None:
            completion.append(tokenizer.eos_token_id)
        ids = prefix + completion
        labels = [IGNORE] * len(prefix) + completion
    return {"input_ids": ids[:max_length], "labels": labels[:max_length]}


def _assistant_turns(messages: list[dict[str, Any]], tokenizer: Any, max_length: int) -> dict[str, list[int]]:
    """Labels on the tokens each assistant turn adds to the rendered conversation: the text between the
    conversation up to the turn (with the generation prompt) and the conversation including it."""
    ids = _ids(tokenizer, tokenizer.apply_chat_template(messages, tokenize=False))
    labels = [IGNORE] * len(ids)
    for i, m in enumerate(messages):
        if m.get("role") != "assistant":
            continue
        start = len(
            _ids(
                tokenizer,
                tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True),
            )
        )
        end = len(_ids(tokenizer, tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)))
        labels[start:end] = ids[start:end]
    return {"input_ids": ids[:max_length], "labels": labels[:max_length]}


class PadCollator:
    """Right-pads a batch to its longest row; padding is masked out of attention and loss."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad = pad_token_id

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        ids, labels, mask = [], [], []
        for f in features:
            gap = longest - len(f["input_ids"])
            ids.append(f["input_ids"] + [self.pad] * gap)
            labels.append(f["labels"] + [IGNORE] * gap)
            mask.append([1] * len(f["input_ids"]) + [0] * gap)
        return {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
        }


def make_trainer(
    model: Any,
    tokenizer: Any,
    common: dict[str, Any],
    max_length: int,
    train_rows: list[dict[str, Any]],
    eval_rows: list[dict[str, Any]] | None,
    peft_config: Any,
    callbacks: list[Any],
    group_by_length: bool = False,
) -> Any:
    from transformers import Trainer, TrainingArguments

    if peft_config is not None:
        from peft import get_peft_model
        from transformers import set_seed

        set_seed(
            common["seed"]
        )  # the adapter's random init, as TRL seeds it: the same run gives the same curve
        model = get_peft_model(model, peft_config)
    if common.get("gradient_checkpointing") and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()  # frozen embeddings: checkpointed blocks still need a grad path
    train = [tokenize_row(r, tokenizer, max_length) for r in train_rows]
    evals = [tokenize_row(r, tokenizer, max_length) for r in eval_rows] if eval_rows else None
    args = TrainingArguments(
        **common,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        train_sampling_strategy="group_by_length" if group_by_length else "random",
    )
    return Trainer(
        model=model,
        args=args,
        train_dataset=train,  # a list: Trainer (and its length-grouped sampler) index rows directly
        eval_dataset=evals or None,
        data_collator=PadCollator(tokenizer.pad_token_id),
        callbacks=callbacks,
    )
