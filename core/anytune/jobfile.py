"""Job files: YAML in, JobSpec out, with `--set key=value` overrides and errors that name the line.

Relative data paths are resolved against the job file's folder, so a job file and its data can move
together and run from anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from anytune.errors import SpecError
from anytune.spec import JobSpec

_DATA_PATH_FIELDS = ("train", "validation", "test")


def load_job_file(path: str | Path, overrides: Iterable[str] = (), provider: str | None = None) -> JobSpec:
    """Read a YAML job file, apply `key.path=value` overrides and an optional provider, and validate."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such job file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read the job file: {exc}") from None
    raw, lines = parse_yaml(text, str(path))
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a job file must be a YAML mapping (key: value), not {type(raw).__name__}")
    for override in overrides:
        apply_override(raw, override)
    if provider:
        raw["provider"] = provider
    _resolve_data_paths(raw, path.parent)
    return spec_from_dict(raw, source=str(path), lines=lines)


def spec_from_dict(
    raw: Mapping[str, Any], *, source: str = "<spec>", lines: dict[tuple[str, ...], int] | None = None
) -> JobSpec:
    """Validate a mapping into a JobSpec, turning pydantic's errors into one SpecError with every problem."""
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as exc:
        details = [describe_error(err, source, lines or {}) for err in exc.errors()]
        raise SpecError(
            f"{source}: the job spec is invalid ({len(details)} problem{'s' if len(details) != 1 else ''})",
            details=details,
            hint="fix the fields named above; `anytune run --help` shows the --set syntax",
        ) from None


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply one `a.b.c=value` override in place; the value is parsed as YAML (numbers, lists, true...)."""
    key, sep, value_text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError(f"--set {override!r}: expected KEY=VALUE, e.g. hyperparameters.learning_rate=1e-4")
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else ""
    except yaml.YAMLError:
        value = value_text
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif isinstance(child, str) and part in ("method", "adapter"):
            child = node[part] = {"type": child}
        elif not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise SpecError(f"--set {override!r}: {where} is {child!r}, not a mapping with keys")
        node = child
    node[parts[-1]] = value


def parse_yaml(text: str, source: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"{where}: not valid YAML: {problem}") from None
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _index_lines(node, (), lines)
    return raw, lines


def _index_lines(node: yaml.Node, prefix: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    """Map each key path in the YAML tree to its 1-based line, for error messages."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*prefix, str(key_node.value))
            out[path] = key_node.start_mark.line + 1
            _index_lines(value_node, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = (*prefix, str(i))
            out[path] = item.start_mark.line + 1
            _index_lines(item, path, out)


# Discriminated unions add the tag to the error location (adapter.lora.r); users wrote adapter.r.
_UNION_FIELDS = {"method", "adapter"}


def describe_error(err: Mapping[str, Any], source: str, lines: dict[tuple[str, ...], int]) -> str:
    loc = [str(p) for p in err.get("loc", ())]
    if len(loc) >= 2 and loc[0] in _UNION_FIELDS:
        loc = [loc[0], *loc[2:]]
    field = ".".join(loc) or "(top level)"
    line = None
    for end in range(len(loc), 0, -1):
        line = lines.get(tuple(loc[:end]))
        if line is not None:
            break
    where = f"{source}:{line}" if line else source
    message = err.get("msg", "invalid")
    if err.get("type") == "extra_forbidden":
        message = "unknown field (check the spelling; `provider_options.<provider>` holds provider extras)"
    elif err.get("type") == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag")
        expected = err.get("ctx", {}).get("expected_tags")
        message = f"unknown {loc[0]} {tag!r}; use one of {expected}"
    return f"{where}: {field}: {message}"


def _resolve_data_paths(raw: dict[str, Any], base: Path) -> None:
    for section, fields in (("data", _DATA_PATH_FIELDS), ("evaluation", ("data",))):
        block = raw.get(section)
        if not isinstance(block, dict):
            continue
        for field in fields:
            value = block.get(field)
            if isinstance(value, str) and value and "://" not in value:
                p = Path(value).expanduser()
                if not p.is_absolute():
                    block[field] = str((base / p).resolve())
