"""Shared output for the CLI: one console for results, one for messages, and how errors are shown."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape

from anytune.formatting import duration, metric, money, share
from anytune.secrets import RedactingStream

__all__ = [
    "duration",
    "err",
    "metric",
    "money",
    "out",
    "print_error",
    "print_json",
    "share",
    "status_text",
    "when",
]

# Everything printed passes through the redaction filter: a provider error that echoes a key stays masked.
out = Console(file=RedactingStream("stdout"), highlight=False, soft_wrap=True)  # type: ignore[arg-type]
err = Console(file=RedactingStream("stderr"), highlight=False, soft_wrap=True)  # type: ignore[arg-type]


def print_error(exc: Any) -> None:
    """An AnytuneError as the user should see it: the message, each detail, then what to do."""
    err.print(f"[bold red]error:[/] {escape(exc.message)}")
    for detail in getattr(exc, "details", []):
        err.print(f"  [red]•[/] {escape(detail)}")
    if getattr(exc, "hint", None):
        err.print(f"[dim]hint:[/] {escape(exc.hint)}")


def print_json(data: Any) -> None:
    """Machine-readable output: plain JSON on stdout, nothing else (secrets masked)."""
    print_plain(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def print_plain(text: str, end: str = "\n") -> None:
    """Text for scripts (JSON, CSV) on stdout, as it is but for masked secrets."""
    RedactingStream("stdout").write(text + end)


def when(value: datetime | None) -> str:
    if value is None:
        return "-"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


STATUS_STYLE = {
    "pending": "dim",
    "validating": "cyan",
    "queued": "cyan",
    "running": "bold cyan",
    "paused": "yellow",
    "succeeded": "bold green",
    "failed": "bold red",
    "cancelled": "yellow",
}


def status_text(status: str, provider_status: str | None = None) -> str:
    style = STATUS_STYLE.get(status, "")
    raw = f" [dim]({escape(provider_status)})[/]" if provider_status and provider_status != status else ""
    return f"[{style}]{status}[/]{raw}"
