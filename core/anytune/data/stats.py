"""Statistics of a data set, gathered in one streaming pass in (nearly) constant memory.

Lengths are kept as histograms (memory grows with the number of distinct lengths, not rows). Exact
duplicate detection needs one 8-byte hash and one 4-byte line number per row, kept in compact arrays split
into 256 buckets so that finding the duplicates never builds a list of all rows: 12 bytes a row, about
2.4 MB for 200k rows.
"""

from __future__ import annotations

import heapq
from array import array
from collections import Counter
from typing import Any

from pydantic import BaseModel, Field

from anytune.data.counting import BatchCounter
from anytune.data.formats import DataFormat
from anytune.data.records import canonical_json, full_text, hash64, prompt_and_target
from anytune.data.tokens import TokenCounter

_MAX_LABELS = 50  # more distinct answers than this and the data is not a label task
_MAX_LABEL_CHARS = 40
_EXAMPLES = 10


class LengthStats(BaseModel):
    min: int
    mean: float
    p50: int
    p90: int
    p95: int
    p99: int
    max: int


class DataStats(BaseModel):
    format: DataFormat
    rows: int
    tokens_total: int
    tokens_estimated: bool
    tokenizer: str
    lengths: LengthStats | None = None
    max_seq_length: int | None = None
    rows_over_max: int = 0
    over_max_lines: list[int] = Field(default_factory=list)
    duplicates: int = 0
    duplicate_lines: list[tuple[int, int]] = Field(
        default_factory=list, description="(line, line of its first copy), first few"
    )
    roles: dict[str, int] = Field(default_factory=dict)
    turns: LengthStats | None = None
    with_system_prompt: int = 0
    labels: dict[str, int] | None = None
    label_imbalance: float | None = Field(None, description="most common label count / least common")


def percentiles(histogram: Counter[int]) -> LengthStats | None:
    """Nearest-rank percentiles of the values counted in `histogram`."""
    n = sum(histogram.values())
    if not n:
        return None
    ordered = sorted(histogram.items())

    def at(q: float) -> int:
        rank = min(n - 1, round(q * (n - 1)))
        seen = 0
        for value, count in ordered:
            seen += count
            if seen > rank:
                return value
        return ordered[-1][0]

    return LengthStats(
        min=ordered[0][0],
        mean=round(sum(v * c for v, c in ordered) / n, 2),
        p50=at(0.50),
        p90=at(0.90),
        p95=at(0.95),
        p99=at(0.99),
        max=ordered[-1][0],
    )


class StatsAccumulator:
    def __init__(self, fmt: DataFormat, counter: TokenCounter, max_seq_length: int | None = None) -> None:
        self.fmt = fmt
        self.counter = counter
        self.max_seq_length = max_seq_length
        self.rows = 0
        self.tokens_total = 0
        self._lengths: Counter[int] = Counter()
        self._turns: Counter[int] = Counter()
        self._hashes = [array("Q") for _ in range(256)]
        self._lines = [array("I") for _ in range(256)]
        self._over: list[int] = []
        self.rows_over_max = 0
        self.roles: Counter[str] = Counter()
        self.with_system = 0
        self._labels: Counter[str] | None = Counter()
        self._counts: BatchCounter[int] = BatchCounter(counter, self._lengths_of)

    def add(self, line: int, record: dict[str, Any], canonical: bytes | None = None) -> None:
        """Account for one valid record (`canonical`: its canonical JSON, if already computed). Its tokens are
        counted with the next batch (on a thread, for exact counters): `finish()` has every figure."""
        self.rows += 1
        self._counts.add(line, (full_text(record, self.fmt),))
        h = hash64(canonical if canonical is not None else canonical_json(record))
        self._hashes[h >> 56].append(h)
        self._lines[h >> 56].append(line)
        if self.fmt is DataFormat.CHAT:
            messages = record["messages"]
            self._turns[len(messages)] += 1
            self.roles.update(m.get("role", "?") for m in messages if isinstance(m, dict))
            if any(isinstance(m, dict) and m.get("role") == "system" for m in messages):
                self.with_system += 1
        if self._labels is not None and self.fmt is not DataFormat.TEXT:
            _, target = prompt_and_target(record, self.fmt)
            target = target.strip()
            if len(target) > _MAX_LABEL_CHARS:
                self._labels = None
            else:
                self._labels[target] += 1
                if len(self._labels) > _MAX_LABELS:
                    self._labels = None

    def _lengths_of(self, lines: list[int], counts: list[int]) -> None:
        for line, n_tokens in zip(lines, counts, strict=True):
            self._lengths[n_tokens] += 1
            if self.max_seq_length is not None and n_tokens > self.max_seq_length:
                self.rows_over_max += 1
                if len(self._over) < _EXAMPLES:
                    self._over.append(line)

    def _duplicates(self) -> tuple[int, list[tuple[int, int]]]:
        """How many rows repeat an earlier row, and the first few (line, line of the first copy) pairs."""
        count = 0
        pairs: list[tuple[int, int]] = []
        for hashes, lines in zip(self._hashes, self._lines, strict=True):
            first: dict[int, int] = {}
            for h, line in zip(hashes, lines, strict=True):
                seen = first.setdefault(h, line)
                if seen != line:
                    count += 1
                    pairs.append((line, seen))
                    if len(pairs) > 100 * _EXAMPLES:
                        pairs = heapq.nsmallest(_EXAMPLES, pairs)
        return count, heapq.nsmallest(_EXAMPLES, pairs)

    def finish(self) -> DataStats:
        self._counts.close()
        self.tokens_total = self._counts.tokens
        duplicates, dup_lines = self._duplicates()
        labels = None
        imbalance = None
        # Only call it a label task when answers repeat: a few distinct values over many rows.
        if self._labels and self.rows >= 2 * len(self._labels) and len(self._labels) >= 2:
            labels = dict(self._labels.most_common())
            counts = list(labels.values())
            imbalance = round(max(counts) / min(counts), 2)
        return DataStats(
            format=self.fmt,
            rows=self.rows,
            tokens_total=self.tokens_total,
            tokens_estimated=not self.counter.exact,
            tokenizer=self.counter.name,
            lengths=percentiles(self._lengths),
            max_seq_length=self.max_seq_length,
            rows_over_max=self.rows_over_max,
            over_max_lines=self._over,
            duplicates=duplicates,
            duplicate_lines=dup_lines,
            roles=dict(self.roles),
            turns=percentiles(self._turns),
            with_system_prompt=self.with_system,
            labels=labels,
            label_imbalance=imbalance,
        )
