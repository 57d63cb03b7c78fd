"""Which Client the CLI talks to: this process's, or a server's (`anytune --server URL`, `$ANYTUNE_SERVER`).

An empty value means in-process. Against a server the CLI writes nothing to a registry of its own: jobs,
quotes, models, evaluations and reports are the server's work (its plugins, catalog and registry). A job's
data files on this machine are uploaded first (only those the server does not hold); serving and exports
pull the model's files first and then work here. The data tools (validate, stats, convert, split) read and
write files only, so they stay on this machine either way.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from anytune.errors import UsageError

if TYPE_CHECKING:
    from anytune.client import Client


def server_url() -> str | None:
    return os.environ.get("ANYTUNE_SERVER", "").strip() or None


def cli_client() -> Client:
    """The Client for a command: over HTTP when a server is named, else in this process. Commands use only
    its interface (`anytune.api.ClientAPI`), so each works the same either way."""
    from anytune.cli.console import TransferBar
    from anytune.client import Client

    client = Client(url=server_url())
    if hasattr(client, "on_upload"):  # a job's local data files go up to the server first: show them going
        client.on_upload = TransferBar("uploading")
    return client


def in_process_only(what: str) -> None:
    """Stop a command that works on this machine's registry when the CLI is pointed at a server."""
    url = server_url()
    if url:
        raise UsageError(
            f"{what} runs in this process, on its own registry; ANYTUNE_SERVER points the CLI at {url}",
            hint="run it on the server machine, or unset ANYTUNE_SERVER (or pass --server '') for this command",
        )
