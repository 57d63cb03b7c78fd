"""Running a Python grader's `grade(sample, item)` in a process of its own (`_child.py`), one answer at a time,
with a wall-clock limit per answer on this side and the child's own limits on the other.

The child starts with an empty environment (no API key, no token reaches a grader) in the grader's folder.
One process serves many answers; a process that times out is killed and the next answer starts a new one.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from anytune.errors import UsageError

_CHILD = Path(__file__).with_name("_child.py")


class GraderFailed(UsageError):
    """A Python grader could not score an answer: it raised, returned no score in [0, 1], ran past its time
    or memory limit, or did something the sandbox refuses. The user's grader is at fault: a usage error
    (exit 2, HTTP 400)."""


class PythonSandbox:
    """`with PythonSandbox(source=..., ...) as box: box.score(sample, item)`."""

    def __init__(
        self,
        *,
        source: str | None = None,
        path: str | Path | None = None,
        entrypoint: str = "grade",
        timeout_s: float = 10.0,
        memory_mb: int = 512,
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if path is not None:
            self.path: Path | None = Path(path).resolve()
            if not self.path.is_file():
                raise GraderFailed(f"the python grader's file {path} does not exist")
            self.folder = self.path.parent
        else:
            self.path = None
            self._tmp = tempfile.TemporaryDirectory(prefix="anytune-grader-")
            self.folder = Path(self._tmp.name)
        self.source, self.entrypoint = source, entrypoint
        self.timeout_s, self.memory_mb = timeout_s, memory_mb
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    def __enter__(self) -> PythonSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a grader used as a metric is dropped, not closed: its process goes with it
        try:
            self.close()
        except Exception:  # at interpreter exit, the modules it needs may be gone
            pass

    def close(self) -> None:
        self._stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
                if stream is not None:
                    stream.close()
            self._proc = None

    def _start(self) -> None:
        env = {"PATH": os.defpath, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        self._proc = subprocess.Popen(
            [sys.executable, "-I", str(_CHILD)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            cwd=self.folder,
            env=env,
        )
        self._lines = queue.Queue()
        threading.Thread(target=self._read, args=(self._proc, self._lines), daemon=True).start()
        settings = {
            "folder": str(self.folder),
            "path": str(self.path) if self.path else None,
            "source": self.source,
            "entrypoint": self.entrypoint,
            "memory_mb": self.memory_mb,
            "cpu_s": 3600,  # a backstop: the time limit per answer is kept here
        }
        answer = self._exchange(settings, what="loading the grader")
        if "error" in answer:
            self._stop()
            raise GraderFailed(answer["error"], hint="run it with `anytune grade` to see it fail on one line")

    @staticmethod
    def _read(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def _exchange(self, message: dict[str, Any], *, what: str) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(message, ensure_ascii=False) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the child is gone: the read below says why
        try:
            line = self._lines.get(timeout=self.timeout_s)
        except queue.Empty:
            self._stop()
            raise GraderFailed(
                f"the python grader ran past its time limit ({self.timeout_s:g} s) {what}",
                hint="raise `timeout_s`, or make grade() faster",
            ) from None
        if line is None:
            code = self._proc.wait()
            err = (self._proc.stderr.read() if self._proc.stderr else "")[-800:].strip()
            self._stop()
            raise GraderFailed(
                f"the python grader's process ended (exit {code}) {what}" + (f": {err}" if err else "")
            )
        return json.loads(line)  # type: ignore[no-any-return]

    def score(self, sample: dict[str, Any], item: dict[str, Any]) -> float:
        if self._proc is None:
            self._start()
        answer = self._exchange({"sample": sample, "item": item}, what="on an answer")
        if "error" in answer:
            raise GraderFailed(f"the python grader failed: {answer['error']}")
        return float(answer["score"])
