"""Deterministic splits without leakage, and a check for leakage between two files.

Records are grouped by their normalized prompt, so that the same question (asked twice, or with two
answers) lands on one side only. Groups are ordered by a seeded hash and dealt out to the splits until each
has its share of rows: the same file and seed always give the same split, on any machine.
"""

from __future__ import annotations

import json
import os
import tempfile
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, Field

from anytune.data.formats import DataFormat
from anytune.data.records import canonical_json, hash64, prompt_key
from anytune.data.validate import RecordValidator, ValidationReport, require_valid
from anytune.errors import DataError, UsageError
from anytune.paths import resolved

_EXAMPLES = 10


class LeakageReport(BaseModel):
    """Rows of `other` whose prompt (or whole record) also appears in `train`."""

    train: str
    other: str
    other_rows: int = 0
    shared_prompts: int = 0
    identical_rows: int = 0
    examples: list[tuple[int, int]] = Field(default_factory=list, description="(other line, train line)")

    @property
    def leaked(self) -> bool:
        return self.shared_prompts > 0


class SplitReport(BaseModel):
    source: str
    format: DataFormat
    seed: int
    counts: dict[str, int]
    paths: dict[str, str]
    groups: int
    leakage: list[LeakageReport] = Field(default_factory=list)


@dataclass
class SplitPlan:
    """Pass 1 of a split: the source validated (its full report), each row's group, and where each group
    goes. Nothing is written yet; `write_split` does that in one more pass."""

    source: Path
    format: DataFormat
    seed: int
    names: list[str]
    report: ValidationReport
    lines: array  # the source line of each valid row, in order
    row_groups: array
    assignment: dict[int, str]
    counts: dict[str, int]


def plan_split(
    source: str | Path,
    ratios: Mapping[str, float],
    *,
    seed: int = 42,
    format: DataFormat | None = None,
    max_seq_length: int | None = None,
) -> SplitPlan:
    """Validate `source` and decide each row's split, in one read. Raises DataError if the file has errors
    or too few distinct prompts to fill every split."""
    names = [n for n, r in ratios.items() if r > 0]
    total_ratio = sum(ratios[n] for n in names)
    if not names or abs(total_ratio - 1.0) > 1e-6:
        raise UsageError(f"split ratios must be positive and sum to 1, got {dict(ratios)}")
    source = Path(source)

    # Each row's group and line, and each group's size. Arrays keep this to ~12 bytes a row.
    validator = RecordValidator(source, format=format, max_seq_length=max_seq_length)
    row_groups = array("Q")
    lines = array("Q")
    group_sizes: dict[int, int] = {}
    for line, record in validator:
        g = hash64(f"{seed}\x00{prompt_key(record, validator.format)}")  # type: ignore[arg-type]
        row_groups.append(g)
        lines.append(line)
        group_sizes[g] = group_sizes.get(g, 0) + 1
    require_valid(validator.report)
    fmt = validator.format
    assert fmt is not None
    n = len(row_groups)

    # Deal groups, in seeded-hash order, to the split furthest below its target share.
    targets = {name: ratios[name] * n for name in names}
    counts = dict.fromkeys(names, 0)
    assignment: dict[int, str] = {}
    for g in sorted(group_sizes):
        name = max(names, key=lambda k: (targets[k] - counts[k], -names.index(k)))
        assignment[g] = name
        counts[name] += group_sizes[g]
    empty = [name for name in names if counts[name] == 0]
    if empty:
        raise DataError(
            f"{source}: {n} rows in {len(group_sizes)} distinct prompts are too few to fill split(s) {', '.join(empty)}",
            hint="use larger ratios or more data",
        )
    return SplitPlan(source, fmt, seed, names, validator.report, lines, row_groups, assignment, counts)


def write_split(plan: SplitPlan, out_dir: str | Path, *, cache: bool = False) -> SplitReport:
    """Write each split of `plan` to `<out_dir>/<name>.jsonl` in one pass over the source.

    `cache=True` is for a folder anytune owns and names by content: `<name>.lines` goes beside each split
    (the source line of each row, so messages can name the user's own file and line), and a folder that
    already holds the complete split is reused without reading the source again."""
    paths = _outputs(plan.source, out_dir, plan.names)
    out_dir = Path(out_dir)
    done = out_dir / ".complete"
    if not (cache and done.exists()):
        out_dir.mkdir(parents=True, exist_ok=True)
        files: dict[str, tuple[str, TextIO]] = {}
        try:
            for name in paths:
                fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out_dir)
                files[name] = (tmp, os.fdopen(fd, "w", encoding="utf-8", newline="\n"))
            row_lines: dict[str, array] = {name: array("Q") for name in plan.names}
            validator = RecordValidator(plan.source, format=plan.format, collect_stats=False)
            for i, (_, record) in enumerate(validator):
                name = plan.assignment[plan.row_groups[i]]
                files[name][1].write(json.dumps(record, ensure_ascii=False) + "\n")
                row_lines[name].append(plan.lines[i])
            for name, (tmp, fh) in files.items():
                fh.close()
                if cache:
                    _write_lines(out_dir / f"{name}.lines", row_lines[name])
                os.replace(tmp, paths[name])
            if cache:
                done.touch()
        finally:
            for tmp, fh in files.values():
                fh.close()
                Path(tmp).unlink(missing_ok=True)
    leakage = [
        check_leakage(paths[plan.names[0]], paths[other], format=plan.format) for other in plan.names[1:]
    ]
    return SplitReport(
        source=str(plan.source),
        format=plan.format,
        seed=plan.seed,
        counts=plan.counts,
        paths={k: str(v) for k, v in paths.items()},
        groups=len(set(plan.assignment)),
        leakage=leakage,
    )


def _write_lines(path: Path, lines: array) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        lines.tofile(fh)
    os.replace(tmp, path)


def source_line(split_path: str | Path, line: int) -> int | None:
    """The line of the user's file that line `line` of a split file came from (None if unknown)."""
    lines_file = Path(split_path).with_suffix(".lines")
    try:
        with lines_file.open("rb") as fh:
            fh.seek((line - 1) * 8)
            raw = fh.read(8)
    except OSError:
        return None
    if len(raw) != 8 or line < 1:
        return None
    value = array("Q")
    value.frombytes(raw)
    return int(value[0])


def split_file(
    source: str | Path,
    out_dir: str | Path,
    ratios: Mapping[str, float],
    *,
    seed: int = 42,
    format: DataFormat | None = None,
) -> SplitReport:
    """Split `source` into `<out_dir>/<name>.jsonl` for each name in `ratios` (which must sum to 1): two
    reads of the source, however many splits."""
    _outputs(source, out_dir, [n for n, r in ratios.items() if r > 0])  # before the read, not after it
    return write_split(plan_split(source, ratios, seed=seed, format=format), out_dir)


def _outputs(source: str | Path, out_dir: str | Path, names: list[str]) -> dict[str, Path]:
    """Each split's file in `out_dir`; a DataError where one would replace the source (splitting
    `data/train.jsonl` into `data/` replaced the user's file with its training share)."""
    paths = {name: Path(out_dir) / f"{name}.jsonl" for name in names}
    for path in paths.values():
        if resolved(path) == resolved(source):
            raise DataError(
                f"{path}: the {path.stem} split would replace the file being split",
                hint="write the splits to another folder (--out)",
            )
    return paths


class LeakageKeys:
    """What a leakage check needs of one file, gathered by the pass that validates it (`add` is a
    RecordValidator's `on_valid`): each valid record's line, and hashes of its prompt (case and spacing
    ignored) and of itself; 24 bytes a record."""

    def __init__(self, format: DataFormat | None = None) -> None:
        self.format = format
        self.lines = array("Q")
        self.prompts = array("Q")
        self.rows = array("Q")

    def add(self, line: int, record: dict[str, Any], fmt: DataFormat, canonical: bytes) -> None:
        self.format = self.format or fmt
        self.lines.append(line)
        self.prompts.append(hash64(prompt_key(record, fmt)))
        self.rows.append(hash64(canonical))

    @classmethod
    def of_file(
        cls, path: str | Path, format: DataFormat | None = None, *, what: str = "the data"
    ) -> LeakageKeys:
        """A pass of its own over `path` (a DataError if it holds broken records)."""
        keys = cls(format)
        validator = RecordValidator(path, format=format, collect_stats=False)
        for line, record in validator:
            keys.add(line, record, validator.format, canonical_json(record))  # type: ignore[arg-type]
        require_valid(validator.report, what=what)
        return keys


def leakage(
    train: LeakageKeys, other: LeakageKeys, train_path: str | Path, other_path: str | Path
) -> LeakageReport:
    """How many rows of `other` share a prompt, or are identical, with a row of `train`."""
    first: dict[int, int] = {}
    for line, prompt in zip(train.lines, train.prompts, strict=True):
        first.setdefault(prompt, line)
    rows = set(train.rows)
    report = LeakageReport(train=str(train_path), other=str(other_path))
    for line, prompt, row in zip(other.lines, other.prompts, other.rows, strict=True):
        report.other_rows += 1
        found = first.get(prompt)
        if found is not None:
            report.shared_prompts += 1
            if len(report.examples) < _EXAMPLES:
                report.examples.append((line, found))
        if row in rows:
            report.identical_rows += 1
    return report


def check_leakage(train: str | Path, other: str | Path, *, format: DataFormat | None = None) -> LeakageReport:
    """How many rows of `other` share a prompt, or are identical, with a row of `train`: both files read."""
    train_keys = LeakageKeys.of_file(train, format, what="the training data")
    return leakage(train_keys, LeakageKeys.of_file(other, train_keys.format), train, other)
