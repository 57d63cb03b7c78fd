"""Entry point of the built-in local backend (registered in pyproject.toml like any third-party plugin)."""

from anytune.hookspecs import hookimpl


@hookimpl
def register_backends(register) -> None:  # type: ignore[no-untyped-def]
    from anytune_local.backend import LocalBackend

    register(LocalBackend())
