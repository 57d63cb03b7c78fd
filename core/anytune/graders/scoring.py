"""Scoring one answer against one data item with a grader, here: the same code for `anytune grade`, for the
evaluation metric and for the local backend's GRPO reward, so a model is scored by the definition it was
trained on."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anytune.errors import UsageError
from anytune.graders import runtime
from anytune.graders.sandbox import PythonSandbox
from anytune.graders.spec import (
    GraderSpec,
    ModelJudgeGrader,
    MultiGrader,
    PythonGrader,
    SingleGrader,
)
from anytune.graders.templates import MISSING_HINT, GraderInputError, render, sample_of

Judge = Callable[[str, str], str]  # (model, prompt) -> the judge's answer

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


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
            runtime.compile_formula(spec.formula, list(spec.graders))
            if isinstance(spec, MultiGrader)
            else None
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

    def _leaf(self, name: str, leaf: SingleGrader, sample: dict[str, Any], item: dict[str, Any]) -> float:
        if isinstance(leaf, ModelJudgeGrader):
            if self.judge is None:
                raise UsageError(
                    f"the model_judge grader needs its model ({leaf.model}) to score answers here",
                    hint="pass --judge-provider to `anytune grade` (any provider that can generate)",
                )
            low, high = leaf.range
            return judge_score(self.judge(leaf.model, render(leaf.prompt, sample, item)), low, high)

        def python(_name: str, sample: dict[str, Any], item: dict[str, Any]) -> float:
            assert isinstance(leaf, PythonGrader)
            return self._box(leaf).score(sample, item)

        try:
            return runtime.leaf_score(name, leaf.model_dump(), sample, item, python)
        except runtime.FieldMissing as exc:
            raise GraderInputError(str(exc), hint=MISSING_HINT) from None
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def parts(self, answer: str, item: dict[str, Any]) -> dict[str, float]:
        """Each part's score and the total (under "score"), for one answer."""
        sample = sample_of(answer)
        if isinstance(self.spec, MultiGrader):
            assert self._formula is not None
            parts = {name: self._leaf(name, leaf, sample, item) for name, leaf in self.spec.graders.items()}
            return {**parts, "score": min(1.0, max(0.0, self._formula(parts)))}
        return {"score": self._leaf(self.spec.name or self.spec.type, self.spec, sample, item)}

    def score(self, answer: str, item: dict[str, Any]) -> float:
        return self.parts(answer, item)["score"]
