"""OpenAI's grader JSON as the emulators of OpenAI and Azure OpenAI check and run it.

Checked as OpenAI's API reference describes each grader (required fields, the operation and metric enums, a
`multi` grader's graders by name and a `calculate_output` over their names, a python grader that defines
`grade`); an invalid grader is answered 400 naming the field, as the services do. Run to give an emulated
RFT job a real reward per step: string checks and similarities as documented, python graders executed (the
emulator is test machinery: it runs the code a test hands it), a score model answering mid-range.
"""

from __future__ import annotations

from typing import Any

from anytune.testing import grader_runtime as runtime

OPERATIONS = {"eq", "ne", "like", "ilike"}
METRICS = {
    "cosine", "fuzzy_match", "bleu", "gleu", "meteor",
    "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l",
}  # fmt: skip
REQUIRED = {
    "string_check": ("name", "input", "reference", "operation"),
    "text_similarity": ("name", "input", "reference", "evaluation_metric"),
    "python": ("name", "source"),
    "score_model": ("name", "model", "input"),
    "multi": ("name", "graders", "calculate_output"),
}


def grader_problem(grader: Any, where: str = "grader") -> tuple[str, str] | None:
    """(field, message) of the first thing wrong with a grader, or None."""
    if not isinstance(grader, dict) or grader.get("type") not in REQUIRED:
        return where, f"{where}.type must be one of {', '.join(sorted(REQUIRED))}"
    kind = grader["type"]
    for key in REQUIRED[kind]:
        if grader.get(key) in (None, "", {}, []):
            return f"{where}.{key}", f"Missing required parameter: '{where}.{key}'."
    if kind == "string_check" and grader["operation"] not in OPERATIONS:
        return (
            f"{where}.operation",
            f"Invalid value for operation: must be one of {', '.join(sorted(OPERATIONS))}.",
        )
    if kind == "text_similarity" and grader["evaluation_metric"] not in METRICS:
        return f"{where}.evaluation_metric", "Invalid value for evaluation_metric."
    if kind == "python":
        try:
            compile(grader["source"], "grader", "exec")
        except SyntaxError as exc:
            return f"{where}.source", f"Python grader source does not compile: {exc.msg} (line {exc.lineno})."
        if "def grade(" not in grader["source"]:
            return f"{where}.source", "Python grader source must define grade(sample, item)."
    if kind == "multi":
        graders = grader["graders"]
        if not isinstance(graders, dict):
            return f"{where}.graders", "graders must be an object mapping names to graders."
        for name, inner in graders.items():
            if isinstance(inner, dict) and inner.get("type") == "multi":
                return f"{where}.graders.{name}", "a multi grader cannot hold another multi grader."
            found = grader_problem(inner, f"{where}.graders.{name}")
            if found:
                return found
        try:
            runtime.compile_formula(str(grader["calculate_output"]), list(graders))
        except ValueError as exc:
            return f"{where}.calculate_output", f"Invalid calculate_output: {exc}"
    return None


def grade(grader: dict[str, Any], answer: str, item: dict[str, Any]) -> float:
    """The grader's score of one answer to one item."""
    sample = runtime.sample_of(answer)
    kind = grader["type"]
    if kind == "string_check":
        text = runtime.render(grader["input"], sample, item)
        reference = runtime.render(grader["reference"], sample, item)
        ours = {"eq": "equals", "ne": "not_equals", "like": "contains", "ilike": "icontains"}
        return runtime.string_check(ours[grader["operation"]], text, reference)
    if kind == "text_similarity":
        text = runtime.render(grader["input"], sample, item)
        reference = runtime.render(grader["reference"], sample, item)
        return runtime.similarity(grader["evaluation_metric"], text, reference)
    if kind == "python":
        namespace: dict[str, Any] = {"__name__": "emulated_grader"}
        exec(compile(grader["source"], "grader", "exec"), namespace)
        return float(namespace["grade"](sample, item))
    if kind == "score_model":
        low, high = (grader.get("range") or [0, 1])[:2]
        return (low + high) / 2
    scores = {name: grade(inner, answer, item) for name, inner in grader["graders"].items()}
    return runtime.compile_formula(grader["calculate_output"], list(scores))(scores)
