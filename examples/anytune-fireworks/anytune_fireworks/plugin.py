"""Entry point of the Fireworks plugin: its backend, its emulator and its prices."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

from anytune.plugin import Backend, EmulatorInfo, EmulatorOptions, hookimpl

EMULATED_ACCOUNT = "anytune-emulated"


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    from anytune_fireworks.backend import FireworksBackend

    register(FireworksBackend())


def _emulator(options: EmulatorOptions) -> Any:
    from anytune_fireworks.emulator import FireworksEmulator

    return FireworksEmulator(api_key=options.api_key, clock=options.clock, step_seconds=options.step_seconds)


@hookimpl
def register_emulators(register: Callable[[EmulatorInfo], None]) -> None:
    register(
        EmulatorInfo(
            name="fireworks",
            build=_emulator,
            environment=lambda url, key: {
                "FIREWORKS_BASE_URL": url,
                "FIREWORKS_API_KEY": key,
                "FIREWORKS_ACCOUNT_ID": EMULATED_ACCOUNT,
            },
            description="Fireworks datasets, supervised fine-tuning and DPO jobs, chat completions",
            example="examples/anywhere.yaml",
        )
    )


@hookimpl
def register_prices(register: Callable[[str, str], None]) -> None:
    register(
        "anytune_fireworks/prices.yaml",
        resources.files("anytune_fireworks").joinpath("prices.yaml").read_text(),
    )
