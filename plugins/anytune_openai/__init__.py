"""anytune's OpenAI backend: the fine-tuning API through the official `openai` SDK.

OpenAI is winding down self-serve fine-tuning (no new jobs after 2027-01-06); the model catalog in
models.yaml carries the dates and sources, and the backend refuses or warns accordingly. The SDK is
imported only when a method needs it.
"""

__all__ = ["OpenAIBackend"]


def __getattr__(name: str):  # lazy, so that `anytune plugins list` does not import the SDK
    if name == "OpenAIBackend":
        from anytune_openai.backend import OpenAIBackend

        return OpenAIBackend
    raise AttributeError(name)
