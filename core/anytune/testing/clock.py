"""Emulator clocks: real time (optionally sped up) for people, a manual clock for tests."""

from __future__ import annotations

import threading
import time


class Clock:
    def now(self) -> float:
        raise NotImplementedError

    def on_poll(self) -> None:
        """Called when a client polls a job; a stepped clock moves forward here."""


class RealClock(Clock):
    """Wall-clock time, `speed` times faster."""

    def __init__(self, speed: float = 1.0) -> None:
        self.speed = speed
        self._start = time.monotonic()
        self._epoch = time.time()

    def now(self) -> float:
        return self._epoch + (time.monotonic() - self._start) * self.speed


class ManualClock(Clock):
    """Time moves only when told: by `advance()`, or by `tick` seconds at every poll of a job."""

    def __init__(self, start: float = 1_790_000_000.0, tick: float = 0.0) -> None:
        self._now = start
        self.tick = tick
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def on_poll(self) -> None:
        if self.tick:
            self.advance(self.tick)
