"""ASGI plumbing shared by anytune's servers (the service, the emulators): a request body read once and
handed on as if it had not been read."""

from __future__ import annotations

from typing import Any


def replay_body(body: bytes, receive: Any) -> Any:
    """A `receive` that gives `body` (already read from the connection) first, then whatever the connection
    says next (a disconnect, for a streaming answer)."""
    given = False

    async def replayed() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
