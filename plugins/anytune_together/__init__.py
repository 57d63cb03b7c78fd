"""anytune's Together AI backend: fine-tuning through the official `together` SDK (imported lazily)."""

__all__ = ["TogetherBackend"]


def __getattr__(name: str):
    if name == "TogetherBackend":
        from anytune_together.backend import TogetherBackend

        return TogetherBackend
    raise AttributeError(name)
