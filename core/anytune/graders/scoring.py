"""Scoring one answer against one data item with a grader, here: the same code for `anytune grade`, for the
evaluation metric and for the local backend's GRPO reward, so a model is scored by the definition it was
trained on."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anytune.errors import UsageError
from anytune.graders.formula import compile_formula
from anytune.graders.sandbox import PythonSandbox
from anytune.graders.spec import (
    GraderSpec,
    ModelJudgeGrader,
    MultiGrader,
    PythonGrader,
    SingleGrader,
    StringCheckGrader,
    TextSimilarityGrader,
)
from anytune.graders.templates import render, sample_of

Judge = Callable[[str, str], str]  # (model, prompt) -> the judge's answer

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def string_check(operation: str, text: str, reference: str) -> float:
    if operation == "equals":
        return float(text == reference)
    if operation == "not_equals":
        return float(text != reference)
    if operation == "contains":
        return float(reference in text)
    if operation == "not_contains":
        return float(reference not in text)
    if operation == "iequals":
        return float(text.casefold() == reference.casefold())
    if operation == "icontains":
        return float(reference.casefold() in text.casefold())
    if operation == "regex":
        try:
            return float(re.search(reference, text) is not None)
        except re.error as exc:
            raise UsageError(f"the grader's regex {reference[:80]!r} does not compile: {exc}") from None
    raise UsageError(f"unknown string_check operation {operation!r}")


def _ngrams(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def rouge_n(text: str, reference: str, n: int) -> float:
    """ROUGE-N F1 over normalized tokens (the evaluation metrics' normalization)."""
    from anytune.evaluation.metrics import normalize

    pred, ref = _ngrams(normalize(text).split(), n), _ngrams(normalize(reference).split(), n)
    if not pred or not ref:
        return float(not pred and not ref)
    overlap = sum((pred & ref).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / sum(pred.values()), overlap / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def similarity(metric: str, text: str, reference: str) -> float:
    if metric == "fuzzy_match":
        from rapidfuzz import fuzz

        return float(fuzz.ratio(text, reference)) / 100
    if metric == "bleu":
        from anytune.evaluation.metrics import bleu

        return bleu(text, reference)
    if metric == "rouge_l":
        from anytune.evaluation.metrics import rouge_l

        return rouge_l(text, reference)
    if metric.startswith("rouge_") and metric[6:].isdigit():
        return rouge_n(text, reference, int(metric[6:]))
    raise UsageError(f"unknown text_similarity metric {metric!r}")


def judge_score(answer: str, low: float, high: float) -> float:
    """The first number in a judge's answer, mapped from [low, high] to [0, 1] (clipped)."""
    found = _NUMBER.search(answer)
    if not found:
        raise UsageError(f"the judge answered no number: {answer[:200]!r}")
    return min(1.0, max(0.0, (float(found.group()) - low) / (high - low)))


class Grader:
    """A grader ready to score: `grader.score(answer, item)`, or `grader.parts(answer, item)` for each named
    part and the total. Close it (or use `with`) to stop a Python grader's process."""

    def __init__(self, spec: GraderSpec, *, base_dir: str | Path | None = None, judge: Judge | None = None):
        self.spec, self.judge = spec, judge
        self.base_dir = Path(base_dir) if base_dir else Path.cwd()
        self._boxes: dict[int, PythonSandbox] = {}
        self._formula = (
            compile_formula(spec.formula, list(spec.graders)) if isinstance(spec, MultiGrader) else None
        )

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for box in self._boxes.values():
            box.close()
        self._boxes.clear()

    def _box(self, leaf: PythonGrader) -> PythonSandbox:
        if id(leaf) not in self._boxes:
            path = None if leaf.path is None else (self.base_dir / leaf.path)
            self._boxes[id(leaf)] = PythonSandbox(
                source=leaf.source,
                path=path,
                entrypoint=leaf.entrypoint,
                timeout_s=leaf.timeout_s,
                memory_mb=leaf.memory_mb,
            )
        return self._boxes[id(leaf)]

    def _leaf(self, leaf: SingleGrader, sample: dict[str, Any], item: dict[str, Any]) -> float:
        if isinstance(leaf, StringCheckGrader):
            return string_check(
                leaf.operation, render(leaf.input, sample, item), render(leaf.reference, sample, item)
            )
        if isinstance(leaf, TextSimilarityGrader):
            return similarity(
                leaf.metric, render(leaf.input, sample, item), render(leaf.reference, sample, item)
            )
        if isinstance(leaf, PythonGrader):
            return self._box(leaf).score(sample, item)
        if isinstance(leaf, ModelJudgeGrader):
            if self.judge is None:
                raise UsageError(
                    f"the model_judge grader needs its model ({leaf.model}) to score answers here",
                    hint="pass --judge-provider to `anytune grade` (any provider that can generate)",
                )
            low, high = leaf.range
            return judge_score(self.judge(leaf.model, render(leaf.prompt, sample, item)), low, high)
        raise UsageError(f"unknown grader {leaf!r}")

    def parts(self, answer: str, item: dict[str, Any]) -> dict[str, float]:
        """Each part's score and the total (under "score"), for one answer."""
        sample = sample_of(answer)
        if isinstance(self.spec, MultiGrader):
            assert self._formula is not None
            parts = {name: self._leaf(leaf, sample, item) for name, leaf in self.spec.graders.items()}
            return {**parts, "score": min(1.0, max(0.0, self._formula(parts)))}
        return {"score": self._leaf(self.spec, sample, item)}

    def score(self, answer: str, item: dict[str, Any]) -> float:
        return self.parts(answer, item)["score"]
