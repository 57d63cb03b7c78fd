"""Fault injection shared by the emulators.

A fault matches requests by method and path (a regular expression) and fires `times` times:
- `status`: answer with that HTTP status and the provider's error body (with `retry_after_ms` /
  `retry_after` headers if given), without doing the work;
- `delay`: wait that many seconds before answering (slow responses, client timeouts);
- `drop`: do the work, then break the connection before the answer is complete (a create whose answer
  is lost).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Fault:
    method: str = "*"
    path: str = ".*"
    status: int | None = None
    times: int = 1
    delay: float = 0.0
    drop: bool = False
    retry_after_ms: int | None = None
    retry_after: float | None = None
    message: str | None = None
    code: str | None = None
    fired: int = field(default=0)

    def matches(self, method: str, path: str) -> bool:
        return (self.method == "*" or self.method.upper() == method.upper()) and re.fullmatch(
            self.path, path
        ) is not None


class Faults:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault | None = None, **kwargs: Any) -> Fault:
        fault = fault or Fault(**kwargs)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """The first armed fault matching this request, counted as fired."""
        with self._lock:
            for fault in self._faults:
                if fault.fired < fault.times and fault.matches(method, path):
                    fault.fired += 1
                    return fault
        return None
