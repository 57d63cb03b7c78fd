"""One parse of a clean JSONL file for every pass that reads it at the same time.

A quote prepares the data for each provider on its own thread, and each provider's `prepare` reads the file
again after the Client's validation (every line known to hold a valid record, so it is only parsed). On 200k
chats that parse is about a second of each pass, all of it holding the GIL. Passes over the same unchanged
file that run at the same time share one: whichever reader first needs the next chunk of lines parses it, and
every reader takes the same records. So a record is shared: a pass reads it and never changes it (the plugin
contract says so, in `anytune.plugin`).

Chunks are small and few are kept (`CHUNK_LINES` lines, a reader at most `AHEAD` chunks in front of the last
one, `KEEP` more kept for a reader that starts a moment late): measured with 256-line chunks and 16 kept, the
records held alive made a lone reader 1.8x slower than a plain loop; with 64 and 2 it is as fast. One that
has not moved for `STALL` seconds (two readers driven by one thread would wait on each other for ever, a pass
may stop reading without closing) is cut loose and reads the rest on its own. A reader that comes later than
that reads the lines the others have passed on its own, then joins them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

Record = tuple[int, Any]  # (line number, value)
Parse = Callable[[bytes], Any]

CHUNK_LINES = 64
AHEAD = 2  # chunks the first reader may be in front of the last one
KEEP = 2  # chunks kept behind the last reader, for one that starts a moment late
STALL = 2.0  # seconds without a move before the last reader is cut loose
_BOM = b"\xef\xbb\xbf"
_BLANK = object()


@dataclass(frozen=True)
class _Chunk:
    start: int  # byte offset of its first line
    line: int  # number of its first line, less one
    lines: int  # lines in it, blank ones included
    records: list[Record]


def _value(number: int, raw: bytes, parse: Parse) -> Any:
    stripped = raw.strip()
    if number == 1 and stripped.startswith(_BOM):
        stripped = stripped[3:]
    return parse(stripped) if stripped else _BLANK


def _parse_chunk(fh: IO[bytes], parse: Parse, offset: int, line: int) -> tuple[_Chunk, int, bool]:
    """The chunk of up to CHUNK_LINES lines at byte `offset` of `fh` (line `line` + 1 there), the offset where
    it ends, and whether the file ends there. Every chunk of a file is cut the same way from its start, so a
    chunk's start is where a reader that began at byte 0 arrives."""
    readline = fh.readline
    start, first, eof = offset, line, False
    records: list[Record] = []
    for _ in range(CHUNK_LINES):
        raw = readline()
        if not raw:
            eof = True
            break
        offset += len(raw)
        line += 1
        value = _value(line, raw, parse)
        if value is not _BLANK:
            records.append((line, value))
    return _Chunk(start, first, line - first, records), offset, eof


def _alone(
    path: Path,
    parse: Parse,
    start: int,
    line: int,
    until: int | None = None,
    touch: Callable[[], None] | None = None,
) -> Iterator[Record]:
    """The records from byte `start` (line `line` + 1 there, a chunk's start) up to byte `until` (another
    chunk's start) or the end, read alone."""
    with path.open("rb") as fh:
        fh.seek(start)
        offset, eof = start, False
        while not eof and (until is None or offset < until):
            chunk, offset, eof = _parse_chunk(fh, parse, offset, line)
            line = chunk.line + chunk.lines
            yield from chunk.records
            if touch is not None:
                touch()


class SharedRead:
    """The readers of one file at one time, and the chunks parsed for them that some may still need."""

    def __init__(self, path: Path, parse: Parse, on_close: Callable[[SharedRead], None]) -> None:
        self.path = path
        self.parse = parse
        self.on_close = on_close
        self.closed = False
        self._cond = threading.Condition()
        self._chunks: dict[int, _Chunk] = {}
        self._produced = 0  # chunks parsed so far
        self._eof = False
        self._producing = False  # one reader parses at a time: the handle and the position are its own
        self._fh: IO[bytes] | None = None
        self._offset = 0  # where the next chunk starts
        self._line = 0
        self._readers: dict[int, int] = {}  # reader -> the chunk it needs next (it holds the ones before)
        self._moved: dict[int, float] = {}
        self._loose: dict[int, tuple[int, int]] = {}  # reader cut loose -> (byte offset, line) to go on from
        self._ids = 0

    def records(self) -> Iterator[Record]:
        with self._cond:
            me = None if self.closed else self._ids
            if me is not None:
                self._ids += 1
                first = min(self._chunks, default=self._produced)  # the oldest chunk still held
                start, _ = self._start_of(first)
                self._readers[me] = first
                self._moved[me] = time.monotonic()
        if me is None:  # every reader had left and closed it: this one reads alone
            yield from _alone(self.path, self.parse, 0, 0)
            return
        try:
            if start:  # the others have passed these lines: read them alone, then join
                yield from _alone(self.path, self.parse, 0, 0, until=start, touch=lambda: self._touch(me))
            index = first
            while True:
                chunk, loose = self._take(me, index)
                if loose is not None:
                    yield from _alone(self.path, self.parse, *loose)
                    return
                if chunk is None:
                    return
                yield from chunk.records
                index += 1
        finally:
            self._leave(me)

    def _start_of(self, index: int) -> tuple[int, int]:
        chunk = self._chunks.get(index)
        return (chunk.start, chunk.line) if chunk is not None else (self._offset, self._line)

    def _touch(self, me: int) -> None:
        with self._cond:
            self._moved[me] = time.monotonic()

    def _take(self, me: int, index: int) -> tuple[_Chunk | None, tuple[int, int] | None]:
        """(the chunk, None); (None, None) past the end; (None, where to go on alone) once cut loose."""
        with self._cond:
            if me in self._loose:
                return None, self._loose.pop(me)
            self._readers[me] = index
            self._moved[me] = time.monotonic()
            self._drop()
            self._cond.notify_all()
            while True:
                if me in self._loose:
                    return None, self._loose.pop(me)
                chunk = self._chunks.get(index)
                if chunk is not None:
                    self._readers[me] = index + 1
                    return chunk, None
                if self._eof and index >= self._produced:
                    return None, None
                if not self._producing and self._may_parse(index):
                    self._producing = True
                    break
                self._cond.wait(0.05)
                self._moved[me] = time.monotonic()  # waiting here for a chunk is not stalling the others
        try:
            chunk, end, eof = self._parse_next()
        except BaseException:
            with self._cond:
                self._producing = False
                self._cond.notify_all()
            raise
        with self._cond:
            self._chunks[self._produced] = chunk
            self._produced += 1
            self._offset, self._line = end, chunk.line + chunk.lines
            self._eof = eof
            self._producing = False
            if me in self._readers:
                self._readers[me] = index + 1
            self._cond.notify_all()
        return chunk, None

    def _may_parse(self, index: int) -> bool:
        """Whether a reader needing chunk `index`, the next to parse, may parse it now: not while it is AHEAD
        chunks in front of the last reader, unless that one has stalled (it is then cut loose)."""
        while True:
            last = min(self._readers.values())
            if index - last < AHEAD:
                return True
            now = time.monotonic()
            stalled = [r for r, i in self._readers.items() if i == last and now - self._moved[r] > STALL]
            if not stalled:
                return False
            for reader in stalled:
                self._loose[reader] = self._start_of(last)
                del self._readers[reader]
            self._drop()

    def _drop(self) -> None:
        last = min(self._readers.values(), default=self._produced)
        for index in [i for i in self._chunks if i < min(last, self._produced - KEEP)]:
            del self._chunks[index]

    def _parse_next(self) -> tuple[_Chunk, int, bool]:
        """The next chunk, the offset where it ends, and whether the file ends there."""
        if self._fh is None:
            self._fh = self.path.open("rb")
        return _parse_chunk(self._fh, self.parse, self._offset, self._line)

    def _leave(self, me: int) -> None:
        with self._cond:
            self._readers.pop(me, None)
            self._moved.pop(me, None)
            self._loose.pop(me, None)
            self._drop()
            self._cond.notify_all()
            if self._readers or self._loose:
                return
            self.closed = True
            self._chunks.clear()
            if self._fh is not None:
                self._fh.close()
                self._fh = None
        self.on_close(self)


_GROUPS: dict[Any, SharedRead] = {}
_GROUPS_LOCK = threading.Lock()


def read_clean(path: Path, key: Any, parse: Parse) -> Iterator[Record]:
    """Every (line number, value) of a JSONL file each of whose lines is known to hold a valid record,
    parsed by `parse`, shared with the other readers of the same file (`key`: its identity and version)."""
    with _GROUPS_LOCK:
        group = _GROUPS.get(key)
        if group is None or group.closed:
            group = _GROUPS[key] = SharedRead(path, parse, lambda g: _forget(key, g))
    return group.records()


def _forget(key: Any, group: SharedRead) -> None:
    with _GROUPS_LOCK:
        if _GROUPS.get(key) is group:
            del _GROUPS[key]


def _forget_all() -> None:
    """In a forked child the other readers' threads do not exist (and a lock they held stays held)."""
    global _GROUPS, _GROUPS_LOCK
    _GROUPS = {}
    _GROUPS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_all)
