"""The folder through which the backend (parent) and its training worker (child) talk.

    request.json   what to train (written by the parent before the worker starts)
    status.json    the worker's state, replaced atomically on every change
    events.jsonl   append-only log/metric events; the parent reads it from a byte offset (the poll cursor)
    worker.log     the worker's stdout and stderr
    pid            the worker's process id (written by the parent once it started the worker)
    cancel         present once a cancel was asked for
    result.json    what the job produced (written last, before the final status)
    output/        the adapter (and merged weights on request)

Files are the whole protocol, so a job keeps going, and can be followed, after the process that started it
has exited; and any later `anytune` process can pick it up.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class JobDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    request = property(lambda self: self.path / "request.json")
    status_file = property(lambda self: self.path / "status.json")
    events_file = property(lambda self: self.path / "events.jsonl")
    pid_file = property(lambda self: self.path / "pid")
    log_file = property(lambda self: self.path / "worker.log")
    cancel_file = property(lambda self: self.path / "cancel")
    result_file = property(lambda self: self.path / "result.json")
    output = property(lambda self: self.path / "output")

    def create(self, request: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.request, request)
        self.write_status("starting")

    def read_request(self) -> dict[str, Any]:
        return json.loads(self.request.read_text())

    def read_status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"state": "starting"}

    def write_status(self, state: str, **fields: Any) -> None:
        current = self.read_status() if self.status_file.exists() else {}
        current.update(fields)
        current["state"] = state
        current["updated"] = time.time()
        write_json_atomic(self.status_file, current)

    def emit(self, message: str = "", *, kind: str = "log", level: str = "info", **data: Any) -> None:
        line = json.dumps(
            {"time": time.time(), "kind": kind, "level": level, "message": message, "data": data}
        )
        with self.events_file.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()

    def read_events(self, offset: int) -> tuple[list[dict[str, Any]], int]:
        """Complete event lines after byte `offset`, and the offset after the last one read."""
        try:
            with self.events_file.open("rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
        except FileNotFoundError:
            return [], offset
        end = chunk.rfind(b"\n")
        if end < 0:
            return [], offset
        events = [json.loads(line) for line in chunk[: end + 1].splitlines() if line.strip()]
        return events, offset + end + 1

    def read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def read_result(self) -> WorkerResult | None:
        try:
            return WorkerResult.model_validate_json(self.result_file.read_text())
        except FileNotFoundError:
            return None

    def write_result(self, result: WorkerResult) -> None:
        write_json_atomic(self.result_file, result.model_dump(mode="json"))

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class WorkerResult(BaseModel):
    """What a finished worker leaves in result.json (written last, before the final status): what it
    saved, from what, and what the run measured. The backend's result() and cost read it."""

    model_config = ConfigDict(extra="forbid")

    adapter_path: str
    merged_path: str | None = None
    base_model: str
    base_model_path: str
    base_model_source: str
    adapter_type: str
    kind: Literal["adapter", "merged", "full"] = "adapter"
    method: str
    trainable_parameters: int
    steps: int
    metrics: dict[str, float] = Field(default_factory=dict)
    hardware: str
    trained_tokens: int | None = None
    wall_seconds: float | None = Field(None, description="the worker's whole run, loading included")
    peak_rss_mb: float | None = None


def write_json_atomic(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
