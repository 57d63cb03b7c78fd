"""Entry point of the Together plugin: its backend, its emulator and its prices."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

from anytune.plugin import Backend, EmulatorInfo, EmulatorOptions, hookimpl


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    from anytune_together.backend import TogetherBackend

    register(TogetherBackend())


def _emulator(options: EmulatorOptions) -> Any:
    from anytune_together.emulator import TogetherEmulator

    return TogetherEmulator(api_key=options.api_key, clock=options.clock, step_seconds=options.step_seconds)


@hookimpl
def register_emulators(register: Callable[[EmulatorInfo], None]) -> None:
    register(
        EmulatorInfo(
            name="together",
            build=_emulator,
            environment=lambda url, key: {"TOGETHER_BASE_URL": url, "TOGETHER_API_KEY": key},
            description="Together files (signed-URL upload), fine-tunes, downloads and chat completions",
            example="examples/together-sft.yaml",
        )
    )


@hookimpl
def register_prices(register: Callable[[str, str], None]) -> None:
    register(
        "anytune_together/prices.yaml",
        resources.files("anytune_together").joinpath("prices.yaml").read_text(),
    )
