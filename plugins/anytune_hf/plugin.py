"""Entry point of the Hugging Face plugin: its backend, its emulator (the Hub, Jobs and AutoTrain) and its prices."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

from anytune.plugin import Backend, EmulatorInfo, EmulatorOptions, hookimpl


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    from anytune_hf.backend import HFBackend

    register(HFBackend())


def _emulator(options: EmulatorOptions) -> Any:
    from anytune_hf.emulator import HubEmulator

    return HubEmulator(api_key=options.api_key, clock=options.clock, step_seconds=options.step_seconds)


def _environment(url: str, key: str) -> dict[str, str]:
    # the emulator is the Hub, the Jobs service and the AutoTrain server at once
    return {"HF_ENDPOINT": url, "HF_TOKEN": key, "AUTOTRAIN_API": url, "HF_HUB_OFFLINE": "0"}


@hookimpl
def register_emulators(register: Callable[[EmulatorInfo], None]) -> None:
    register(
        EmulatorInfo(
            name="hf",
            build=_emulator,
            environment=_environment,
            description="the Hub (repos, uploads, downloads), Jobs that run anytune's trainer on this machine, "
            "and an AutoTrain server",
            example="examples/anywhere.yaml",
        )
    )


@hookimpl
def register_prices(register: Callable[[str, str], None]) -> None:
    register("anytune_hf/prices.yaml", resources.files("anytune_hf").joinpath("prices.yaml").read_text())
