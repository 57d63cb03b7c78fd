"""A job's grader tried on its data before anything is recorded or uploaded (the prepare stage, for every
provider): each line has the fields the grader reads, and the grader scores the first lines' own answers
without failing. A grader that crashes on the data would otherwise be found by a paid job."""

from __future__ import annotations

from typing import Any

from anytune.data.formats import DataFormat
from anytune.graders.sandbox import GraderFailed
from anytune.graders.spec import GraderSpec, grader_leaves
from anytune.graders.templates import GraderInputError, item_fields
from anytune.hookspecs import DataBundle, Problem

TRIED = 5  # lines whose own answer the grader scores before the job is accepted
MAX_PROBLEMS = 50


def grader_item(record: dict[str, Any], fmt: DataFormat) -> dict[str, Any]:
    """What `{{item.FIELD}}` reads of a data line: the line's fields, and its answer as `reference`."""
    from anytune.data.records import prompt_and_target

    _, target = prompt_and_target(record, fmt)
    return {**record, "reference": target}


def fields_read(grader: GraderSpec) -> set[str]:
    wanted: set[str] = set()
    for _, leaf in grader_leaves(grader):
        for text in (getattr(leaf, "input", ""), getattr(leaf, "reference", ""), getattr(leaf, "prompt", "")):
            wanted |= item_fields(text)
    return wanted


def grader_problems(grader: GraderSpec, bundle: DataBundle) -> list[Problem]:
    """Each line that lacks a field the grader reads, and each of the first lines the grader cannot score."""
    from anytune.data.validate import RecordValidator
    from anytune.graders.scoring import Grader

    wanted = fields_read(grader)
    runnable = not any(leaf.type == "model_judge" for _, leaf in grader_leaves(grader))
    problems: list[Problem] = []
    with Grader(grader) as scorer:
        for ref in (bundle.train, bundle.validation):
            if ref is None:
                continue
            tried = 0
            for line, record in RecordValidator(ref.path, format=ref.format, collect_stats=False):
                item = grader_item(record, ref.format)
                missing = sorted(wanted - item.keys())
                if missing:
                    problems.append(
                        Problem(
                            "error",
                            "method.grader",
                            f"no {', '.join(repr(m) for m in missing)} field, which the grader reads",
                            file=ref.path,
                            line=line,
                        )
                    )
                elif runnable and tried < TRIED:
                    tried += 1
                    try:
                        scorer.score(item["reference"], item)
                    except (GraderFailed, GraderInputError) as exc:
                        message = f"the grader fails on this line's own answer: {exc.message}"
                        problems.append(Problem("error", "method.grader", message, file=ref.path, line=line))
                if len(problems) >= MAX_PROBLEMS:
                    return problems
    return problems
