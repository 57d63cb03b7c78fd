"""Evaluation: the same metrics, through each backend's generate(), for every provider and the base model."""

from anytune.evaluation.spec import EvalSpec

__all__ = ["EvalSpec"]
