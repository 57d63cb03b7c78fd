"""Writing a provider's training file once: streamed, hashed as it is written, named by its content.

The same content always gets the same name (`anytune-<sha256>.jsonl`), which is how an upload is found again
instead of being repeated. Rows go to a unique temporary name in the target folder and are renamed only when
the file is complete, so two processes preparing the same data never collide and a failure leaves nothing.

A quote needs a provider's checks and counts, never its file: under `files_not_written()` (which
`Client.preflight(quote_only=True)` uses) a writer only measures what it would write, so a comparison across
five providers neither writes five copies of the data nor leaves them in the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from anytune.hookspecs import BillableTokens, DataBundle, DatasetRef, PreparedData, PreparedFile, Problem


def json_line(row: Any) -> bytes:
    """One compact JSON line, UTF-8 as it is: orjson (6x faster), or `json` for what orjson does not write
    (an integer beyond 64 bits)."""
    try:
        return orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


_NOT_WRITTEN: ContextVar[bool] = ContextVar("anytune_files_not_written", default=False)
NOT_WRITTEN = "(not written: prepared for a quote)"


@contextmanager
def files_not_written() -> Iterator[None]:
    """Within this block (in this thread), PreparedWriter writes nothing: rows are measured (count, size)
    and the PreparedFile it finishes with has no path, named NOT_WRITTEN. For quotes."""
    token = _NOT_WRITTEN.set(True)
    try:
        yield
    finally:
        _NOT_WRITTEN.reset(token)


class PreparedWriter:
    """`with PreparedWriter(folder, format="chat") as w: w.write(row)`, then `w.finish()` -> PreparedFile.

    Leaving the block without `finish()` (an exception, or problems found in the data) deletes the
    temporary file."""

    def __init__(self, folder: Path, *, format: str, prefix: str = "anytune") -> None:
        self.folder, self.format, self.prefix = folder, format, prefix
        self.rows = 0
        self.size = 0
        self.written = not _NOT_WRITTEN.get()
        if not self.written:
            return
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".prepare-", suffix=".jsonl", dir=folder)
        self._tmp = Path(tmp)
        self._fh = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()

    def write(self, row: dict[str, Any]) -> None:
        data = json_line(row)
        self.rows += 1
        self.size += len(data)
        if self.written:
            self._fh.write(data)
            self._hash.update(data)

    def finish(self) -> PreparedFile:
        if not self.written:
            return PreparedFile(
                path="", name=NOT_WRITTEN, sha256="", rows=self.rows, format=self.format, size=self.size
            )
        self._fh.close()
        digest = self._hash.hexdigest()
        name = f"{self.prefix}-{digest[:32]}.jsonl"
        final = self.folder / name
        os.replace(self._tmp, final)  # atomic; a concurrent writer of the same content wrote the same bytes
        return PreparedFile(
            path=str(final), name=name, sha256=digest, rows=self.rows, format=self.format, size=self.size
        )

    def abort(self) -> None:
        if not self.written:
            return
        if not self._fh.closed:
            self._fh.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> PreparedWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.written and self._tmp.exists():
            self.abort()


SplitResult = tuple[PreparedFile | None, int, int, list[Problem]]  # file, billable tokens, examples, problems


def prepare_splits(
    provider: str,
    data: DataBundle,
    prepare_split: Callable[[DatasetRef, str], SplitResult],
    *,
    counter: Any,
    notes: list[str],
) -> PreparedData:
    """The `PreparedData` of the training and validation splits, each made by `prepare_split(ref, split)`
    (a provider's conversion and rules for one file) and counted with `counter` (a token counter: its name and
    whether it is exact go with the counts)."""
    prepared = PreparedData(provider=provider, data=data)
    for split in ("train", "validation"):
        ref = getattr(data, split)
        if ref is None:
            continue
        written, tokens, examples, problems = prepare_split(ref, split)
        prepared.problems.extend(problems)
        if written is not None:
            prepared.files[split] = written
        prepared.tokens[split] = BillableTokens(
            tokens=tokens, examples=examples, counter=counter.name, exact=counter.exact, notes=list(notes)
        )
    return prepared
