"""Built-in metrics, each in [0, 1]. Plugins add more through the `register_metrics` hook.

Most metrics score one prediction against one reference, and a data set's score is their mean; those scores
are kept per example, which is what the confidence intervals and win rates resample. A few are only defined
over a whole set (macro F1 over labels); they are recomputed on each resample instead.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from anytune.errors import UsageError
from anytune.formatting import LOSS_METRICS
from anytune.graders.runtime import normalize, rouge_l  # the graders' rules, shared with providers

Metric = Callable[[str, str], float]  # what plugins register: (prediction, reference) -> [0, 1]
CorpusMetric = Callable[[Sequence[str], Sequence[str]], float]


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


def _sacrebleu():  # type: ignore[no-untyped-def]
    try:
        import sacrebleu
    except ImportError:
        raise UsageError("BLEU and chrF need sacrebleu", hint="pip install 'anytune[eval]'") from None
    return sacrebleu


def bleu(prediction: str, reference: str) -> float:
    """Sentence BLEU (sacrebleu, exponential smoothing), / 100."""
    return float(_sacrebleu().sentence_bleu(prediction, [reference]).score) / 100


def chrf(prediction: str, reference: str) -> float:
    """Sentence chrF (sacrebleu: character 6-grams, beta 2), / 100."""
    return float(_sacrebleu().sentence_chrf(prediction, [reference]).score) / 100


def _json(text: str) -> tuple[bool, object]:
    text = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, flags=re.S)  # models like to fence JSON
    if fenced:
        text = fenced.group(1)
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


def json_valid(prediction: str, reference: str) -> float:
    """1 if the prediction parses as JSON (a ```json fence around it is allowed)."""
    return float(_json(prediction)[0])


def json_match(prediction: str, reference: str) -> float:
    """1 if the prediction parses to the same JSON value as the reference (key order and spacing aside)."""
    ok, value = _json(prediction)
    ref_ok, ref_value = _json(reference)
    return float(ok and ref_ok and value == ref_value)


def json_schema(prediction: str, reference: str) -> float:
    """1 if the prediction parses and has the reference's shape: the same keys, recursively, with values of
    the same JSON types (the reference acts as the schema; its values may differ)."""
    ok, value = _json(prediction)
    ref_ok, ref_value = _json(reference)
    return float(ok and ref_ok and _same_shape(value, ref_value))


def _same_shape(value: object, like: object) -> bool:
    if isinstance(like, dict):
        return (
            isinstance(value, dict)
            and value.keys() == like.keys()
            and all(_same_shape(value[k], like[k]) for k in like)
        )
    if isinstance(like, list):
        return isinstance(value, list) and (not like or all(_same_shape(v, like[0]) for v in value))
    if isinstance(like, bool) or like is None:
        return type(value) is type(like)
    if isinstance(like, int | float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, type(like))


def label_accuracy(prediction: str, reference: str) -> float:
    """Classification accuracy: the normalized prediction is the label."""
    return normalized_match(prediction, reference)


def macro_f1(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Macro-averaged F1 over the reference labels (normalized), for label tasks with imbalanced classes."""
    preds = [normalize(p) for p in predictions]
    refs = [normalize(r) for r in references]
    labels = sorted(set(refs))
    if not labels:
        return 0.0
    scores = []
    for label in labels:
        tp = sum(p == label and r == label for p, r in zip(preds, refs, strict=True))
        fp = sum(p == label and r != label for p, r in zip(preds, refs, strict=True))
        fn = sum(p != label and r == label for p, r in zip(preds, refs, strict=True))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores)


@dataclass(frozen=True)
class MetricDef:
    """A metric: per example (`example`, averaged), over a whole set (`corpus`), or from the model's token
    probabilities of the reference answer (`from_loss`: eval_loss, perplexity; lower is better)."""

    name: str
    example: Metric | None = None
    corpus: CorpusMetric | None = None
    from_loss: bool = False
    higher_is_better: bool = True
    # a grader: scores an answer against the whole data item (every field of the line), not a reference
    item_example: Callable[[str, dict[str, Any]], float] | None = None

    def __call__(self, predictions: Sequence[str], references: Sequence[str]) -> float:
        if self.corpus is not None:
            return self.corpus(predictions, references)
        if self.example is None:
            raise UsageError(
                f"{self.name} is scored per data item, with the item (the evaluation runner does)"
            )
        scores = [self.example(p, r) for p, r in zip(predictions, references, strict=True)]
        return sum(scores) / len(scores) if scores else 0.0


BUILTIN: dict[str, Metric] = {
    "exact_match": exact_match,
    "normalized_match": normalized_match,
    "token_f1": token_f1,
    "rouge_l": rouge_l,
    "bleu": bleu,
    "chrf": chrf,
    "json_valid": json_valid,
    "json_match": json_match,
    "json_schema": json_schema,
    "accuracy": label_accuracy,
}
CORPUS: dict[str, CorpusMetric] = {"macro_f1": macro_f1}
# Computed from the backend's `target_loss()`: mean per-token NLL of the reference answer, and exp of it.
LOSS = LOSS_METRICS
# Names no plugin may take: a plugin metric called exact_match would silently change every score.
BUILTIN_METRICS = frozenset({*BUILTIN, *CORPUS, *LOSS, "judge"})


def resolve_metrics(names: list[str], extra: dict[str, Metric] | None = None) -> dict[str, MetricDef]:
    available: dict[str, MetricDef] = {
        n: MetricDef(n, example=f) for n, f in {**BUILTIN, **(extra or {})}.items()
    }
    available.update({n: MetricDef(n, corpus=f) for n, f in CORPUS.items()})
    available.update({n: MetricDef(n, from_loss=True, higher_is_better=False) for n in LOSS})
    unknown = [n for n in names if n not in available]
    if unknown:
        raise UsageError(
            f"unknown metric(s): {', '.join(unknown)}", hint=f"available: {', '.join(sorted(available))}"
        )
    return {n: available[n] for n in names}
