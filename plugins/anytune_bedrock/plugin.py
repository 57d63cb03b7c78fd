"""Entry point of the Bedrock plugin: its backend, its emulator (moto's server with a thin front) and its prices."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

from anytune.plugin import Backend, EmulatorInfo, EmulatorOptions, hookimpl


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    from anytune_bedrock.backend import BedrockBackend

    register(BedrockBackend())


def _emulator(options: EmulatorOptions) -> Any:
    from anytune_bedrock.emulator import BedrockEmulator

    return BedrockEmulator(api_key=options.api_key, clock=options.clock, step_seconds=options.step_seconds)


def _environment(url: str, key: str) -> dict[str, str]:
    from anytune_bedrock.emulator import ACCESS_KEY, BUCKET, ROLE

    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "ANYTUNE_BEDROCK_S3_URI": f"s3://{BUCKET}/training",
        "ANYTUNE_BEDROCK_ROLE_ARN": ROLE,
    }


@hookimpl
def register_emulators(register: Callable[[EmulatorInfo], None]) -> None:
    register(
        EmulatorInfo(
            name="bedrock",
            build=_emulator,
            environment=_environment,
            description="S3, IAM and Bedrock customization jobs (moto's server) with job ends, metrics and Converse",
            example="examples/anywhere.yaml",
        )
    )


@hookimpl
def register_prices(register: Callable[[str, str], None]) -> None:
    register(
        "anytune_bedrock/prices.yaml", resources.files("anytune_bedrock").joinpath("prices.yaml").read_text()
    )
