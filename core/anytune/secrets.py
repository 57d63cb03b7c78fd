"""API keys: read from the environment, never written anywhere.

Every key a backend reads through `secret_from_env` is remembered for this process, and `redact` blanks it
out of any text. The registry passes event messages, event data and job errors through `redact` before
writing them, so a provider error that echoes a key cannot leak it into the database or the CLI.
"""

from __future__ import annotations

import os
from typing import Any

from anytune.errors import UsageError

_known: set[str] = set()
MASK = "***"


def register_secret(value: str) -> None:
    if value and len(value) >= 6:
        _known.add(value)


def secret_from_env(*names: str, what: str) -> str:
    """The first of the environment variables `names` that is set, remembered for redaction."""
    for name in names:
        value = os.environ.get(name)
        if value:
            register_secret(value)
            return value
    raise UsageError(
        f"no {what}: set {' or '.join(names)}",
        hint="keys are read from the environment only; anytune never stores them",
    )


def redact(value: Any) -> Any:
    """`value` (a string, or a JSON-like structure of them) with every known secret masked."""
    if not _known:
        return value
    if isinstance(value, str):
        for secret in _known:
            if secret in value:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
