"""A grader, written once: what each provider's RFT job and anytune's evaluation score answers with.

Every grader means the same thing everywhere: a score in [0, 1] for one sampled answer (`sample`) and one
data item (`item`, the data line's fields). Text fields are templates in the syntax OpenAI's graders use
(`{{sample.output_text}}`, `{{item.answer}}`), so the OpenAI and Azure compilers pass them through and the
others render them the same way (`anytune.graders.templates`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from anytune.graders.formula import check_formula
from anytune.graders.templates import check_template

StringOperation = Literal["equals", "not_equals", "contains", "not_contains", "iequals", "icontains", "regex"]
SimilarityMetric = Literal[
    "fuzzy_match", "bleu", "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l"
]


class _Grader(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, max_length=100, description="Shown in reports; a multi grader's key.")


class _Templated(_Grader):
    @field_validator("input", "reference", "prompt", check_fields=False)
    @classmethod
    def _templates(cls, value: str) -> str:
        return check_template(value)


class StringCheckGrader(_Templated):
    """1 when the check holds, else 0. The `i` operations ignore case; `regex` searches (Python syntax)."""

    type: Literal["string_check"] = "string_check"
    operation: StringOperation
    input: str = Field("{{sample.output_text}}", max_length=10_000)
    reference: str = Field(..., max_length=10_000, description='A template, e.g. "{{item.answer}}".')

    @model_validator(mode="after")
    def _regex_compiles(self) -> StringCheckGrader:
        if self.operation == "regex" and "{{" not in self.reference:
            import re

            try:
                re.compile(self.reference)
            except re.error as exc:
                raise ValueError(f"reference is not a regular expression: {exc}") from None
        return self


class TextSimilarityGrader(_Templated):
    """How close the answer is to the reference, in [0, 1]: fuzzy_match (rapidfuzz's normalized Indel
    similarity), sentence BLEU (sacrebleu), ROUGE-N F1 over normalized tokens, ROUGE-L."""

    type: Literal["text_similarity"] = "text_similarity"
    metric: SimilarityMetric = "fuzzy_match"
    input: str = Field("{{sample.output_text}}", max_length=10_000)
    reference: str = Field(..., max_length=10_000)
    pass_threshold: float = Field(
        0.5, ge=0, le=1, description="Where a provider's evaluation counts the answer as a pass."
    )


class ModelJudgeGrader(_Templated):
    """A model reads the prompt (with the answer and the item filled in) and answers a number in `range`,
    mapped to [0, 1]."""

    type: Literal["model_judge"] = "model_judge"
    model: str = Field(..., min_length=1, max_length=300)
    prompt: str = Field(..., min_length=1, max_length=50_000)
    range: tuple[float, float] = (0.0, 1.0)

    @field_validator("range")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not value[0] < value[1]:
            raise ValueError("range is [low, high] with low < high")
        return value


class PythonGrader(_Grader):
    """`grade(sample, item) -> float` in [0, 1], from `source` or from a file (`path`), run in a sandboxed
    subprocess: a time and memory limit, no network, no file outside its own folder."""

    type: Literal["python"] = "python"
    source: str | None = Field(None, max_length=200_000)
    path: str | None = Field(None, max_length=4096, description="A .py file, relative to the job file.")
    entrypoint: str = Field("grade", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout_s: float = Field(10.0, gt=0, le=600, description="Per answer.")
    memory_mb: int = Field(512, ge=64, le=16_384)

    @model_validator(mode="after")
    def _one_source(self) -> PythonGrader:
        if (self.source is None) == (self.path is None):
            raise ValueError("a python grader has either `source` or `path`, not both and not neither")
        return self


SingleGrader = Annotated[
    StringCheckGrader | TextSimilarityGrader | ModelJudgeGrader | PythonGrader, Field(discriminator="type")
]


class MultiGrader(_Grader):
    """Named graders combined by an arithmetic formula over their names (`0.7 * exact + 0.3 * close`;
    + - * /, numbers, min, max, abs). The formula must stay within [0, 1] whatever its graders score."""

    type: Literal["multi"] = "multi"
    graders: dict[str, SingleGrader] = Field(..., min_length=1, max_length=12)
    formula: str = Field(..., min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _formula_reads_its_graders(self) -> MultiGrader:
        for key in self.graders:
            if not key.isidentifier():
                raise ValueError(f"grader name {key!r} is not a name a formula can use (letters, digits, _)")
        check_formula(self.formula, list(self.graders))
        return self


GraderSpec = Annotated[
    StringCheckGrader | TextSimilarityGrader | ModelJudgeGrader | PythonGrader | MultiGrader,
    Field(discriminator="type"),
]


GraderList = Annotated[list[SingleGrader], Field(min_length=2, max_length=12)]
# An RFT job's grader: one grader, or several top-level graders whose scores are averaged (TRL takes several
# reward functions; OpenAI and Azure take one grader and refuse a list: combine them with `multi`).
RFTGrader = Annotated[
    Annotated[GraderSpec, Tag("one")] | Annotated[GraderList, Tag("list")],
    Discriminator(lambda value: "list" if isinstance(value, list) else "one"),
]


class _Holder(BaseModel):
    grader: RFTGrader


def as_one(grader: RFTGrader) -> GraderSpec:
    """The grader as one: a list of graders is the `multi` grader of their mean."""
    if not isinstance(grader, list):
        return grader
    names: list[str] = []
    for i, leaf in enumerate(grader, start=1):
        name = leaf.name if leaf.name and leaf.name.isidentifier() and leaf.name not in names else f"g{i}"
        names.append(name)
    formula = f"({' + '.join(names)}) / {len(names)}"
    return MultiGrader(graders=dict(zip(names, grader, strict=True)), formula=formula)


def parse_grader(data: object) -> GraderSpec:
    """A grader from its mapping (a job file's `grader:`, a grader file; a list of graders is their mean);
    pydantic's error when it is not one."""
    return as_one(_Holder.model_validate({"grader": data}).grader)


def grader_files(grader: RFTGrader) -> list[str]:
    """The files a grader makes whoever scores with it read (its Python graders' `path`): fenced like data
    files on a server (ANYTUNE_DATA_ROOT)."""
    return [leaf.path for _, leaf in grader_leaves(grader) if isinstance(leaf, PythonGrader) and leaf.path]


def inline_sources(grader: RFTGrader) -> RFTGrader:
    """The grader with each Python grader's file (where it is a file here) read into its `source`: what a
    client sends a server, which cannot read this machine's files. Files beside it are not sent."""

    def inline(leaf: SingleGrader) -> SingleGrader:
        if isinstance(leaf, PythonGrader) and leaf.path and Path(leaf.path).is_file():
            return leaf.model_copy(
                update={"source": Path(leaf.path).read_text(encoding="utf-8"), "path": None}
            )
        return leaf

    if isinstance(grader, list):
        return [inline(leaf) for leaf in grader]
    if isinstance(grader, MultiGrader):
        return grader.model_copy(update={"graders": {k: inline(v) for k, v in grader.graders.items()}})
    return inline(grader)


def grader_leaves(grader: RFTGrader) -> list[tuple[str, SingleGrader]]:
    """Every single grader in it, with its name (a multi grader's keys; else its `name` or its type)."""
    if isinstance(grader, list):
        grader = as_one(grader)
    if isinstance(grader, MultiGrader):
        return list(grader.graders.items())
    return [(grader.name or grader.type, grader)]


_TAGS = {"string_check", "text_similarity", "model_judge", "python", "multi", "one", "list"}


def without_tags(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """pydantic's location less the union tags it inserts (`grader.multi.graders.a.string_check.operation`
    is `grader.graders.a.operation` in the file)."""
    out: list[Any] = []
    for i, part in enumerate(loc):
        prev, prev2 = (loc[i - 1] if i > 0 else None), (loc[i - 2] if i > 1 else None)
        tag_spot = (
            prev in ("grader", "one", "list")
            or prev2 == "graders"
            or (str(prev).isdigit() and prev2 == "list")
        )
        if part in _TAGS and tag_spot:
            continue
        out.append(part)
    return tuple(out)
