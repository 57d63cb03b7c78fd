"""Deterministic splits without leakage, and a check for leakage between two files.

Records are grouped by their normalized prompt, so that the same question (asked twice, or with two
answers) lands on one side only. Groups are ordered by a seeded hash and dealt out to the splits until each
has its share of rows: the same file and seed always give the same split, on any machine.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, Field

from anytune.data.convert import write_jsonl_atomic
from anytune.data.formats import DataFormat
from anytune.data.records import canonical_json, hash64, prompt_key
from anytune.data.validate import RecordValidator, require_valid
from anytune.errors import DataError, UsageError

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


def split_file(
    source: str | Path,
    out_dir: str | Path,
    ratios: Mapping[str, float],
    *,
    seed: int = 42,
    format: DataFormat | None = None,
) -> SplitReport:
    """Split `source` into `<out_dir>/<name>.jsonl` for each name in `ratios` (which must sum to 1)."""
    names = [n for n, r in ratios.items() if r > 0]
    total_ratio = sum(ratios[n] for n in names)
    if not names or abs(total_ratio - 1.0) > 1e-6:
        raise UsageError(f"split ratios must be positive and sum to 1, got {dict(ratios)}")
    source, out_dir = Path(source), Path(out_dir)

    # Pass 1: each row's group, and each group's size. Arrays keep this to ~8 bytes a row.
    validator = RecordValidator(source, format=format, collect_stats=False)
    row_groups = array("Q")
    group_sizes: dict[int, int] = {}
    for _, record in validator:
        g = hash64(f"{seed}\x00{prompt_key(record, validator.format)}")  # type: ignore[arg-type]
        row_groups.append(g)
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

    # Pass 2: write each split.
    paths = {name: out_dir / f"{name}.jsonl" for name in names}
    for name, path in paths.items():

        def rows(name: str = name):
            v = RecordValidator(source, format=fmt, collect_stats=False)
            for i, (_, record) in enumerate(v):
                if assignment[row_groups[i]] == name:
                    yield record

        write_jsonl_atomic(path, rows())

    leakage = [check_leakage(paths[names[0]], paths[other], format=fmt) for other in names[1:]]
    return SplitReport(
        source=str(source),
        format=fmt,
        seed=seed,
        counts=counts,
        paths={k: str(v) for k, v in paths.items()},
        groups=len(group_sizes),
        leakage=leakage,
    )


def check_leakage(train: str | Path, other: str | Path, *, format: DataFormat | None = None) -> LeakageReport:
    """How many rows of `other` share a prompt, or are identical, with a row of `train`."""
    v_train = RecordValidator(train, format=format, collect_stats=False)
    prompts: dict[int, int] = {}
    rows: set[int] = set()
    for line, record in v_train:
        prompts.setdefault(hash64(prompt_key(record, v_train.format)), line)  # type: ignore[arg-type]
        rows.add(hash64(canonical_json(record)))
    require_valid(v_train.report, what="the training data")
    report = LeakageReport(train=str(train), other=str(other))
    v_other = RecordValidator(other, format=v_train.format, collect_stats=False)
    for line, record in v_other:
        report.other_rows += 1
        first = prompts.get(hash64(prompt_key(record, v_other.format)))  # type: ignore[arg-type]
        if first is not None:
            report.shared_prompts += 1
            if len(report.examples) < _EXAMPLES:
                report.examples.append((line, first))
        if hash64(canonical_json(record)) in rows:
            report.identical_rows += 1
    require_valid(v_other.report)
    return report
