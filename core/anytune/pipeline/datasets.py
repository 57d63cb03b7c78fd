"""Datasets kept by the service: received as a stream (hashed while the bytes arrive, written to a part file,
never held in memory), checked with the same validator as `anytune validate`, then kept in the storage
layer under the SHA-256 of their bytes. A job names one as `dataset:sha256:<hex>`; `local_path` gives the
file to read on whatever machine runs the job.

A refused file is not kept (the part file is removed); a process killed while receiving leaves only a part
file, which a resumed upload continues and a new upload of the same file replaces.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from anytune.errors import DataError, NotFoundError, UsageError
from anytune.jobs import utcnow
from anytune.registry import Registry
from anytune.registry.datasets import StoredDataset, add_stored, get_stored
from anytune.settings import anytune_home
from anytune.storage import Storage, open_storage

if TYPE_CHECKING:
    from anytune.data.validate import ValidationReport

PREFIX = "dataset:"
_ID = re.compile(r"sha256:[0-9a-f]{64}")
DEFAULT_MAX_UPLOAD = 50 * 2**30  # bytes; ANYTUNE_MAX_UPLOAD_BYTES sets the operator's own


def is_dataset_ref(value: str | None) -> bool:
    return bool(value) and str(value).startswith(PREFIX)


def dataset_id(value: str) -> str:
    """`sha256:<hex>` from `dataset:sha256:<hex>` (or from the id itself), refused if it is not one."""
    raw = value.removeprefix(PREFIX)
    if not _ID.fullmatch(raw):
        raise UsageError(
            f"{value!r} is not a dataset id",
            hint="a dataset is named dataset:sha256:<64 hex digits>, as `anytune datasets list` shows",
        )
    return raw


def blob_key(dataset: str) -> str:
    return f"datasets/{dataset_id(dataset).removeprefix('sha256:')}"


def max_upload_bytes() -> int:
    raw = os.environ.get("ANYTUNE_MAX_UPLOAD_BYTES", "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_MAX_UPLOAD


def uploads_dir() -> Path:
    """Part files of uploads on their way (on the receiving server's disk, never in the storage layer)."""
    folder = anytune_home() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sha256_of_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """`sha256:<hex>` of a file, read in 1 MB chunks (`on_bytes(n)` after each: a progress bar)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return f"sha256:{h.hexdigest()}"


class TooLarge(UsageError):
    """An upload over the operator's limit, or over the length it announced."""

    http_status = 413


class InUse(UsageError):
    """A dataset that a job which has not ended still reads."""

    http_status = 409


class Busy(UsageError):
    """An upload that another request is writing (a client's retry before the server saw its drop)."""

    http_status = 409


class WrongOffset(UsageError):
    """A part sent for another offset than the one the server has (the client resumes from the server's)."""

    http_status = 409

    def __init__(self, offset: int, sent: int) -> None:
        super().__init__(
            f"the upload is at byte {offset:,}, not {sent:,}",
            hint="ask for the upload's offset (GET) and send the bytes from there",
        )
        self.offset = offset


class Hashes:
    """The running SHA-256 of each upload this process is receiving, so a resumed upload does not read its
    first part again; where this process has none (a restart, another server), the part file is read once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, tuple[int, hashlib._Hash]] = {}

    def at(self, upload_id: str, part: Path) -> hashlib._Hash:
        size = part.stat().st_size if part.exists() else 0
        with self._lock:
            known = self._running.pop(upload_id, None)
        if known is not None and known[0] == size:
            return known[1]
        h = hashlib.sha256()
        if size:
            with part.open("rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        return h

    def keep(self, upload_id: str, offset: int, h: hashlib._Hash) -> None:
        with self._lock:
            self._running[upload_id] = (offset, h)

    def forget(self, upload_id: str) -> None:
        with self._lock:
            self._running.pop(upload_id, None)


HASHES = Hashes()


async def receive(
    chunks: AsyncIterator[bytes], part: Path, h: hashlib._Hash, *, offset: int, limit: int, what: str
) -> int:
    """Append the request's bytes to `part` from `offset` on, hashing them as they come; the new offset.
    What arrived before a dropped connection stays written (the next request goes on from there)."""
    from starlette.concurrency import run_in_threadpool

    with part.open("r+b" if part.exists() else "wb") as f:
        try:  # one request writes an upload at a time (on any number of server processes)
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy("another request is sending this upload's bytes now") from None
        size = os.fstat(f.fileno()).st_size
        if size != offset:  # another request wrote since this one looked
            raise WrongOffset(size, offset)
        f.seek(offset)
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                if offset + len(chunk) > limit:
                    raise TooLarge(f"the upload is over {what} ({limit:,} bytes)")
                await run_in_threadpool(f.write, chunk)
                h.update(chunk)
                offset += len(chunk)
        finally:
            f.flush()
            os.fsync(f.fileno())
    return offset


def keep(
    registry: Registry,
    part: Path,
    digest: str,
    name: str,
    *,
    expected: str | None = None,
    storage: Storage | None = None,
) -> StoredDataset:
    """A received file checked and kept (or refused, and removed): the same bytes kept once."""
    try:
        if expected and expected != digest:
            raise DataError(
                f"{name}: the bytes received hash to {digest}, not {expected}",
                hint="the file changed while it was sent, or the upload was corrupted: send it again",
            )
        try:
            return get_stored(registry, digest)
        except NotFoundError:  # not kept in this project yet
            pass
        report = _validated(part, name)
        storage = storage or open_storage()
        key = blob_key(digest)
        if storage.size(key) != part.stat().st_size:
            storage.put_file(key, part)
        assert report.format is not None and report.stats is not None and report.fingerprint
        dataset = StoredDataset(
            id=digest,
            name=name,
            size=part.stat().st_size,
            format=report.format.value,
            rows=report.valid,
            tokens=report.stats.tokens_total,
            fingerprint=report.fingerprint,
            created_at=utcnow(),
        )
        return add_stored(registry, dataset)
    finally:
        part.unlink(missing_ok=True)


def _validated(part: Path, name: str) -> ValidationReport:
    from anytune.data.validate import require_valid, validate_file

    report = validate_file(part, max_issues=200)
    try:
        require_valid(report, what="the upload")
    except DataError as exc:  # say the file's name, not the part file's
        shown = str(part)
        raise DataError(
            exc.message.replace(shown, name),
            hint="nothing was kept; fix the lines named and upload the file again",
            details=[d.replace(shown, name) for d in exc.details],
        ) from None
    return report


def expire_uploads(registry: Registry, hours: float | None = None) -> list[str]:
    """Uploads not finished within `hours` (`$ANYTUNE_UPLOAD_EXPIRY_HOURS`, 24 by default) are forgotten,
    with their part files: the ids forgotten."""
    from datetime import timedelta

    from anytune.registry.datasets import remove_upload, stale_uploads

    if hours is None:
        raw = os.environ.get("ANYTUNE_UPLOAD_EXPIRY_HOURS", "").strip()
        hours = float(raw) if raw.replace(".", "", 1).isdigit() else 24.0
    cutoff = utcnow() - timedelta(hours=hours)
    stale = stale_uploads(registry, cutoff)
    for upload_id in stale:
        HASHES.forget(upload_id)
        (uploads_dir() / f"{upload_id}.part").unlink(missing_ok=True)
        remove_upload(registry, upload_id)
    for part in uploads_dir().glob("*.part"):  # one-request uploads cut short by a crash have no row
        if not part.name.startswith("up-") and part.stat().st_mtime < cutoff.timestamp():
            part.unlink(missing_ok=True)
    return stale


def forget(registry: Registry, dataset: str, *, storage: Storage | None = None) -> None:
    """Forget a project's dataset, refused while a job that has not ended reads it; its bytes go when no
    project keeps them any more."""
    from anytune.registry.datasets import jobs_using, remove_stored

    found = get_stored(registry, dataset_id(dataset))
    using = jobs_using(registry, found.id)
    if using:
        raise InUse(
            f"dataset {found.id} ({found.name}) is read by {len(using)} job(s) that have not ended: "
            + ", ".join(using[:5]),
            hint="cancel them or wait until they end",
        )
    if remove_stored(registry, found.id):
        (storage or open_storage()).delete(blob_key(found.id))


def keep_file(
    registry: Registry,
    path: Path,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> StoredDataset:
    """A file on this machine kept as a dataset (in-process: no server between), the same bytes once;
    `on_progress(bytes_read, size)` while it is hashed."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    size, done = path.stat().st_size, [0]

    def seen(n: int) -> None:
        done[0] += n
        if on_progress is not None:
            on_progress(done[0], size)

    digest = sha256_of_file(path, seen)
    try:
        return get_stored(registry, digest)
    except NotFoundError:
        pass
    part = uploads_dir() / f"{uuid.uuid4().hex}.part"
    try:
        os.link(path, part)
    except OSError:
        shutil.copyfile(path, part)
    return keep(registry, part, sha256_of_file(part), path.name, expected=digest)


def local_path(registry: Registry, ref: str, *, storage: Storage | None = None) -> Path:
    """The file to read for `dataset:sha256:<hex>`: the stored blob itself, or its copy fetched from a
    bucket. A dataset the project does not have is not found, whoever else has its bytes."""
    found = get_stored(registry, dataset_id(ref))
    storage = storage or open_storage()
    try:
        return storage.local_file(blob_key(found.id))
    except FileNotFoundError:
        raise DataError(
            f"dataset {found.id} ({found.name}) is recorded but its bytes are not in the storage at "
            f"{storage.url}",
            hint="check ANYTUNE_STORAGE_URL (every server and worker must name the same storage), "
            "or upload the file again",
        ) from None


__all__ = [
    "HASHES",
    "PREFIX",
    "Busy",
    "InUse",
    "TooLarge",
    "WrongOffset",
    "blob_key",
    "dataset_id",
    "expire_uploads",
    "forget",
    "is_dataset_ref",
    "keep",
    "keep_file",
    "local_path",
    "max_upload_bytes",
    "receive",
    "sha256_of_file",
    "uploads_dir",
]
