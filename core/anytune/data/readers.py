"""Reading JSONL, CSV and Parquet one record at a time, keeping each record's line (or row) number."""

from __future__ import annotations

import csv
import datetime
import decimal
import json
import os
import re
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anytune.errors import DataError

try:  # the fast parser; every line it refuses goes through `json`, whose verdict and messages are the rule
    import orjson

    _fast_loads: Any = orjson.loads
except ImportError:  # pragma: no cover - orjson is a dependency; a broken install still reads data
    _fast_loads = None

# CSV cells holding these columns may contain JSON (a list of messages, an object).
_JSON_COLUMNS = frozenset(
    {
        "messages",
        "prompt",
        "completion",
        "chosen",
        "rejected",
        "input",
        "preferred_output",
        "non_preferred_output",
        "tools",
        "metadata",
    }
)


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as read: its position, its parsed value, or why it could not be parsed."""

    line: int
    value: Any = None
    error: str | None = None
    warning: str | None = None
    nbytes: int = 0


def file_kind(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    return "jsonl"


def position_word(path: str | Path) -> str:
    """How to name a record's position in this kind of file."""
    return "row" if file_kind(path) == "parquet" else "line"


MAX_LINE_BYTES = 32 * 2**20  # one record; a provider's longest example is a fraction of this
MAX_DEPTH_MESSAGE = "nested too deeply (JSON arrays and objects inside each other beyond Python's limit)"


def read_records(path: str | Path) -> Iterator[RawRecord]:
    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise DataError(
                f"{path}: a symbolic link to nothing (its target is missing, or the links point back to each other)",
                hint="point it at the data file, or name the file itself",
            )
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a data file")
    if not stat.S_ISREG(path.stat().st_mode) or str(path.resolve()).startswith("/proc/"):
        raise DataError(
            f"{path}: not a regular file (a device, pipe or process file)",
            hint="anytune reads data only from regular files: copy the data to one first",
        )
    kind = file_kind(path)
    if kind == "csv":
        return _read_csv(path)
    if kind == "parquet":
        return _read_parquet(path)
    return _read_jsonl(path)


def _lines(fh: Any) -> Iterator[tuple[bytes, bool]]:
    """(line, too long) for each line, each read in bounded memory: a line over MAX_LINE_BYTES is skipped to
    its end and reported, instead of being read whole."""
    while True:
        raw = fh.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while True:
                rest = fh.readline(2**20)
                if not rest or rest.endswith(b"\n"):
                    break
            yield b"", True
            continue
        yield raw, False


# orjson reads integers beyond 64 bits as floats, where `json` keeps them exact: such lines go to `json`
_LONG_INT = re.compile(rb"[0-9]{19}")
_NOT_DIGITS = bytes(b for b in range(256) if not 48 <= b <= 57)


def _may_hold_long_int(raw: bytes) -> bool:
    # most lines hold fewer than 19 digits in all; deleting the others is a C loop, the regex a slow one
    return len(raw.translate(None, _NOT_DIGITS)) >= 19 and _LONG_INT.search(raw) is not None


def parse_line(raw: bytes) -> tuple[Any, str | None]:
    """The value of one JSON line (bytes, stripped), or why it is not one anytune takes (never an exception).

    orjson parses the lines it can (4-8x faster); `json` decides the rest, so the values and the messages are
    exactly `json`'s: NaN, lone surrogates, bad UTF-8, nesting and huge numbers are judged the same way."""
    if _fast_loads is not None and not _may_hold_long_int(raw):
        try:
            return _fast_loads(raw), None
        except ValueError:
            pass
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not valid UTF-8 at byte {exc.start}"
    return _parse_json(text)


def _parse_json(text: str) -> tuple[Any, str | None]:
    """The value of one JSON text, or why it is not one anytune takes (never an exception)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg} (column {exc.colno})"
    except RecursionError:
        return None, MAX_DEPTH_MESSAGE
    except ValueError as exc:  # an integer of more digits than Python converts (4,300)
        return None, f"not a number anytune reads: {str(exc)[:120]}"
    if "\\u" in text and _has_surrogate(value):
        return None, "holds a lone UTF-16 surrogate escape (such as \\ud800), which is not text"
    return value, None


def _has_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


# files that are not text at all: each of their lines would be an error of its own, and none says why
_COMPRESSED = tuple(
    (re.compile(magic), name)
    for magic, name in (
        (rb"\x1f\x8b", "gzip"),
        (rb"PK\x03\x04", "zip"),
        (rb"\x28\xb5\x2f\xfd", "zstd"),
        (rb"\xfd7zXZ\x00", "xz"),
        # "BZh", the block size and the first block's magic: "BZh" alone can begin a CSV header
        (rb"BZh[1-9]1AY&SY", "bzip2"),
    )
)


def _not_text(head: bytes) -> str | None:
    """Why a file that starts with `head` (16 bytes) holds no lines to read, or None."""
    for magic, name in _COMPRESSED:
        if magic.match(head):
            return f"a {name}-compressed file, not text: decompress it first"
    wide = _wide_encoding(head)
    if wide is not None:
        return (
            f"{wide}; anytune reads UTF-8: save it as UTF-8 (e.g. `iconv -f {wide.split()[0]} -t UTF-8 FILE`)"
        )
    return None


def _wide_encoding(head: bytes) -> str | None:
    """UTF-16 or UTF-32 (with its byte order) where `head` shows one: its byte-order mark, or the zero bytes
    that text in the ASCII range has in it (a JSON line starts with `{`, `[` or a space)."""
    for bom, name in (
        (b"\xff\xfe\x00\x00", "UTF-32LE text (it starts with a UTF-32 byte-order mark)"),
        (b"\x00\x00\xfe\xff", "UTF-32BE text (it starts with a UTF-32 byte-order mark)"),
        (b"\xff\xfe", "UTF-16LE text (it starts with a UTF-16 byte-order mark)"),
        (b"\xfe\xff", "UTF-16BE text (it starts with a UTF-16 byte-order mark)"),
    ):
        if head.startswith(bom):
            return name
    if len(head) < 8 or head.count(0) < len(head) // 3:
        return None
    zeros = tuple(i for i in range(4) if head[i] == 0)
    return {
        (1, 2, 3): "UTF-32LE text (no byte-order mark)",
        (0, 1, 2): "UTF-32BE text (no byte-order mark)",
        (1, 3): "UTF-16LE text (no byte-order mark)",
        (0, 2): "UTF-16BE text (no byte-order mark)",
    }.get(zeros)


def _one_document(fh: Any) -> str | None:
    """Why a .jsonl file is JSON written over many lines (a pretty-printed array, or pretty-printed records:
    every line of it an error of its own), or None. Its first line opens a document, neither it nor the next
    is a value on its own, and its last byte closes one; a JSON Lines file with a broken first record does
    not look like that."""
    line = fh.readline(4096)  # an opening line is short, and other lines follow it
    first = line.removeprefix(b"\xef\xbb\xbf").strip()
    if first[:1] not in (b"[", b"{") or not line.endswith(b"\n") or not _opens(first):
        return None
    second = fh.readline(4096)  # inside a document, no value either (a record of JSON Lines is one)
    if not second.endswith(b"\n") or parse_line(second.strip())[1] is None:
        return None
    fh.seek(0, os.SEEK_END)
    fh.seek(max(0, fh.tell() - 4096))
    last = fh.read().rstrip()[-1:]
    shape = {(b"[", b"]"): "array", (b"{", b"}"): "object"}.get((first[:1], last))
    if shape is None or parse_line(first)[1] is None:
        return None
    if shape == "array":
        return (
            "one JSON array written over several lines, not JSON Lines (one record per line): write one "
            "record per line, e.g. `jq -c '.[]' FILE > FILE.jsonl`"
        )
    return "JSON written over several lines (pretty-printed), not JSON Lines: write each record on one line"


def _opens(line: bytes) -> bool:
    """Whether `line` leaves a bracket open (strings skipped): the first line of a document written over many
    lines does; a broken record on one line (`{bad}`) closes what it opens."""
    depth, in_string, escaped = 0, False, False
    for byte in line:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return depth > 0


def _read_jsonl(path: Path) -> Iterator[RawRecord]:
    pending_blanks: list[int] = []
    with path.open("rb") as fh:
        whole = _not_text(fh.read(16))
        fh.seek(0)
        whole = whole or _one_document(fh)
        fh.seek(0)
        if whole is not None:
            yield RawRecord(1, error=whole)
            return
        for number, (raw, too_long) in enumerate(_lines(fh), start=1):
            if too_long:
                yield RawRecord(number, error=f"longer than {MAX_LINE_BYTES // 2**20} MB: not read")
                continue
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            stripped = raw.strip()
            if not stripped:
                pending_blanks.append(number)  # only reported if a record follows (trailing blanks are fine)
                continue
            for blank in pending_blanks:
                yield RawRecord(blank, warning="blank line, skipped")
            pending_blanks.clear()
            value, error = parse_line(stripped)
            if error is not None:
                if b"\r" in stripped and "Extra data" in error:  # records after a lone \r: all on one "line"
                    error += "; its records end with a lone carriage return (\\r): end each line with \\n"
                yield RawRecord(number, error=error, nbytes=len(raw))
                continue
            yield RawRecord(number, value=value, nbytes=len(raw))


def _read_csv(path: Path) -> Iterator[RawRecord]:
    with path.open("rb") as fh:
        whole = _not_text(fh.read(16))
    if whole is not None:
        yield RawRecord(1, error=whole)
        return
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    # bytes that are not UTF-8 come through as surrogates, and the row that holds them is refused by line
    with path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield RawRecord(1, error=f"not valid CSV: {exc}")
            return
        header = [h.strip() for h in header]
        twice = sorted(name for name, n in Counter(header).items() if n > 1)  # linear: a header may be huge
        if twice:  # which of the two columns is the record's? Neither, rather than the last one silently
            yield RawRecord(1, error=f"the header names {', '.join(map(repr, twice))} more than once")
            return
        start = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield RawRecord(start, error=f"not valid CSV: {exc}")
                start = reader.line_num + 1
                continue
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                yield RawRecord(line, error=f"has {len(row)} cells, the header has {len(header)}")
                continue
            if _has_surrogate(row):
                yield RawRecord(line, error="not valid UTF-8")
                continue
            record: dict[str, Any] = {}
            for key, cell in zip(header, row, strict=True):
                value, error = _csv_cell(key, cell)
                if error is not None:
                    yield RawRecord(line, error=f"{key}: {error}")
                    break
                record[key] = value
            else:
                yield RawRecord(line, value=record, nbytes=sum(len(c) for c in row))


def _csv_cell(key: str, cell: str) -> tuple[Any, str | None]:
    """(the value, None), or (None, what is wrong) for a cell of a JSON column that starts like JSON but is
    not: said as such, where "must be a list of messages, not a string" would follow otherwise."""
    if key in _JSON_COLUMNS and cell[:1] in ("[", "{"):
        value, error = _parse_json(cell)
        return (None, error) if error is not None else (value, None)
    return cell, None


def _read_parquet(path: Path) -> Iterator[RawRecord]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"{path}: reading Parquet needs pyarrow", hint="pip install 'anytune[parquet]'"
        ) from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
    number = 0
    for batch in pf.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            number += 1
            try:
                yield RawRecord(number, value=_json_values(_drop_struct_nulls(row)))
            except ValueError as exc:
                yield RawRecord(number, error=str(exc))


def _json_values(value: Any) -> Any:
    """Parquet's typed values as the JSON a data file would hold: dates and times as ISO text, decimals as
    numbers, binary as UTF-8 text (ValueError, with the reason, for bytes that are not text)."""
    if isinstance(value, dict):
        return {k: _json_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_values(v) for v in value]
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("a binary value that is not UTF-8 text") from None
    return value


def _drop_struct_nulls(value: Any, depth: int = 0) -> Any:
    """Parquet gives every struct every field, as null where a JSON object simply had no key. Drop those
    nulls inside nested objects so that `{"role": "user", "content": "hi", "tool_calls": null}` reads like
    the JSON it came from."""
    if isinstance(value, dict):
        items = value.items() if depth == 0 else ((k, v) for k, v in value.items() if v is not None)
        return {k: _drop_struct_nulls(v, depth + 1) for k, v in items}
    if isinstance(value, list):
        return [_drop_struct_nulls(v, depth + 1) for v in value]
    return value
