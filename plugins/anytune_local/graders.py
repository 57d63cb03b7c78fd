"""An RFT job's grader as TRL's GRPO reward functions: the grader's own scoring code (anytune.graders), so
the local run is rewarded exactly as `anytune grade` and the evaluation score.

A `multi` grader whose formula is a weighted sum becomes one reward function per part with TRL's
`reward_weights` (each part's mean is then logged apart, `rewards/<name>/mean`); any other formula, one
function for the whole grader. An answer the grader fails on (a Python grader raising on odd output) scores
0 and is counted: the policy's early answers are often garbage, and a paid-for run should not end on one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anytune.plugin import (
    Grader,
    GraderFailed,
    MultiGrader,
    UsageError,
    as_one,
    grader_leaves,
    linear_weights,
)

ITEM_COLUMN = "anytune_item"  # the data line (and its answer, as `reference`), as JSON: what graders read


def _text(completion: Any) -> str:
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)


class _Reward:
    """One TRL reward function: `fn(prompts, completions, anytune_item, **_) -> list[float]`."""

    def __init__(self, name: str, grader: Grader) -> None:
        self.__name__ = name  # TRL logs each reward under its function's name
        self.grader, self.failures, self.last_failure = grader, 0, ""

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        items = [json.loads(raw) for raw in columns[ITEM_COLUMN]]
        scores = []
        for completion, item in zip(completions, items, strict=True):
            try:
                scores.append(self.grader.score(_text(completion), item))
            except GraderFailed as exc:
                self.failures += 1
                self.last_failure = exc.message
                scores.append(0.0)
        return scores


def reward_functions(
    spec: Any, base_dir: str | Path | None = None
) -> tuple[list[Callable[..., list[float]]], list[float] | None]:
    """The reward functions for the grader of an RFT method, and their weights (None: TRL's default of 1)."""
    grader = as_one(spec.grader)
    if isinstance(grader, MultiGrader):
        weights = linear_weights(grader.formula, list(grader.graders))
        if weights is not None:
            funcs = [_Reward(name, Grader(leaf, base_dir=base_dir)) for name, leaf in grader.graders.items()]
            return funcs, [weights[name] for name in grader.graders]
    return [_Reward(grader.name or grader.type, Grader(grader, base_dir=base_dir))], None


def refuse_unrunnable(spec: Any) -> str | None:
    """Why the local backend cannot run this grader, or None."""
    for name, leaf in grader_leaves(spec.grader):
        if leaf.type == "model_judge":
            return (
                f"the local backend cannot run the model_judge grader {name!r}: it has no judge model to call "
                "while it trains (use a string_check, text_similarity or python grader, or a provider with judges)"
            )
    return None


__all__ = ["ITEM_COLUMN", "UsageError", "refuse_unrunnable", "reward_functions"]
