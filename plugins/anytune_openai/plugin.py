"""Entry point of the OpenAI backend."""

from anytune.hookspecs import hookimpl


@hookimpl
def register_backends(register) -> None:  # type: ignore[no-untyped-def]
    from anytune_openai.backend import OpenAIBackend

    register(OpenAIBackend())
