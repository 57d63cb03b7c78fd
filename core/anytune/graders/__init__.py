"""Graders: one definition of how an answer is scored, for every provider's reinforcement fine-tuning, for
the local GRPO reward and for evaluation (docs/graders.md)."""

from __future__ import annotations

from anytune.graders.sandbox import GraderFailed, PythonSandbox
from anytune.graders.scoring import Grader
from anytune.graders.spec import (
    GraderSpec,
    ModelJudgeGrader,
    MultiGrader,
    PythonGrader,
    StringCheckGrader,
    TextSimilarityGrader,
    grader_leaves,
    parse_grader,
)
from anytune.graders.templates import GraderInputError, item_fields, render, sample_of

__all__ = [
    "Grader",
    "GraderFailed",
    "GraderInputError",
    "GraderSpec",
    "ModelJudgeGrader",
    "MultiGrader",
    "PythonGrader",
    "PythonSandbox",
    "StringCheckGrader",
    "TextSimilarityGrader",
    "grader_leaves",
    "item_fields",
    "parse_grader",
    "render",
    "sample_of",
]
