"""Running an ASGI emulator on 127.0.0.1, in a background thread (tests) or in the foreground (the CLI)."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from typing import Any


def free_port() -> int:
    """A port on 127.0.0.1 that nothing holds now.

    Under pytest-xdist, each worker draws from a range of its own below the kernel's ephemeral ports
    (32768 and up): a port the kernel hands to one worker's `bind(0)` between this call and the server's
    own bind could otherwise be the port another worker was just given.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        slot = int(worker[2:]) % 8
        low, size = 10_000 + slot * 2_800, 2_800
        for port in random.Random().sample(range(low, low + size), 200):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmulatorServer:
    """`with EmulatorServer(app) as server: server.url` serves `app` until the block ends."""

    def __init__(self, app: Any, port: int | None = None, host: str = "127.0.0.1") -> None:
        import uvicorn

        self.host, self.port = host, port or free_port()
        # No Date header from uvicorn: it is refreshed once per tick of a loop that a busy machine delays by
        # seconds, and a client may read it (the hub client ends a log replay at the Date); an emulator that
        # needs one sends its own, fresh.
        config = uvicorn.Config(
            app,
            host=host,
            port=self.port,
            log_level="warning",
            lifespan="off",
            timeout_keep_alive=5,
            date_header=False,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(target=self._server.run, name="anytune-emulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the emulator did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        self._server.run()
