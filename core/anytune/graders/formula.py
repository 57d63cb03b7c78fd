"""A multi grader's formula: arithmetic over its graders' scores, parsed (never `eval`ed as Python) and
checked once, when the grader is read, to stay within [0, 1]."""

from __future__ import annotations

import ast
import itertools
import math
import operator
from collections.abc import Callable, Mapping

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_FUNCTIONS: dict[str, Callable[..., float]] = {"min": min, "max": max, "abs": abs}


def _compile(node: ast.AST, names: set[str]) -> Callable[[Mapping[str, float]], float]:
    if isinstance(node, ast.Expression):
        return _compile(node.body, names)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        value = float(node.value)
        return lambda _s: value
    if isinstance(node, ast.Name):
        if node.id not in names:
            raise ValueError(
                f"the formula reads {node.id!r}, which is none of its graders ({', '.join(sorted(names))})"
            )
        key = node.id
        return lambda s: s[key]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        fn, left, right = _BINARY[type(node.op)], _compile(node.left, names), _compile(node.right, names)
        return lambda s: fn(left(s), right(s))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner, sign = _compile(node.operand, names), -1.0 if isinstance(node.op, ast.USub) else 1.0
        return lambda s: sign * inner(s)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and node.args
        and not node.keywords
    ):
        fn, args = _FUNCTIONS[node.func.id], [_compile(a, names) for a in node.args]
        return lambda s: float(fn(*(a(s) for a in args)))
    raise ValueError(
        f"the formula may hold numbers, grader names, + - * /, min, max and abs; not {ast.unparse(node)[:60]!r}"
    )


def compile_formula(formula: str, names: list[str]) -> Callable[[Mapping[str, float]], float]:
    try:
        tree = ast.parse(formula.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"the formula does not parse: {exc.msg}") from None
    return _compile(tree, set(names))


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
