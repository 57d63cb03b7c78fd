"""Reward functions for GRPO: built-in ones, any importable callable (`package.module:function` or
`package.module.function`), or one registered under the `anytune.rewards` entry-point group.

A reward function is called as TRL calls it: `fn(prompts, completions, **columns) -> list[float]`, where
`completions` are chats (`[{"role": "assistant", "content": ...}]`) and `columns` holds the dataset's other
columns; anytune's GRPO rows carry `reference` (the answer in the data).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib import metadata
from typing import Any

from anytune.plugin import UsageError

Reward = Callable[..., list[float]]


def _text(completion: Any) -> str:
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)


def exact_match(prompts: list[Any], completions: list[Any], reference: list[str], **_: Any) -> list[float]:
    """1 when the answer is the reference (spaces around it aside)."""
    return [float(_text(c).strip() == r.strip()) for c, r in zip(completions, reference, strict=True)]


def token_f1(prompts: list[Any], completions: list[Any], reference: list[str], **_: Any) -> list[float]:
    """Token overlap with the reference: a dense signal where exact matches are rare."""
    from anytune.plugin import token_f1 as f1

    return [f1(_text(c), r) for c, r in zip(completions, reference, strict=True)]


def brevity(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
    """Shorter answers score higher (1 for an empty answer, towards 0 past 200 characters)."""
    return [max(0.0, 1.0 - len(_text(c)) / 200) for c in completions]


BUILTIN: dict[str, Reward] = {"exact_match": exact_match, "token_f1": token_f1, "brevity": brevity}


def resolve_reward(name: str) -> Reward:
    if name in BUILTIN:
        return BUILTIN[name]
    for ep in metadata.entry_points(group="anytune.rewards"):
        if ep.name == name:
            return ep.load()  # type: ignore[no-any-return]
    module, sep, attr = name.partition(":")
    if not sep:
        module, _, attr = name.rpartition(".")
    if not module or not attr:
        raise UsageError(
            f"reward function {name!r} not found",
            hint=f"use a built-in ({', '.join(BUILTIN)}), package.module:function, or an anytune.rewards entry point",
        )
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"reward function {name!r} cannot be imported: {exc}") from None
    if not callable(fn):
        raise UsageError(f"reward function {name!r} is not callable")
    return fn  # type: ignore[no-any-return]


def resolve_rewards(names: list[str]) -> list[Reward]:
    if not names:
        raise UsageError(
            "grpo needs at least one reward function",
            hint="method: {type: grpo, reward_functions: [token_f1]} (built-ins: " + ", ".join(BUILTIN) + ")",
        )
    return [resolve_reward(n) for n in names]
