"""API keys: read from the environment, never written anywhere, never shown.

Every key a backend reads through `secret_from_env`, and the value of every variable a plugin declares as
secret (`Backend.secrets`, plus the common ones below) whether or not this job reads it, is remembered for
this process. `redact` blanks them out of any text, and out of any run of 12 or more characters of one of
them (a provider that echoes the start of a key, or a key cut in a log line). The registry passes event
messages, event data and job errors through it before writing them; the CLI's consoles pass everything
they print through it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from anytune.errors import UsageError

_known: set[str] = set()
_names: set[str] = set()  # variables whose value is a secret whenever it is set
MASK = "***"
MIN_SECRET = 6
MIN_PIECE = 12  # a run this long of a key is taken for the key (shorter ones match ordinary words)
# Variables that hold a secret whatever the plugin: read from the environment when plugins load.
COMMON_SECRETS = (
    "OPENAI_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "TOGETHER_API_KEY",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "WANDB_API_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "FIREWORKS_API_KEY",
    "ANYTUNE_SERVE_API_KEY",
    "ANYTUNE_TOKEN",
)


def register_secret(value: str) -> None:
    if value and len(value) >= MIN_SECRET:
        _known.add(value)


def register_env_secrets(names: Iterable[str]) -> None:
    """These environment variables hold secrets: their values, now and if set later, are masked."""
    _names.update(names)
    _read_env()


def _read_env() -> None:
    for name in _names:
        value = os.environ.get(name)
        if value and value not in _known:
            register_secret(value)


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


def _redact_text(text: str) -> str:
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
        if len(secret) < MIN_PIECE * 2:
            continue
        for start in range(len(secret) - MIN_PIECE + 1):
            piece = secret[start : start + MIN_PIECE]
            at = text.find(piece)
            while at != -1:
                end = at + MIN_PIECE  # grow the match as far as it follows the key
                offset = start + MIN_PIECE
                while end < len(text) and offset < len(secret) and text[end] == secret[offset]:
                    end, offset = end + 1, offset + 1
                text = text[:at] + MASK + text[end:]
                at = text.find(piece, at + len(MASK))
    return text


def redact(value: Any) -> Any:
    """`value` (a string, or a JSON-like structure of them) with every known secret masked."""
    _read_env()
    return _redact_value(value) if _known else value


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(v) for v in value]
    return value


class RedactingStream:
    """sys.stdout or sys.stderr (looked up at each write, so captures and redirections apply) with every
    known secret masked: what the CLI prints goes through it."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def _stream(self) -> TextIO:
        return getattr(sys, self._name)

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
