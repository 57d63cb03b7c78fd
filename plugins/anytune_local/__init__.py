"""anytune's local backend: PEFT + TRL on this machine's CPU or GPUs, in a subprocess per job.

Nothing heavy is imported here: torch, transformers, peft and trl load inside the worker process and inside
`generate()`, so listing plugins or running `anytune --help` stays fast.
"""

__all__ = ["LocalBackend"]


def __getattr__(name: str):  # lazy, so that `import anytune_local` costs nothing
    if name == "LocalBackend":
        from anytune_local.backend import LocalBackend

        return LocalBackend
    raise AttributeError(name)
