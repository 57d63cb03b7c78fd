"""The JSONL files this process has validated clean, while they are unchanged: a later pass over one (a
provider's conversion after the Client's checks, the evaluation of the test split, a quote's providers) needs
no checks, and for a small file not even a parse."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from anytune.data.readers import file_kind

if TYPE_CHECKING:
    from anytune.data.formats import DataFormat


class Report(Protocol):
    """What is kept of a validation's report (`anytune.data.validate.ValidationReport`, which imports this)."""

    format: DataFormat | None
    issues_truncated: int

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Any: ...


Key = tuple[Any, ...]  # (resolved path, size, mtime, inode)
Records = list[tuple[int, Any]]  # (line number, record)

# JSONL files validated clean in this process, while unchanged: (path, size, mtime, inode) -> the report
_CLEAN: dict[Key, Report] = {}
_CLEAN_LOCK = threading.Lock()
_CLEAN_MAX = 64
# ... and, for small ones, their records as the validation parsed them: a run's later passes (the provider's
# conversion, the evaluation of the test split) take them instead of parsing the file again. Records in
# memory take about 8x their bytes, so only files up to KEEP_BYTES are kept, KEPT_BYTES of them in all (the
# oldest forgotten first); a larger file is parsed again, never held whole. Readers never change a record
# (the plugin contract says so), so one list serves every pass.
KEEP_BYTES = 8 * 2**20
KEPT_BYTES = 32 * 2**20
_KEPT: dict[Key, Records] = {}


def file_key(path: Path) -> Key | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


def remember_clean(path: Path, report: Report, records: Records | None = None) -> None:
    """`path` holds only valid records, as `report` says (this process validated it, or one quoting the same
    job did): while it is unchanged, a pass that needs no checks or stats only parses it, or takes `records`
    (what the validation parsed) where it was small enough to keep."""
    if file_kind(path) != "jsonl" or report.issues_truncated:
        return
    key = file_key(path)
    if key is not None:
        with _CLEAN_LOCK:
            if len(_CLEAN) >= _CLEAN_MAX:
                forgotten = next(iter(_CLEAN))
                _CLEAN.pop(forgotten)
                _KEPT.pop(forgotten, None)
            _CLEAN[key] = report.model_copy(update={"stats": None})
            if records is not None and key[1] <= KEEP_BYTES:
                _KEPT.pop(key, None)
                while _KEPT and sum(k[1] for k in _KEPT) + key[1] > KEPT_BYTES:
                    _KEPT.pop(next(iter(_KEPT)))
                _KEPT[key] = records


def keepable(path: Path) -> bool:
    """Whether a validation pass over `path` keeps its records (a small JSONL file)."""
    try:
        return file_kind(path) == "jsonl" and path.stat().st_size <= KEEP_BYTES
    except OSError:
        return False


def known_clean(path: Path, format: DataFormat | None) -> Any:
    key = file_key(path)
    known = _CLEAN.get(key) if key is not None else None
    if known is None or (format is not None and known.format is not format):
        return None
    return known


def kept_records(key: Key) -> Records | None:
    """The records the validation of the file `key` names kept, if it was small enough to keep them."""
    return _KEPT.get(key)
