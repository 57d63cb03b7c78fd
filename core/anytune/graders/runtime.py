"""The scoring rules of anytune's graders in one file that needs only Python's standard library.

It is what anytune scores with here (`anytune grade`, evaluation metrics, the local GRPO reward) and, copied
as it is, the body of the code anytune generates for providers that run the grader themselves: a Fireworks
evaluator and a Bedrock Lambda (`anytune.graders.portable`). One copy of the rules, so a model is scored on
a provider exactly as it is scored here. Hence no import from anytune, and no third-party import except
where noted (rapidfuzz speeds fuzzy_match up where it is installed; BLEU needs sacrebleu).
"""

from __future__ import annotations

import ast
import json
import operator
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any


class FieldMissing(ValueError):
    """A template reads a field the item (or the answer) does not have."""


# ------------------------------------------------------------------------------------------ templates

PLACE = re.compile(r"\{\{(.*?)\}\}", re.S)
REF = re.compile(
    r"^\s*(sample\.output_text|sample\.output_json(?:\.[A-Za-z0-9_\-]+)*|item(?:\.[A-Za-z0-9_\-]+)+)\s*$"
)


def _walk(value: Any, path: list[str], where: str) -> Any:
    for key in path:
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            have = ", ".join(sorted(value)[:20]) if isinstance(value, dict) else type(value).__name__
            raise FieldMissing(
                f"the grader reads {where} but there is no {key!r} there (it has: {have or 'nothing'})"
            )
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def render(template: str, sample: dict[str, Any], item: dict[str, Any]) -> str:
    """The template with each placeholder replaced by the answer's or the item's value (JSON for
    non-strings)."""

    def one(found: re.Match[str]) -> str:
        ref = found.group(1).strip()
        head, *path = ref.split(".")
        if head == "item":
            return _text(_walk(item, path, "{{" + ref + "}}"))
        if path[0] == "output_text":
            return str(sample.get("output_text", ""))
        output_json = sample.get("output_json")
        if output_json is None:
            raise FieldMissing(f"the grader reads {{{{{ref}}}}} but the answer is not JSON")
        return _text(_walk(output_json, path[1:], "{{" + ref + "}}"))

    return PLACE.sub(one, template)


def sample_of(answer: str) -> dict[str, Any]:
    """What graders see of one answer: its text, and its JSON value when it parses as JSON."""
    sample: dict[str, Any] = {"output_text": answer}
    try:
        sample["output_json"] = json.loads(answer)
    except ValueError:
        pass
    return sample


# ------------------------------------------------------------------------------------ string checks


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
            raise ValueError(f"the grader's regex {reference[:80]!r} does not compile: {exc}") from None
    raise ValueError(f"unknown string_check operation {operation!r}")


# -------------------------------------------------------------------------------------- similarity

_PUNCT = str.maketrans("", "", string.punctuation)
_WS = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Lower case, no punctuation, single spaces: SQuAD-style normalization."""
    return _WS.sub(" ", text.casefold().translate(_PUNCT)).strip()


def _lcs(a: list[Any] | str, b: list[Any] | str) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def fuzzy_match(text: str, reference: str) -> float:
    """Normalized Indel similarity, 2 * LCS / (len + len): rapidfuzz's `fuzz.ratio` / 100 (used where it is
    installed: the same number, faster)."""
    try:
        from rapidfuzz import fuzz
    except ImportError:
        if not text and not reference:
            return 1.0
        return 2 * _lcs(text, reference) / (len(text) + len(reference))
    return float(fuzz.ratio(text, reference)) / 100


def _ngrams(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _f1(overlap: float, predicted: int, wanted: int) -> float:
    if overlap == 0:
        return 0.0
    precision, recall = overlap / predicted, overlap / wanted
    return 2 * precision * recall / (precision + recall)


def rouge_n(text: str, reference: str, n: int) -> float:
    """ROUGE-N F1 over normalized tokens."""
    pred, ref = _ngrams(normalize(text).split(), n), _ngrams(normalize(reference).split(), n)
    if not pred or not ref:
        return float(not pred and not ref)
    return _f1(sum((pred & ref).values()), sum(pred.values()), sum(ref.values()))


def rouge_l(text: str, reference: str) -> float:
    """ROUGE-L F-measure: the longest common subsequence of normalized tokens (Lin 2004, beta = 1)."""
    pred, ref = normalize(text).split(), normalize(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    return _f1(_lcs(pred, ref), len(pred), len(ref))


def bleu(text: str, reference: str) -> float:
    """Sentence BLEU (sacrebleu, exponential smoothing), / 100."""
    try:
        import sacrebleu
    except ImportError:
        raise ValueError("the bleu metric needs sacrebleu (pip install sacrebleu)") from None
    return float(sacrebleu.sentence_bleu(text, [reference]).score) / 100


def similarity(metric: str, text: str, reference: str) -> float:
    if metric == "fuzzy_match":
        return fuzzy_match(text, reference)
    if metric == "bleu":
        return bleu(text, reference)
    if metric == "rouge_l":
        return rouge_l(text, reference)
    if metric.startswith("rouge_") and metric[6:].isdigit():
        return rouge_n(text, reference, int(metric[6:]))
    raise ValueError(f"unknown text_similarity metric {metric!r}")


# ----------------------------------------------------------------------------------------- formulas

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_FUNCTIONS: dict[str, Callable[..., float]] = {"min": min, "max": max, "abs": abs}
Formula = Callable[[Mapping[str, float]], float]


def _compile(node: ast.AST, names: set[str]) -> Formula:
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


def compile_formula(formula: str, names: list[str]) -> Formula:
    """A multi grader's formula as a function of its graders' scores: parsed, never `eval`ed."""
    try:
        tree = ast.parse(formula.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"the formula does not parse: {exc.msg}") from None
    return _compile(tree, set(names))


# ------------------------------------------------------------------------------ a grader, as data

PythonRunner = Callable[[str, dict[str, Any], dict[str, Any]], float]  # (grader name, sample, item) -> score


def leaf_score(
    name: str, leaf: Mapping[str, Any], sample: dict[str, Any], item: dict[str, Any], python: PythonRunner
) -> float:
    """One single grader (as its JSON mapping) on one answer. Python graders go through `python`: a sandbox
    here, the provider's own runtime there. Model judges are not run from here."""
    kind = leaf["type"]
    if kind == "string_check":
        return string_check(
            leaf["operation"], render(leaf["input"], sample, item), render(leaf["reference"], sample, item)
        )
    if kind == "text_similarity":
        return similarity(
            leaf["metric"], render(leaf["input"], sample, item), render(leaf["reference"], sample, item)
        )
    if kind == "python":
        score = python(name, sample, item)
        if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
            raise ValueError(f"the python grader {name!r} returned {score!r}, not a number in [0, 1]")
        return float(score)
    raise ValueError(f"the {kind} grader {name!r} cannot run here")


def grade_parts(
    grader: Mapping[str, Any], answer: str, item: dict[str, Any], python: PythonRunner
) -> dict[str, float]:
    """Each part's score and the total ("score", clipped to [0, 1]) of a grader given as its JSON mapping."""
    sample = sample_of(answer)
    if grader["type"] == "multi":
        parts = {n: leaf_score(n, g, sample, item, python) for n, g in grader["graders"].items()}
        total = compile_formula(grader["formula"], list(grader["graders"]))(parts)
        return {**parts, "score": min(1.0, max(0.0, total))}
    name = grader.get("name") or grader["type"]
    return {"score": leaf_score(name, grader, sample, item, python)}
