"""Job files: YAML in, JobSpec out, with `--set key=value` overrides and errors that name the line.

Relative data paths are resolved against the job file's folder, so a job file and its data can move
together and run from anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from anytune.errors import SpecError
from anytune.paths import resolved
from anytune.spec import JobSpec

_DATA_PATH_FIELDS = ("train", "validation", "test")


def load_job_file(path: str | Path, overrides: Iterable[str] = (), provider: str | None = None) -> JobSpec:
    """Read a YAML job file, apply `key.path=value` overrides and an optional provider, and validate."""
    path = Path(path)
    raw, lines = read_yaml_file(path, "job file")
    if raw is None:
        raise SpecError(
            f"{path}:1: the job file is empty", hint="a job needs at least base_model and data.train"
        )
    if not isinstance(raw, dict):
        raise SpecError(f"{path}:1: a job file must be a YAML mapping (key: value), not {type(raw).__name__}")
    for override in overrides:
        apply_override(raw, override)
    if provider:
        raw["provider"] = provider
    _resolve_data_paths(raw, path.parent)
    return spec_from_dict(raw, source=str(path), lines=lines)


def read_yaml_file(path: Path, what: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    """A YAML file (a job file, a grader file) parsed with each key's line, or a SpecError saying why not."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read the {what}: {exc}") from None
    return parse_yaml(text, str(path))


def spec_from_dict(
    raw: Mapping[str, Any], *, source: str = "<spec>", lines: dict[tuple[str, ...], int] | None = None
) -> JobSpec:
    """Validate a mapping into a JobSpec, turning pydantic's errors into one SpecError with every problem."""
    from anytune.spec_upgrades import upgrade

    try:
        return JobSpec.model_validate(upgrade(raw))
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
        value = yaml.load(value_text, Loader=Loader) if value_text.strip() else ""  # a SafeLoader
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


# Bounds on what a YAML document may unfold into: a job file or a prices file is a few hundred nodes;
# nine levels of nine aliases ("billion laughs") would be 387 million.
MAX_NODES = 10_000
MAX_DEPTH = 64
MAX_YAML_BYTES = 4 * 1024 * 1024


class Loader(yaml.SafeLoader):
    """YAML as people write it: `2e-5` is a number (PyYAML, following YAML 1.1, reads it as a string)."""


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, source: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    """Parse a YAML mapping with the line of every key, refusing documents that unfold beyond a budget
    (aliases of aliases), nest too deep, or repeat a key (both lines named): YAML keeps the last value of a
    repeated key without a word, and an alias bomb of 600 bytes expands to gigabytes."""
    if len(text) > MAX_YAML_BYTES:
        raise SpecError(f"{source}: {len(text):,} bytes is too large for a job or prices file")
    try:
        _check_depth(text, source)
        node = yaml.compose(text, Loader=Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"{where}: not valid YAML: {problem}") from None
    except RecursionError:
        raise SpecError(f"{source}: nested too deep (more than {MAX_DEPTH} levels)") from None
    lines: dict[tuple[str, ...], int] = {}
    if node is None:
        return None, lines
    _check_tree(node, source)
    _index_lines(node, (), lines)
    loader = Loader("")  # the tree is checked and composed already: construct it, without a third parse
    try:
        raw = loader.construct_document(node)
    except yaml.YAMLError as exc:  # a value no Python type fits
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise SpecError(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    except (ValueError, OverflowError) as exc:  # a date that does not exist (2026-13-45), a huge number
        line = _failing_scalar_line(node)
        where = f"{source}:{line}" if line else source
        raise SpecError(f"{where}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    return raw, lines


def _failing_scalar_line(root: yaml.Node) -> int | None:
    """The line of the first scalar no Python value can be made of (constructing values is where PyYAML
    raises plain ValueErrors, without a position)."""
    loader = Loader("")
    try:
        stack, seen = [root], set()
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, yaml.ScalarNode):
                try:
                    loader.construct_object(node)
                except (ValueError, OverflowError, yaml.YAMLError):
                    return node.start_mark.line + 1
            elif isinstance(node, yaml.MappingNode):
                stack.extend(child for pair in reversed(node.value) for child in reversed(pair))
            elif isinstance(node, yaml.SequenceNode):
                stack.extend(reversed(node.value))
        return None
    finally:
        loader.dispose()


def _check_depth(text: str, source: str) -> None:
    """Refuse deep nesting from the event stream (the parser is not recursive; the composer is, and
    would fail with a RecursionError and no line)."""
    depth = 0
    for event in yaml.parse(text, Loader=Loader):
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise SpecError(
                    f"{source}:{event.start_mark.line + 1}: nested too deep (more than {MAX_DEPTH} levels)"
                )
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            depth -= 1


def _check_tree(root: yaml.Node, source: str) -> None:
    """Count the nodes the document unfolds into (an alias counts as often as it is used) and its depth,
    without unfolding it; refuse repeated keys."""
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}

    def visit(node: yaml.Node, depth: int) -> tuple[int, int]:
        if depth > MAX_DEPTH:
            line = node.start_mark.line + 1
            raise SpecError(f"{source}:{line}: nested too deep (more than {MAX_DEPTH} levels)")
        key = id(node)
        if key in sizes:
            return sizes[key], depths[key]
        size, deepest = 1, 0
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                name, line = str(key_node.value), key_node.start_mark.line + 1
                if isinstance(key_node, yaml.ScalarNode) and name in seen and name != "<<":
                    raise SpecError(
                        f"{source}:{line}: key {name!r} repeats the one on line {seen[name]}",
                        hint="YAML would keep only the last one; remove or merge the two",
                    )
                seen[name] = line
                for child in (key_node, value_node):
                    n, d = visit(child, depth + 1)
                    size, deepest = size + n, max(deepest, d + 1)
        elif isinstance(node, yaml.SequenceNode):
            for child in node.value:
                n, d = visit(child, depth + 1)
                size, deepest = size + n, max(deepest, d + 1)
        if size > MAX_NODES:
            raise SpecError(
                f"{source}:{node.start_mark.line + 1}: unfolds into more than {MAX_NODES:,} values "
                "(aliases of aliases?)",
                hint="a job or prices file needs no more than a few hundred; write the values out",
            )
        sizes[key], depths[key] = size, deepest
        return size, deepest

    visit(root, 0)


def _index_lines(node: yaml.Node, prefix: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    """Map each key path in the YAML tree to its 1-based line, for error messages. An aliased node is
    indexed where it is defined (its lines are there), not again at each use."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*prefix, str(key_node.value))
            out.setdefault(path, key_node.start_mark.line + 1)
            if len(out) < MAX_NODES:
                _index_lines(value_node, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = (*prefix, str(i))
            out.setdefault(path, item.start_mark.line + 1)
            if len(out) < MAX_NODES:
                _index_lines(item, path, out)


# Discriminated unions add the tag to the error location (adapter.lora.r); users wrote adapter.r.
_UNION_FIELDS = {"method", "adapter"}


def describe_error(
    err: Mapping[str, Any], source: str, lines: dict[tuple[str, ...], int], *, tagged: bool = True
) -> str:
    """`file:line: field: message` for one of pydantic's errors. `tagged=False` when the caller has already
    taken the union tags out of the location (a grader's)."""
    loc = [str(p) for p in err.get("loc", ())]
    if tagged and len(loc) >= 2 and loc[0] in _UNION_FIELDS:
        loc = [loc[0], *loc[2:]]
    if tagged and "grader" in loc:  # an RFT method's grader: its own union tags out too
        from anytune.graders.spec import without_tags

        loc = [str(p) for p in without_tags(tuple(loc))]
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


def resolve_grader_paths(raw: dict[str, Any], base: Path) -> None:
    """A Python grader's `path` is relative to the job file, like the data's: the method's grader and the
    evaluation's."""
    method, evaluation = raw.get("method"), raw.get("evaluation")
    graders = [method.get("grader")] if isinstance(method, dict) else []
    if graders and isinstance(graders[0], list):  # several top-level graders
        graders = list(graders[0])
    if isinstance(evaluation, dict):
        metrics = evaluation.get("metrics") if isinstance(evaluation.get("metrics"), list) else []
        graders += [m.get("grader") for m in metrics if isinstance(m, dict)]
        if isinstance(evaluation.get("graders"), dict):
            graders += list(evaluation["graders"].values())
    for grader in graders:
        if not isinstance(grader, dict):
            continue
        parts = grader.get("graders") if isinstance(grader.get("graders"), dict) else {"": grader}
        for leaf in parts.values():
            value = leaf.get("path") if isinstance(leaf, dict) and leaf.get("type") == "python" else None
            if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
                leaf["path"] = str(resolved(base / Path(value).expanduser()))


def _resolve_data_paths(raw: dict[str, Any], base: Path) -> None:
    resolve_grader_paths(raw, base)
    for section, fields in (("data", _DATA_PATH_FIELDS), ("evaluation", ("data",))):
        block = raw.get(section)
        if not isinstance(block, dict):
            continue
        for field in fields:
            value = block.get(field)
            if isinstance(value, str) and value and "://" not in value and not value.startswith("dataset:"):
                p = Path(value).expanduser()
                if not p.is_absolute():
                    block[field] = str(resolved(base / p))
