"""Every test gets its own ANYTUNE_HOME; `emulator` serves the plugin's Fireworks emulator on 127.0.0.1
(found through the plugin's `register_emulators`, as `anytune emulate fireworks` finds it) with the
environment pointed at it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anytune.testing import emulated

KEY = "fw-emulator-test-0123456789abcdef"
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def anytune_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "anytune-home"
    monkeypatch.setenv("ANYTUNE_HOME", str(home))
    monkeypatch.setenv("ANYTUNE_POLL_INTERVAL", "0")
    monkeypatch.delenv("ANYTUNE_DATABASE_URL", raising=False)
    return home


@pytest.fixture
def emulator() -> Iterator[Any]:
    with emulated("fireworks", api_key=KEY, tick=3.0) as emu:
        yield emu
