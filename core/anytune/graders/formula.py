"""A multi grader's formula: arithmetic over its graders' scores, parsed (never `eval`ed as Python) and
checked once, when the grader is read, to stay within [0, 1]. The formula itself is compiled by the
portable runtime (`anytune.graders.runtime`), which providers run too."""

from __future__ import annotations

import itertools
import math

from anytune.graders.runtime import compile_formula


def check_formula(formula: str, names: list[str]) -> None:
    """A ValueError when the formula is not arithmetic over `names`, or when it leaves [0, 1] with its graders
    at 0 or 1 (the extremes of the sums, products, min and max it may hold)."""
    fn = compile_formula(formula, names)
    for corner in itertools.product((0.0, 1.0), repeat=len(names)):
        scores = dict(zip(names, corner, strict=True))
        try:
            value = fn(scores)
        except ZeroDivisionError:
            raise ValueError(f"the formula divides by zero when its graders score {scores}") from None
        if not (math.isfinite(value) and -1e-9 <= value <= 1 + 1e-9):
            raise ValueError(
                f"the formula gives {value:g} when its graders score {scores}: a grader's score is in [0, 1], "
                "so weight them to sum to 1 (e.g. 0.5 * a + 0.5 * b)"
            )


def linear_weights(formula: str, names: list[str]) -> dict[str, float] | None:
    """The weight of each grader when the formula is a weighted sum of them (`0.7 * a + 0.3 * b`), else None:
    a trainer that sums weighted rewards itself (TRL's `reward_weights`) then logs each part apart."""
    import random

    fn = compile_formula(formula, names)
    zero = {n: 0.0 for n in names}
    if abs(fn(zero)) > 1e-9:
        return None
    weights = {n: fn({**zero, n: 1.0}) for n in names}
    rng = random.Random(0)
    for _ in range(8):
        point = {n: rng.random() for n in names}
        if abs(fn(point) - sum(weights[n] * point[n] for n in names)) > 1e-9:
            return None
    return weights
