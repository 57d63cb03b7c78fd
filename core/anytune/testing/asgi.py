"""ASGI plumbing shared by the emulators: authentication, fault injection, dropped connections, and a
recorder of every exchange (so that tests can check each one against the provider's OpenAPI spec)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from anytune.asgi import replay_body
from anytune.testing.faults import Fault, Faults

ErrorBody = Callable[[int, str, str | None], dict[str, Any]]


@dataclass
class Exchange:
    method: str
    path: str
    query: str
    request_headers: dict[str, str]
    request_body: bytes
    status: int
    response_headers: dict[str, str]
    response_body: bytes
    dropped: bool = False
    at: float = field(default_factory=time.monotonic)  # when the answer was complete
    started: float = 0.0  # when the request arrived (time.monotonic), so tests can see overlapping ones

    @property
    def request_content_type(self) -> str:
        return self.request_headers.get("content-type", "")

    @property
    def response_content_type(self) -> str:
        return self.response_headers.get("content-type", "")

    def json(self) -> Any:
        return json.loads(self.response_body)


class Recorder:
    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()

    def add(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def clear(self) -> None:
        with self._lock:
            self.exchanges.clear()

    def count(self, method: str, path_prefix: str) -> int:
        with self._lock:
            return sum(1 for e in self.exchanges if e.method == method and e.path.startswith(path_prefix))


def json_response_messages(
    status: int, body: Any, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    return [
        {"type": "http.response.start", "status": status, "headers": raw},
        {"type": "http.response.body", "body": data, "more_body": False},
    ]


class EmulatorMiddleware:
    def __init__(
        self,
        app: Any,
        *,
        faults: Faults,
        recorder: Recorder,
        error_body: ErrorBody,
        authorize: Callable[[dict[str, str]], bool],
        api_prefix: str | tuple[str, ...] = "/v1",
        extra_headers: Callable[[], dict[str, str]] = dict,
    ) -> None:
        self.app = app
        self.faults = faults
        self.recorder = recorder
        self.error_body = error_body
        self.authorize = authorize
        self.api_prefix = api_prefix
        self.extra_headers = extra_headers

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.api_prefix):
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        method, path = scope["method"], scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        base_headers = {"x-request-id": f"req_{uuid.uuid4().hex[:24]}", **self.extra_headers()}
        fault = self.faults.take(method, path)
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        messages = await self._answer(scope, receive, headers, body, fault, base_headers)
        status = messages[0]["status"]
        response_headers = {k.decode().lower(): v.decode() for k, v in messages[0].get("headers", [])}
        response_body = b"".join(m.get("body", b"") for m in messages[1:])
        dropped = fault is not None and fault.drop and not fault.status
        query = scope.get("query_string", b"").decode()
        exchange = Exchange(
            method,
            path,
            query,
            headers,
            body,
            status,
            response_headers,
            response_body,
            dropped,
            started=started,
        )
        self.recorder.add(exchange)
        if dropped:  # the work is done; now break the connection halfway through the answer
            await _send_half(send, status, response_body)
            return
        for message in messages:
            await send(message)

    async def _answer(
        self,
        scope: dict[str, Any],
        receive: Any,
        headers: dict[str, str],
        body: bytes,
        fault: Fault | None,
        base_headers: dict[str, str],
    ) -> list[dict[str, Any]]:
        """The answer's ASGI messages: a refused key, an injected error, or the emulator's own answer."""
        if not self.authorize(headers):
            refused = self.error_body(401, "Incorrect API key provided.", "invalid_api_key")
            return json_response_messages(401, refused, base_headers)
        if fault is not None and fault.status:
            retry = dict(base_headers)
            if fault.retry_after_ms is not None:
                retry["retry-after-ms"] = str(fault.retry_after_ms)
            if fault.retry_after is not None:
                retry["retry-after"] = str(fault.retry_after)
            message = fault.message or f"emulated error {fault.status}"
            return json_response_messages(
                fault.status, self.error_body(fault.status, message, fault.code), retry
            )
        messages: list[dict[str, Any]] = []

        async def capture(message: dict[str, Any]) -> None:
            messages.append(message)

        await self.app(scope, replay_body(body, receive), capture)
        start = messages[0]
        start["headers"] = list(start.get("headers", [])) + [
            (k.encode(), v.encode()) for k, v in base_headers.items()
        ]
        return messages


async def _send_half(send: Any, status: int, body: bytes) -> None:
    """An answer that promises more than it sends: the connection drops mid-answer."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body) + 64).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": False})
