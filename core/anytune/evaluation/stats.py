"""How sure a score is: bootstrap confidence intervals, paired A/B differences, win rates, drift tests.

Held-out sets for fine-tunes are small (50 to 500 examples), so a 4-point gain can be noise. Every score is
reported with a 95% percentile-bootstrap interval (Efron & Tibshirani 1993) from 1,000 resamples of the
examples. Two models scored on the same examples are compared *paired*: the same resampled examples for both,
so the interval is on the difference (Koehn 2004's paired bootstrap). Drift compares two different sets with a
two-sided permutation test on the difference of means. Seeds are fixed: the same scores give the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, computed_field

from anytune.evaluation.metrics import MetricDef

RESAMPLES = 1000
CONFIDENCE = 0.95
PERMUTATIONS = 10_000
SEED = 20261128


def _rng(seed: int = SEED):  # type: ignore[no-untyped-def]
    import numpy as np

    return np.random.default_rng(seed)


def _indices(n: int, resamples: int, seed: int):  # type: ignore[no-untyped-def]
    return _rng(seed).integers(0, n, size=(resamples, n))


def _interval(values, confidence: float) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    import numpy as np

    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def example_scores(
    metric: MetricDef, predictions: Sequence[str], references: Sequence[str]
) -> list[float] | None:
    """Per-example scores of an averaged metric (None for set-level metrics such as macro F1)."""
    if metric.example is None:
        return None
    return [float(metric.example(p, r)) for p, r in zip(predictions, references, strict=True)]


def resampled(
    metric: MetricDef,
    predictions: Sequence[str],
    references: Sequence[str],
    scores: Sequence[float] | None,
    indices,  # type: ignore[no-untyped-def]
) -> list[float]:
    """The metric on each resample (rows of `indices`)."""
    import numpy as np

    if scores is not None:
        return [float(x) for x in np.asarray(scores)[indices].mean(axis=1)]
    return [metric([predictions[i] for i in row], [references[i] for i in row]) for row in indices]


def bootstrap_ci(
    metric: MetricDef,
    predictions: Sequence[str],
    references: Sequence[str],
    scores: Sequence[float] | None = None,
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> tuple[float, float]:
    if not references:
        return (0.0, 0.0)
    rows = _indices(len(references), resamples, seed)
    return _interval(resampled(metric, predictions, references, scores, rows), confidence)


class Comparison(BaseModel):
    """`b` against `a` on the same examples: the difference of b's score minus a's, its interval, and how often
    b's answer scored higher, the same, or lower (per-example metrics only; for losses, lower wins)."""

    metric: str
    a: str
    b: str
    delta: float
    low: float
    high: float
    wins: int | None = None
    ties: int | None = None
    losses: int | None = None
    note: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def significant(self) -> bool:
        """The interval excludes zero."""
        return self.low > 0 or self.high < 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def win_rate(self) -> float | None:
        """Wins over decided examples (ties left out), the usual head-to-head figure."""
        if self.wins is None or self.losses is None or self.wins + self.losses == 0:
            return None
        return round(self.wins / (self.wins + self.losses), 4)


def paired(
    metric: MetricDef,
    a: tuple[str, Sequence[str], Sequence[float] | None],
    b: tuple[str, Sequence[str], Sequence[float] | None],
    references: Sequence[str],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> Comparison:
    """Paired bootstrap of B minus A: both scored on the same resampled examples each time."""
    (name_a, preds_a, scores_a), (name_b, preds_b, scores_b) = a, b
    rows = _indices(len(references), resamples, seed)
    dist_a = resampled(metric, preds_a, references, scores_a, rows)
    dist_b = resampled(metric, preds_b, references, scores_b, rows)
    if scores_a is not None and scores_b is not None:
        delta = sum(scores_b) / len(scores_b) - sum(scores_a) / len(scores_a)
    else:
        delta = metric(preds_b, references) - metric(preds_a, references)
    low, high = _interval([y - x for x, y in zip(dist_a, dist_b, strict=True)], confidence)
    wins = ties = losses = None
    if scores_a is not None and scores_b is not None:
        sign = 1 if metric.higher_is_better else -1  # a lower loss is a win
        wins = sum(sign * (y - x) > 0 for x, y in zip(scores_a, scores_b, strict=True))
        losses = sum(sign * (y - x) < 0 for x, y in zip(scores_a, scores_b, strict=True))
        ties = len(references) - wins - losses
    return Comparison(
        metric=metric.name,
        a=name_a,
        b=name_b,
        delta=round(delta, 4),
        low=round(low, 4),
        high=round(high, 4),
        wins=wins,
        ties=ties,
        losses=losses,
    )


@dataclass(frozen=True)
class DriftTest:
    """A new data set's scores against a stored baseline's, by a two-sided permutation test."""

    metric: str
    baseline_mean: float
    new_mean: float
    baseline_n: int
    new_n: int
    p_value: float
    alpha: float
    tolerance: float

    @property
    def delta(self) -> float:
        return self.new_mean - self.baseline_mean

    @property
    def drifted(self) -> bool:
        """Worse by more than the tolerance, and unlikely to be chance."""
        return self.delta < -self.tolerance and self.p_value < self.alpha

    @property
    def verdict(self) -> str:
        if self.drifted:
            return "drift: the model does worse on the new data"
        if self.delta > self.tolerance and self.p_value < self.alpha:
            return "no drift: the model does better on the new data"
        return "no drift detected"

    @property
    def statement(self) -> str:
        return (
            f"two-sided permutation test on the mean per-example {self.metric} ({PERMUTATIONS:,} permutations), "
            f"alpha {self.alpha:g}, tolerance {self.tolerance:g}: p = {self.p_value:.4f}"
        )


def permutation_test(
    baseline: Sequence[float],
    new: Sequence[float],
    *,
    metric: str,
    alpha: float = 0.05,
    tolerance: float = 0.0,
    permutations: int = PERMUTATIONS,
    seed: int = SEED,
) -> DriftTest:
    import numpy as np

    x, y = np.asarray(baseline, dtype=float), np.asarray(new, dtype=float)
    observed = abs(y.mean() - x.mean())
    pooled = np.concatenate([x, y])
    rng = _rng(seed)
    hits = 0
    for _ in range(permutations):
        rng.shuffle(pooled)
        if abs(pooled[len(x) :].mean() - pooled[: len(x)].mean()) >= observed - 1e-12:
            hits += 1
    p = (hits + 1) / (permutations + 1)
    return DriftTest(metric, float(x.mean()), float(y.mean()), len(x), len(y), p, alpha, tolerance)


def loss_metric(
    name: str, losses: Sequence[tuple[float, int]], *, resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, tuple[float, float], list[float] | None]:
    """(value, 95% interval, per-example scores) of `eval_loss` (mean per-token NLL of each reference answer,
    averaged over examples) or `perplexity` (exp of the token-weighted mean NLL: a set-level figure)."""
    import numpy as np

    nll = np.asarray([x for x, _ in losses], dtype=float)
    tokens = np.asarray([n for _, n in losses], dtype=float)
    if name == "eval_loss":
        per = [float(x / n) if n else 0.0 for x, n in zip(nll, tokens, strict=True)]
        rows = _indices(len(per), resamples, seed)
        return float(np.mean(per)), _interval(np.asarray(per)[rows].mean(axis=1), CONFIDENCE), per
    rows = _indices(len(losses), resamples, seed)
    dist = np.exp(nll[rows].sum(axis=1) / np.maximum(tokens[rows].sum(axis=1), 1))
    return float(np.exp(nll.sum() / max(tokens.sum(), 1))), _interval(dist, CONFIDENCE), None
