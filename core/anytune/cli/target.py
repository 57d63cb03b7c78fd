"""Which Client the CLI talks to: this process's, or a server's (`anytune --server URL`, `$ANYTUNE_SERVER`).

An empty value means in-process. Against a server the CLI writes nothing to a registry of its own: jobs,
quotes, models, evaluations and reports are the server's work (its plugins, catalog and registry; data paths
are read there); commands that need the model files on this machine (serving, exports) or this machine's
stored scores (drift checks) say so and stop. The data tools (validate, stats, convert, split) read and write
files only, so they stay on this machine either way.
"""

from __future__ import annotations

import os
from typing import Any

from anytune.errors import UsageError


def server_url() -> str | None:
    return os.environ.get("ANYTUNE_SERVER", "").strip() or None


def cli_client() -> Any:
    """The Client for a command: over HTTP when a server is named, else in this process."""
    from anytune.client import Client

    url = server_url()
    return Client(url=url) if url else Client()


def cli_registry() -> Any:
    """The registry a command reads: the server's when one is named."""
    url = server_url()
    if url:
        return cli_client().registry
    from anytune.registry import Registry

    return Registry()


def in_process_only(what: str) -> None:
    """Stop a command that works on this machine's registry when the CLI is pointed at a server."""
    url = server_url()
    if url:
        raise UsageError(
            f"{what} runs in this process, on its own registry; ANYTUNE_SERVER points the CLI at {url}",
            hint="run it on the server machine, or unset ANYTUNE_SERVER (or pass --server '') for this command",
        )
