"""Entry point of the Together AI backend."""

from anytune.hookspecs import hookimpl


@hookimpl
def register_backends(register) -> None:  # type: ignore[no-untyped-def]
    from anytune_together.backend import TogetherBackend

    register(TogetherBackend())
