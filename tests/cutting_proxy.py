"""A TCP proxy on 127.0.0.1 that counts the bytes going each way and can cut the first connection after N
bytes in one direction: a dropped connection in the middle of an upload or a download, as a real network
drops it (the client sees a reset, the server a client gone), not a client that chose to stop."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field


@dataclass
class CuttingProxy:
    target_port: int
    cut_up_after: int | None = None  # bytes from the client to the server before the cut (first connection)
    cut_down_after: int | None = None  # bytes from the server to the client before the cut (first connection)
    up: int = 0
    down: int = 0
    cuts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:  # the server is down: so is this connection, as it would be without a proxy
                client.close()
                continue
            pair = (client, server)
            threading.Thread(target=self._pump, args=(client, server, "up", pair), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, "down", pair), daemon=True).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, way: str, pair: tuple[socket.socket, ...]
    ) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    limit = self.cut_up_after if way == "up" else self.cut_down_after
                    sent = self.up if way == "up" else self.down
                    if limit is not None and sent + len(data) > limit:
                        data = data[: max(0, limit - sent)]
                        cut = True
                    else:
                        cut = False
                    if way == "up":
                        self.up += len(data)
                    else:
                        self.down += len(data)
                    if cut:  # once: later connections go through
                        self.cut_up_after = self.cut_down_after = None
                        self.cuts += 1
                if data:
                    dst.sendall(data)
                if cut:  # shut down, not only closed: the other direction's thread is blocked reading them
                    for s in pair:
                        try:
                            s.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                        s.close()
                    return
        except OSError:
            pass
        finally:  # one side gone: so is the other (closed with unread data, the peer gets a reset)
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
