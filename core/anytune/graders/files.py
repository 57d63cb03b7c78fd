"""Reading a grader: a grader file (`anytune grade GRADER.yaml`), or the `grader:` of a job file, with every
problem named by file, line and field, as job files are."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from anytune.errors import SpecError
from anytune.graders.spec import GraderSpec, parse_grader, without_tags


def grader_from(
    raw: Any, *, source: str, lines: Mapping[tuple[str, ...], int] | None = None, prefix: tuple[str, ...] = ()
) -> GraderSpec:
    """A grader from its mapping, or one SpecError listing each problem as `file:line: field: message`."""
    from anytune.jobfile import describe_error

    if not isinstance(raw, Mapping | list):
        raise SpecError(
            f"{source}: a grader is a mapping with a `type` (string_check, text_similarity, "
            f"model_judge, python, multi), not {type(raw).__name__}"
        )
    try:
        return parse_grader(dict(raw) if isinstance(raw, Mapping) else raw)
    except ValidationError as exc:
        details = []
        for err in exc.errors():
            loc = without_tags(tuple(err.get("loc", ())))
            loc = (*prefix, *loc[1:])
            details.append(describe_error({**err, "loc": loc}, source, dict(lines or {}), tagged=False))
        raise SpecError(
            f"{source}: the grader is invalid ({len(details)} problem{'s' if len(details) != 1 else ''})",
            details=details,
            hint="docs/graders.md lists each kind of grader and its fields",
        ) from None


def load_grader_file(path: str | Path) -> GraderSpec:
    """A grader file, or a job file whose `grader:` (or `method.grader:`) is read."""
    from anytune.jobfile import read_yaml_file

    path = Path(path)
    raw, lines = read_yaml_file(path, "grader file")
    if isinstance(raw, dict):  # a Python grader's `path` is relative to the file that names it
        from anytune.jobfile import resolve_grader_paths

        method = raw.get("method")
        if isinstance(method, dict) and "grader" in method:
            resolve_grader_paths(raw, path.parent)
        else:
            resolve_grader_paths({"method": {"grader": raw.get("grader", raw)}}, path.parent)
    if isinstance(raw, dict) and isinstance(raw.get("method"), dict) and "grader" in raw["method"]:
        return grader_from(
            raw["method"]["grader"], source=str(path), lines=lines, prefix=("method", "grader")
        )
    if isinstance(raw, dict) and "grader" in raw:
        return grader_from(raw["grader"], source=str(path), lines=lines, prefix=("grader",))
    return grader_from(raw, source=str(path), lines=lines)
