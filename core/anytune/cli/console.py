"""Shared output for the CLI: one console for results, one for messages, and how errors are shown."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape

from anytune.formatting import duration, metric, money, share
from anytune.secrets import RedactingStream

__all__ = [
    "StageProgress",
    "TransferBar",
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


PLAIN_EVERY_S = 30.0  # without a terminal: one progress line this often (ANYTUNE_PROGRESS_SECONDS)


def plain_every() -> float:
    return float(os.environ.get("ANYTUNE_PROGRESS_SECONDS") or PLAIN_EVERY_S)


class StageProgress:
    """Long work that is not training (an evaluation), told on stderr: on a terminal a spinner that says what
    is being done; without one (a log file, CI) a line when the stage changes and one every `plain_every()`
    seconds while it runs, so that minutes of generation never pass in silence.
    `with StageProgress("evaluating") as p: p(stage)`."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.stage = ""
        self.started = time.monotonic()
        self._spinner: Any = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> StageProgress:
        if err.is_terminal:  # on stderr: stdout may be a result (`anytune eval --json`)
            self._spinner = err.status(f"{self.what}...")
            self._spinner.__enter__()
        else:
            self._ticker = threading.Thread(target=self._tick, name="anytune-progress", daemon=True)
            self._ticker.start()
        return self

    def __call__(self, stage: str) -> None:
        changed, self.stage = stage != self.stage, stage
        if self._spinner is not None:
            self._spinner.update(f"{self.what} {stage}...")
        elif changed:
            self._line()

    def _line(self) -> None:
        err.print(f"  {self.what} {self.stage} ({duration(time.monotonic() - self.started)})")

    def _tick(self) -> None:
        while not self._stop.wait(plain_every()):
            self._line()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._spinner is not None:
            self._spinner.__exit__(None, None, None)


def megabytes(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


class TransferBar:
    """A file going up or down, told on stderr: on a terminal a bar; without one a line at the start, at the
    end and every `plain_every()` seconds between. `bar(name, done, total)` after each chunk."""

    def __init__(self, verb: str) -> None:
        self.verb = verb
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        self._last: dict[str, float] = {}

    def __call__(self, name: str, done: int, total: int) -> None:
        if err.is_terminal:
            self._bar(name, done, total)
            return
        now = time.monotonic()
        first = name not in self._last
        if first or done >= total or now - self._last[name] >= plain_every():
            self._last[name] = now
            err.print(
                f"  {self.verb} {escape(name)}: {share(done / total) if total else '100%'} "
                f"({megabytes(done)} of {megabytes(total)})"
            )

    def _bar(self, name: str, done: int, total: int) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        if self._progress is None:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=err,
            )
            self._progress.start()
        if name not in self._tasks:
            self._tasks[name] = self._progress.add_task(f"{self.verb} {escape(name)}", total=total)
        self._progress.update(self._tasks[name], completed=done, total=total)
        if all(t.finished for t in self._progress.tasks):
            self._progress.stop()
            self._progress, self._tasks = None, {}
