"""anytune: one provider-neutral API for fine-tuning language models.

Importing anytune is cheap: it pulls in neither torch nor any provider SDK. The Client, the registry and the
cost layer load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from anytune import plugins as _plugins  # noqa: F401  (wires the plugins' prices into the catalog)
from anytune.errors import AnytuneError
from anytune.spec import JobSpec

__version__ = "0.1.0"

__all__ = ["AnytuneError", "Client", "JobSpec", "__version__", "load_job_file", "quote"]

if TYPE_CHECKING:
    from anytune.client import Client, quote
    from anytune.jobfile import load_job_file


def __getattr__(name: str) -> Any:
    if name == "Client":
        from anytune.client import Client

        return Client
    if name == "load_job_file":
        from anytune.jobfile import load_job_file

        return load_job_file
    if name == "quote":
        from anytune.client import quote

        return quote
    raise AttributeError(f"module 'anytune' has no attribute {name!r}")
