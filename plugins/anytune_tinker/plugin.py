"""Entry point of the Tinker plugin: the `tinker` backend (a client-side training loop), the emulator of Tinker's
training API it is tested against, and Tinker's prices."""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import resources
from typing import Any

from anytune.plugin import Backend, EmulatorInfo, EmulatorOptions, UsageError, hookimpl

MODELS_VARIABLE = "ANYTUNE_TINKER_EMULATOR_MODELS"  # "name=path,name=path": the base models it serves


def emulator_models() -> dict[str, str]:
    """The base models `anytune emulate tinker` serves under other names than their folders (a job that names
    a local model folder is served that folder as it is): `name=path` pairs."""
    raw = os.environ.get(MODELS_VARIABLE, "")
    pairs = [p.partition("=") for p in raw.split(",") if p.strip()]
    if any(not name or not path for name, _, path in pairs):
        raise UsageError(
            f"the Tinker emulator trains real (small) models: name them in {MODELS_VARIABLE}",
            hint=f"{MODELS_VARIABLE}='my/tiny=/path/to/a/hf/model/folder' anytune emulate tinker",
        )
    return {name.strip(): path.strip() for name, _, path in pairs}


def _emulator(options: EmulatorOptions) -> Any:
    from anytune_tinker.emulator import TinkerEmulator

    return TinkerEmulator(api_key=options.api_key, clock=options.clock, models=emulator_models())


def _environment(url: str, key: str) -> dict[str, str]:
    # the SDK takes only keys that start with "tml-"; the emulator accepts its key with or without it
    return {"TINKER_BASE_URL": url, "TINKER_API_KEY": key if key.startswith("tml-") else f"tml-{key}"}


@hookimpl
def register_emulators(register: Callable[[EmulatorInfo], None]) -> None:
    register(
        EmulatorInfo(
            name="tinker",
            build=_emulator,
            environment=_environment,
            description="Tinker's training API (sessions, futures, forward_backward, optim_step, save/load "
            "state, sampling) on a real small model with LoRA, on CPU",
        )
    )


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    from anytune_tinker.backend import TinkerBackend

    register(TinkerBackend())


@hookimpl
def register_prices(register: Callable[[str, str], None]) -> None:
    register(
        "anytune_tinker/prices.yaml", resources.files("anytune_tinker").joinpath("prices.yaml").read_text()
    )
