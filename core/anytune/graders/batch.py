"""Scoring a file of answers against a file of data items (`anytune grade`): each line's score, each part's,
and the mean with its 95% interval."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from anytune.errors import DataError, UsageError
from anytune.graders.sandbox import GraderFailed
from anytune.graders.scoring import Grader


class GradedLine(BaseModel):
    line: int
    score: float
    parts: dict[str, float] = Field(default_factory=dict)
    answer: str


class GradeResult(BaseModel):
    n: int
    mean: float
    ci: tuple[float, float] = Field(description="95% bootstrap interval of the mean")
    parts: dict[str, float] = Field(default_factory=dict, description="each part's mean (multi graders)")
    lines: list[GradedLine]


def _records(path: Path, what: str) -> Iterator[tuple[int, Any]]:
    from anytune.data.readers import read_records

    for record in read_records(path):
        if record.error:
            raise DataError(f"{path}:{record.line}: {what}: {record.error}")
        yield record.line, record.value


def own_answer(item: dict[str, Any]) -> str | None:
    """The answer a data line carries (its last assistant message): what a perfect model would say."""
    from anytune.data.records import content_text

    messages = item.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    if isinstance(last, dict) and last.get("role") == "assistant":
        return content_text(last.get("content"))
    return None


def _answer_text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in ("output_text", "answer", "completion"):
            if isinstance(value.get(key), str):
                return str(value[key])
    raise DataError(f"{where}: an answer is a JSON string or an object with output_text (or answer)")


def grade_file(
    grader: Grader,
    data: str | Path,
    samples: str | Path | None = None,
    *,
    limit: int | None = None,
    on_progress: Callable[[int, float], None] = lambda _n, _mean: None,
) -> GradeResult:
    """Every line of `data` scored: with the answer on the same line of `samples`, or with its own answer."""
    from anytune.evaluation.metrics import MetricDef
    from anytune.evaluation.stats import bootstrap_ci

    data, answers = Path(data), None if samples is None else _records(Path(samples), "answer")
    lines: list[GradedLine] = []
    last = time.monotonic()
    for number, item in _records(data, "data item"):
        if limit is not None and len(lines) >= limit:
            break
        if not isinstance(item, dict):
            raise DataError(f"{data}:{number}: a data item is a JSON object, not {type(item).__name__}")
        if answers is None:
            answer = own_answer(item)
            if answer is None:
                raise UsageError(
                    f"{data}:{number}: no answer to grade (the line ends with no assistant message)",
                    hint="pass --samples ANSWERS.jsonl: one answer per line, in the data's order",
                )
        else:
            sample_line = next(answers, None)
            if sample_line is None:
                raise DataError(f"{samples}: has fewer answers than {data} has items ({len(lines)})")
            answer = _answer_text(sample_line[1], f"{samples}:{sample_line[0]}")
        try:
            parts = grader.parts(answer, item)
        except (GraderFailed, UsageError) as exc:
            raise type(exc)(f"{data}:{number}: {exc.message}", hint=exc.hint) from None
        lines.append(GradedLine(line=number, score=parts.pop("score"), parts=parts, answer=answer))
        if time.monotonic() - last > 5:
            last = time.monotonic()
            on_progress(len(lines), sum(g.score for g in lines) / len(lines))
    if not lines:
        raise DataError(f"{data}: no data items to grade")
    scores = [g.score for g in lines]
    mean = MetricDef("grader", example=lambda _p, _r: 0.0)
    low, high = bootstrap_ci(mean, [""] * len(scores), [""] * len(scores), scores)
    names = list(lines[0].parts)
    return GradeResult(
        n=len(lines),
        mean=round(sum(scores) / len(scores), 4),
        ci=(round(low, 4), round(high, 4)),
        parts={k: round(sum(g.parts[k] for g in lines) / len(lines), 4) for k in names},
        lines=lines,
    )
