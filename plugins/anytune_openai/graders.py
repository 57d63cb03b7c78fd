"""An RFT job's grader as OpenAI's (and Azure OpenAI's) grader JSON, and an RFT data line as their line.

What each kind becomes:
- string checks OpenAI has (equals, not_equals, contains, icontains: `eq`, `ne`, `like`, `ilike`) stay string
  checks; the others (iequals, not_contains, regex) and every text similarity become `python` graders whose
  source is anytune's own scoring rules (`grader_module`): OpenAI's fuzzy_match and ROUGE are its own
  implementations, and a model must be rewarded by the numbers `anytune eval` will score it with;
- `model_judge` becomes `score_model` (the prompt as the user's message, the range as given; a range other
  than [0, 1] is mapped to [0, 1] by the multi grader around it);
- `python` stays `python` (an entry point other than `grade` gets a `grade` that calls it);
- `multi` becomes `multi` with its graders by name and the formula as `calculate_output`.

OpenAI and Azure take one grader: a list of graders is refused with the way out (a `multi` grader).
"""

from __future__ import annotations

import ast
from typing import Any

from anytune.plugin import (
    DataFormat,
    GraderSpec,
    ModelJudgeGrader,
    MultiGrader,
    PythonGrader,
    StringCheckGrader,
    grader_module,
    rft_example,
)

NATIVE_CHECKS = {"equals": "eq", "not_equals": "ne", "contains": "like", "icontains": "ilike"}
_RESERVED_ITEM_KEYS = ("messages",)


def _portable(name: str, leaf: Any) -> dict[str, Any]:
    source = grader_module(leaf) + (
        "\n\ndef grade(sample, item):\n    return score_answer(sample.get('output_text') or '', item)['score']\n"
    )
    return {"type": "python", "name": name, "source": source}


def _leaf(name: str, leaf: Any) -> dict[str, Any]:
    if isinstance(leaf, StringCheckGrader) and leaf.operation in NATIVE_CHECKS:
        return {
            "type": "string_check",
            "name": name,
            "input": leaf.input,
            "reference": leaf.reference,
            "operation": NATIVE_CHECKS[leaf.operation],
        }
    if isinstance(leaf, ModelJudgeGrader):
        return {
            "type": "score_model",
            "name": name,
            "model": leaf.model,
            "input": [{"role": "user", "content": leaf.prompt}],
            "range": list(leaf.range),
        }
    if isinstance(leaf, PythonGrader):
        assert leaf.source is not None  # the remote client and prepare inline a file's source
        source = leaf.source
        if leaf.entrypoint != "grade":
            source += f"\n\ndef grade(sample, item):\n    return {leaf.entrypoint}(sample, item)\n"
        return {"type": "python", "name": name, "source": source}
    return _portable(name, leaf)


def _scaled(formula: str, ranges: dict[str, tuple[float, float]]) -> str:
    """The formula with each judge's score (in its own range) mapped to [0, 1]."""
    tree = ast.parse(formula, mode="eval")

    class Scale(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            if node.id not in ranges:
                return node
            low, high = ranges[node.id]
            return ast.parse(f"(({node.id} - {low:g}) / {high - low:g})", mode="eval").body

    return ast.unparse(Scale().visit(tree))


def compile_grader(grader: GraderSpec) -> dict[str, Any]:
    """The grader JSON of `method.reinforcement.grader`."""
    if isinstance(grader, MultiGrader):
        ranges = {
            k: leaf.range
            for k, leaf in grader.graders.items()
            if isinstance(leaf, ModelJudgeGrader) and tuple(leaf.range) != (0.0, 1.0)
        }
        return {
            "type": "multi",
            "name": grader.name or "anytune",
            "graders": {k: _leaf(k, leaf) for k, leaf in grader.graders.items()},
            "calculate_output": _scaled(grader.formula, ranges),
        }
    name = grader.name or grader.type
    if isinstance(grader, ModelJudgeGrader) and tuple(grader.range) != (0.0, 1.0):
        key = "judge"
        return compile_grader(MultiGrader(name=name, graders={key: grader}, formula=key))
    return _leaf(name, grader)


def rft_line(record: dict[str, Any], fmt: DataFormat) -> dict[str, Any]:
    """A line of an OpenAI/Azure RFT file: the prompt as `messages` (ending with the user's turn), and the
    fields the grader reads (`{{item.FIELD}}`) at the top level beside it, `reference` the line's answer."""
    prompt, item = rft_example(record, fmt)
    return {"messages": prompt, **{k: v for k, v in item.items() if k not in _RESERVED_ITEM_KEYS}}
