"""Entry point of the OpenAI plugin: two backends on one SDK (OpenAI, and Azure OpenAI), their emulators and
their prices."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

from anytune.plugin import Backend, EmulatorInfo, EmulatorOptions, hookimpl


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    from anytune_openai.azure import AzureOpenAIBackend
    from anytune_openai.backend import OpenAIBackend

    register(OpenAIBackend())
    register(AzureOpenAIBackend())


def _emulator(options: EmulatorOptions) -> Any:
    from anytune_openai.emulator import OpenAIEmulator

    return OpenAIEmulator(api_key=options.api_key, clock=options.clock, step_seconds=options.step_seconds)


def _azure_emulator(options: EmulatorOptions) -> Any:
    from anytune_openai.azure_emulator import AzureOpenAIEmulator

    return AzureOpenAIEmulator(
        api_key=options.api_key, clock=options.clock, step_seconds=options.step_seconds, auto_deploy=True
    )


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
    register(
        EmulatorInfo(
            name="azure-openai",
            build=_azure_emulator,
            environment=lambda url, key: {
                "AZURE_OPENAI_ENDPOINT": url,
                "AZURE_OPENAI_API_KEY": key,
                "OPENAI_API_VERSION": "2025-04-01-preview",
            },
            description="Azure OpenAI fine-tuning (api-key, api-version, trainingType, deployments)",
            example="examples/openai-sft.yaml",
        )
    )


@hookimpl
def register_prices(register: Callable[[str, str], None]) -> None:
    register(
        "anytune_openai/prices.yaml", resources.files("anytune_openai").joinpath("prices.yaml").read_text()
    )
