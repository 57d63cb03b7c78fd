"""Greedy (or sampled) chat completions from a local model, batched, for evaluation."""

from __future__ import annotations

from typing import Any

from anytune.hookspecs import GenerationParams


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
