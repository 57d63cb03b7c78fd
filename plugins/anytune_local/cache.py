"""Model folders built once (a dequantized GGUF, the tiny model) and shared by every process.

One process builds; the others wait on a lock file and reuse the result. The folder appears complete or
not at all: it is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def build_once(target: Path, build: Callable[[Path], None], *, marker: str = "config.json") -> Path:
    """`target`, calling `build(tmp_folder)` to make it if no complete copy exists yet (one holding
    `marker`)."""
    if (target / marker).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (target / marker).exists():  # built by another process while we waited
                return target
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
            try:
                build(tmp)
                os.replace(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target
