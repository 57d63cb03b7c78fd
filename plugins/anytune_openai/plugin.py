"""Entry point of the OpenAI plugin: its backend, its emulator and its prices."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

from anytune.plugin import Backend, EmulatorInfo, EmulatorOptions, hookimpl


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    from anytune_openai.backend import OpenAIBackend

    register(OpenAIBackend())


def _emulator(options: EmulatorOptions) -> Any:
    from anytune_openai.emulator import OpenAIEmulator

    return OpenAIEmulator(api_key=options.api_key, clock=options.clock, step_seconds=options.step_seconds)


@hookimpl
def register_emulators(register: Callable[[EmulatorInfo], None]) -> None:
    register(
        EmulatorInfo(
            name="openai",
            build=_emulator,
            environment=lambda url, key: {"OPENAI_BASE_URL": f"{url}/v1", "OPENAI_API_KEY": key},
            description="OpenAI files, fine-tuning jobs and chat completions",
            example="examples/openai-sft.yaml",
        )
    )


@hookimpl
def register_prices(register: Callable[[str, str], None]) -> None:
    register(
        "anytune_openai/prices.yaml", resources.files("anytune_openai").joinpath("prices.yaml").read_text()
    )
