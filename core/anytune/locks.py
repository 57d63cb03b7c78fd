"""A lock that several anytune processes on one machine share: an exclusive `flock` on a file.

Used where two processes could both do what must happen once: migrating a fresh registry, uploading the
same content to a provider (each would find no earlier upload, and both would create one)."""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from anytune.settings import cache_dir


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) for the block; released if the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def named_lock(*parts: str) -> Iterator[None]:
    """A lock named by `parts` (a provider, a content hash...), kept under $ANYTUNE_HOME/cache/locks."""
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]
    with file_lock(cache_dir("locks") / f"{digest}.lock"):
        yield
