"""Greedy (or sampled) chat completions from a local model, batched, for evaluation."""

from __future__ import annotations

from typing import Any

from anytune.plugin import GenerationParams


def generate(
    model: Any, tokenizer: Any, prompts: list[list[dict[str, Any]]], params: GenerationParams
) -> list[str]:
    import torch

    tokenizer.padding_side = "left"  # decoder-only models continue from the right end
    outputs: list[str] = []
    device = next(model.parameters()).device
    for start in range(0, len(prompts), params.batch_size):
        batch = prompts[start : start + params.batch_size]
        texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in batch]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        sampling: dict[str, Any] = {"do_sample": False}
        if params.temperature > 0:
            sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=params.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                **sampling,
            )
        new_tokens = out[:, enc["input_ids"].shape[1] :]
        outputs.extend(t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return outputs


def target_loss(
    model: Any, tokenizer: Any, prompts: list[list[dict[str, Any]]], targets: list[str]
) -> list[tuple[float, int]]:
    """Per example: the summed negative log-likelihood of the answer's tokens after the prompt, rendered with
    the chat template exactly as training renders it, and the number of answer tokens."""
    import torch

    device = next(model.parameters()).device
    out: list[tuple[float, int]] = []
    for prompt, target in zip(prompts, targets, strict=True):
        prefix = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            [*prompt, {"role": "assistant", "content": target}], tokenize=False
        )
        prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
        ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        labels = [-100] * len(prefix_ids) + ids[len(prefix_ids) :]
        n = sum(1 for x in labels if x != -100)
        if n == 0:
            out.append((0.0, 0))
            continue
        with torch.no_grad():
            logits = model(torch.tensor([ids], device=device)).logits[0, :-1]
            gold = torch.tensor(labels[1:], device=device)
            nll = torch.nn.functional.cross_entropy(logits.float(), gold, ignore_index=-100, reduction="sum")
        out.append((float(nll), n))
    return out
