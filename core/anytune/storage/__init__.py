"""One place for blobs (uploaded datasets, model archives): a folder under `$ANYTUNE_HOME` by default, or
any S3-compatible bucket with `ANYTUNE_STORAGE_URL=s3://bucket/prefix` (endpoint from `AWS_ENDPOINT_URL` for
MinIO, R2 and the like). The registry says what a blob is; the storage only keeps its bytes under a key.

Keys are written whole or not at all (a temporary name renamed into place, or one S3 put), so a reader never
sees half a blob, and a process killed while writing leaves nothing under the key. Workers on other
machines read through the same URL, never through the server's disk.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from anytune.errors import UsageError
from anytune.settings import anytune_home

CHUNK = 1 << 20


class Storage(Protocol):
    """What anytune asks of a place that keeps blobs."""

    url: str

    def put_file(self, key: str, source: Path) -> None:
        """Keep `source`'s bytes under `key`, whole or not at all (replacing what was there)."""
        ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int | None:
        """The blob's size in bytes, None if there is none under `key`."""
        ...

    def local_file(self, key: str) -> Path:
        """A file on this machine with the blob's bytes, to be read (not written): the blob itself in a
        folder storage, a copy fetched once into the cache from a bucket."""
        ...

    def read_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes from `start` to `end` (exclusive; None: the end), in chunks, for a resumable download."""
        ...

    def delete(self, key: str) -> None:
        """Forget the blob (nothing happens if there is none)."""
        ...


def storage_url() -> str:
    return os.environ.get("ANYTUNE_STORAGE_URL", "").strip() or str(anytune_home() / "storage")


def open_storage(url: str | None = None) -> Storage:
    """The storage at `url` (default `$ANYTUNE_STORAGE_URL`, else `$ANYTUNE_HOME/storage`)."""
    url = url or storage_url()
    if url.startswith("s3://"):
        from anytune.storage.s3 import S3Storage

        return S3Storage(url)
    if "://" in url and not url.startswith("file://"):
        raise UsageError(
            f"ANYTUNE_STORAGE_URL {url!r}: only a folder or s3://bucket/prefix is known",
            hint="for MinIO, R2 and other S3-compatible stores use s3:// with AWS_ENDPOINT_URL",
        )
    from anytune.storage.folder import FolderStorage

    return FolderStorage(Path(url.removeprefix("file://")))


def check_key(key: str) -> str:
    """Keys are anytune's own (`datasets/<hex>`, `models/<hex>.tar`): plain parts, never `..`."""
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") or p.startswith(".") for p in parts) or "\\" in key:
        raise ValueError(f"not a storage key: {key!r}")
    return key


__all__ = ["CHUNK", "Storage", "check_key", "open_storage", "storage_url"]
