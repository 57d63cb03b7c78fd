"""Entry point of the built-in local backend (registered in pyproject.toml like any third-party plugin)."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources

from anytune.plugin import Backend, hookimpl


@hookimpl
def register_backends(register: Callable[[Backend], None]) -> None:
    from anytune_local.backend import LocalBackend

    register(LocalBackend())


@hookimpl
def register_prices(register: Callable[[str, str], None]) -> None:
    register(
        "anytune_local/prices.yaml", resources.files("anytune_local").joinpath("prices.yaml").read_text()
    )
