"""Absolute paths for the files users name, whatever those names point at."""

from __future__ import annotations

import os
from pathlib import Path


def resolved(path: str | Path) -> Path:
    """`Path.resolve()`, except for a symbolic link that points back to itself: Python 3.11 and 3.12 raise
    RuntimeError there (3.13 returns the path), which reached users as an "internal error". Such a path is made
    absolute as written, and whatever opens it says what is wrong with it, with its name."""
    path = Path(path)
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return Path(os.path.abspath(path))
