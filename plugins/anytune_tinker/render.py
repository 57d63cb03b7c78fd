"""Chats as the token ids a Tinker loop trains on and samples from: rendered with the base model's own chat
template (its tokenizer's), or ChatML where the tokenizer has none, the same way for training and for
sampling, so a model is asked questions the way it was taught to answer them."""

from __future__ import annotations

from typing import Any

from anytune.plugin import Messages, content_text, counter_for_family

_CUT = "\x00ANYTUNE-ANSWER\x00"  # stands for the answer, to find where the prompt ends in any template


def render_text(tokenizer: Any, messages: Messages) -> str:
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(messages, tokenize=False))
    return counter_for_family(None)[1](messages)  # ChatML


def prompt_text(tokenizer: Any, prompt: Messages) -> str:
    """The text a model continues to answer `prompt`: the rendering up to where the answer would begin."""
    full = render_text(tokenizer, [*prompt, {"role": "assistant", "content": _CUT}])
    return full[: full.index(_CUT)]


def encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def training_example(tokenizer: Any, messages: Messages) -> tuple[list[int], list[float]]:
    """(tokens, weights) for one chat: the whole rendering, weighted 1 on the last assistant turn (and what
    closes it) and 0 on everything before, so only the answer is learned."""
    last = max(i for i, m in enumerate(messages) if m.get("role") == "assistant")
    before = encode(tokenizer, prompt_text(tokenizer, list(messages[:last])))
    tokens = encode(tokenizer, render_text(tokenizer, list(messages[: last + 1])))
    start = min(len(before), len(tokens) - 1)
    return tokens, [0.0] * start + [1.0] * (len(tokens) - start)


def stop_tokens(tokenizer: Any) -> list[int]:
    """Where an answer ends: the tokenizer's end of sequence, and ChatML's end of turn where it is one token."""
    stops = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    end = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
    return stops + ([int(end)] if end is not None and end not in stops else [])


def answer_text(tokenizer: Any, tokens: list[int]) -> str:
    return str(tokenizer.decode(tokens, skip_special_tokens=True)).strip()


__all__ = [
    "answer_text",
    "content_text",
    "encode",
    "prompt_text",
    "render_text",
    "stop_tokens",
    "training_example",
]
