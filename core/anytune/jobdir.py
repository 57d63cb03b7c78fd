"""The folder through which a backend (parent) and the worker process it starts (child) talk: the local
trainer, and client-side training loops (Tinker). A plugin reaches it as `anytune.plugin.JobDir`.

    request.json   what to train (written by the parent before the worker starts)
    status.json    the worker's state, replaced atomically on every change
    events.jsonl   append-only log/metric events; the parent reads it from a byte offset (the poll cursor)
    worker.log     the worker's stdout and stderr
    pid            the worker's process id (written by the parent once it started the worker)
    cancel         present once a cancel was asked for
    result.json    what the job produced (written last, before the final status)
    output/        what the worker saved (the local trainer's adapter and merged weights)

Files are the whole protocol, so a job keeps going, and can be followed, after the process that started it
has exited; and any later `anytune` process can pick it up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from anytune.hookspecs import Event, EventKind

CANCEL_GRACE_S = 30.0
ACTIVE_STATES = frozenset({"starting", "loading", "training", "saving", "running"})


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

    def read_json(self, name: str) -> Any | None:
        """A JSON file of the folder (result.json, a worker's own state), or None while there is none."""
        try:
            return json.loads((self.path / name).read_text())
        except FileNotFoundError:
            return None

    def write_json(self, name: str, data: Any) -> None:
        """A JSON file of the folder, replaced atomically: a reader sees the old one or the new one."""
        write_json_atomic(self.path / name, data)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------------------- the worker process

    def start_worker(
        self, command: Sequence[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start the worker detached from the terminal (Ctrl-C does not kill the job; a cancel does), its
        output in worker.log, its pid in the folder: any later process can follow or stop it."""
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                list(command),
                cwd=self.path,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dict(env) if env is not None else None,
            )
        self.pid_file.write_text(str(proc.pid))
        return proc

    def worker_alive(self, proc: subprocess.Popen[bytes] | None = None) -> bool:
        if proc is not None:
            return proc.poll() is None
        return pid_alive(self.read_pid())

    def fail_if_gone(self, alive: bool) -> dict[str, Any]:
        """The status; a worker that is gone while its status says it works is failed here, with the tail of
        its log (it was killed, or crashed before it could say so)."""
        status = self.read_status()
        if status["state"] in ACTIVE_STATES and not alive:
            status = self.read_status()  # it may have finished between the two reads
            if status["state"] in ACTIVE_STATES:
                tail = self.log_tail(5).strip().replace("\n", " | ")
                error = f"the worker exited without a result: {tail or 'no output'}"
                self.emit(error, kind="status", level="error")
                self.write_status("failed", error=error)
                status = self.read_status()
        return status

    def stop_worker(self, alive: Any, grace_s: float = CANCEL_GRACE_S) -> None:
        """SIGTERM to the worker's process group, then SIGKILL after `grace_s`; `alive()` says whether it
        still runs."""
        pid = self.read_pid()
        if not pid or not alive():
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and alive():
            time.sleep(0.2)
        if alive():
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.emit(f"did not stop within {grace_s:.0f} s: killed", kind="status", level="warning")

    def events_since(self, cursor: str | None) -> tuple[list[Event], dict[str, float], str]:
        """The events after the poll cursor (a byte offset), the latest value of each metric among them, and
        the next cursor."""
        raw, offset = self.read_events(int(cursor or 0))
        events = [
            Event(
                time=e["time"],
                kind=EventKind(e.get("kind", "log")),
                level=e.get("level", "info"),
                message=e.get("message", ""),
                data=e.get("data", {}),
            )
            for e in raw
        ]
        metrics: dict[str, float] = {}
        for e in events:
            if e.kind is EventKind.METRIC:
                metrics.update({k: v for k, v in e.data.items() if isinstance(v, int | float)})
        return events, metrics, str(offset)


def pid_alive(pid: int | None) -> bool:
    """Whether `pid` runs and is not a zombie (a finished child not yet reaped still has a pid)."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False


def write_json_atomic(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
