"""Built-in metrics. Each scores one prediction against one reference, in [0, 1]; a metric's result over a
data set is the mean. Plugins add more through the `register_metrics` hook."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable

from anytune.errors import UsageError

Metric = Callable[[str, str], float]

_PUNCT = str.maketrans("", "", string.punctuation)
_WS = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Lower case, no punctuation, single spaces: SQuAD-style normalization."""
    return _WS.sub(" ", text.casefold().translate(_PUNCT)).strip()


def exact_match(prediction: str, reference: str) -> float:
    return float(prediction.strip() == reference.strip())


def normalized_match(prediction: str, reference: str) -> float:
    return float(normalize(prediction) == normalize(reference))


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize(prediction).split(), normalize(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


BUILTIN: dict[str, Metric] = {
    "exact_match": exact_match,
    "normalized_match": normalized_match,
    "token_f1": token_f1,
}


def resolve_metrics(names: list[str], extra: dict[str, Metric] | None = None) -> dict[str, Metric]:
    available = {**BUILTIN, **(extra or {})}
    unknown = [n for n in names if n not in available]
    if unknown:
        raise UsageError(
            f"unknown metric(s): {', '.join(unknown)}", hint=f"available: {', '.join(sorted(available))}"
        )
    return {n: available[n] for n in names}
