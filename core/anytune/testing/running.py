"""A plugin's emulator, found by name through `register_emulators` and served on 127.0.0.1 with the
environment its backend reads pointed at it: for tests, the conformance suite and rehearsals alike."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block, and put back what was there."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def emulated(name: str, *, api_key: str, tick: float = 0.0, step_seconds: float = 1.0) -> Iterator[Any]:
    """`with emulated("fireworks", api_key=KEY, tick=3.0) as emu:` the emulator a plugin registered as `name`,
    on a free port, its clock moving `tick` seconds at each poll of a job, and the variables from its
    `environment(url, key)` set until the block ends. Yields the emulator (faults, recorder, state)."""
    from anytune.hookspecs import EmulatorOptions
    from anytune.plugins import get_plugin_manager
    from anytune.testing.clock import ManualClock
    from anytune.testing.server import EmulatorServer

    offered = get_plugin_manager().emulators()
    if name not in offered:
        raise LookupError(f"no emulator named {name!r}; installed: {', '.join(sorted(offered)) or 'none'}")
    info = offered[name]
    emulator = info.build(
        EmulatorOptions(api_key=api_key, clock=ManualClock(tick=tick), step_seconds=step_seconds)
    )
    try:
        with EmulatorServer(emulator.app) as server, environment(info.environment(server.url, api_key)):
            yield emulator
    finally:
        close_emulator(emulator)


def close_emulator(emulator: Any) -> None:
    """Let an emulator that runs work of its own (Hugging Face's runs jobs as processes) stop it: its
    `close()`, if it has one."""
    close = getattr(emulator, "close", None)
    if callable(close):
        close()
