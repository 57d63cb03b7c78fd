"""Files to and from a server: a dataset up (asked by hash first, then sent from the server's offset, resumed
after a dropped connection or a process that died) and a model's archive down (HTTP Range from where the
part file stops). The RemoteClient's `upload` and `pull` are these."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from anytune.client.answers import json_or_none, server_error
from anytune.errors import BackendError, NotFoundError, UsageError
from anytune.settings import anytune_home

if TYPE_CHECKING:
    import httpx

    from anytune.registry.datasets import StoredDataset


class Server(Protocol):
    """What a transfer needs of the RemoteClient: its address, connection, requests and dataset lookup."""

    url: str

    @property
    def http(self) -> httpx.Client: ...

    def call(self, method: str, path: str, **kwargs: Any) -> Any: ...

    def dataset(self, dataset_id: str) -> StoredDataset: ...


RETRY_S = 60.0  # how long a transfer is tried again without progress


def upload(client: Server, path: Path, on_progress: Callable[[int, int], None] | None) -> StoredDataset:
    """Asked by hash first; then sent in one streamed PATCH from the server's offset, which a dropped
    connection (or a process that died: the upload's id is kept in `$ANYTUNE_HOME/uploads`) resumes."""
    from anytune.pipeline.datasets import sha256_of_file
    from anytune.registry.datasets import StoredDataset

    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    size = path.stat().st_size
    digest = sha256_of_file(path)
    try:
        return client.dataset(digest)
    except NotFoundError:
        pass
    upload_id = _upload_for(client, path, size, digest)
    location = f"/v1/datasets/uploads/{upload_id}"
    deadline = time.monotonic() + RETRY_S
    while True:
        offset = int(client.call("GET", location)["offset"])
        try:
            answer = client.http.patch(
                location,
                content=_file_from(path, offset, size, on_progress),
                headers={
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                    "Content-Length": str(size - offset),
                },
                timeout=httpx_timeout(),  # the last part waits for the server's validation
            )
        except _transport_errors() as exc:
            _pause_or_give_up(
                deadline, exc, f"the upload of {path.name} to {client.url}", "where the server has it"
            )
            continue
        if answer.status_code == 409 and time.monotonic() < deadline:  # the server still writes the last try
            time.sleep(0.5)
            continue
        if answer.status_code >= 400:
            raise server_error(answer.status_code, json_or_none(answer), answer.text)
        if answer.status_code in (200, 201):
            _forget_upload(digest)
            return StoredDataset.model_validate(answer.json())
        deadline = time.monotonic() + RETRY_S  # progress: a later drop gets its own minute


def _upload_for(client: Server, path: Path, size: int, digest: str) -> str:
    """The upload this machine started for these bytes on this server (a process that died mid-way goes
    on with it), or a new one."""
    known = _remembered_upload(digest)
    if known and known.get("server") == client.url:
        try:
            client.call("GET", f"/v1/datasets/uploads/{known['id']}")
            return str(known["id"])
        except NotFoundError:
            pass
    started = client.call(
        "POST", "/v1/datasets/uploads", json={"name": path.name, "length": size, "sha256": digest}
    )
    _remember_upload(digest, {"server": client.url, "id": started["id"]})
    return str(started["id"])


def download(
    client: Server,
    path: str,
    part: Path,
    etag: str | None,
    on_progress: Callable[[int, int], None] | None,
) -> None:
    """`path` into `part`, from where `part` stops (Range, If-Range on `etag`), tried again for a minute
    after each drop."""
    deadline = time.monotonic() + RETRY_S
    while True:
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-", **({"If-Range": etag} if etag else {})} if have else {}
        try:
            with client.http.stream("GET", path, headers=headers, timeout=httpx_timeout()) as answer:
                if answer.status_code == 416:  # all there already
                    return
                if answer.status_code >= 400:
                    answer.read()
                    raise server_error(answer.status_code, json_or_none(answer), answer.text)
                whole = answer.status_code == 200  # the server sent it all again (it changed)
                total = int(answer.headers.get("content-length", 0)) + (0 if whole else have)
                with part.open("wb" if whole else "ab") as f:
                    done = 0 if whole else have
                    for chunk in answer.iter_bytes():  # as it comes: a cut keeps what arrived
                        f.write(chunk)
                        done += len(chunk)
                        if on_progress is not None:
                            on_progress(done, total)
            return
        except _transport_errors() as exc:
            _pause_or_give_up(deadline, exc, f"the download from {client.url}", "where it stopped")


def _file_from(
    path: Path, offset: int, size: int, on_progress: Callable[[int, int], None] | None
) -> Iterator[bytes]:
    with path.open("rb") as f:
        f.seek(offset)
        done = offset
        while chunk := f.read(1 << 20):
            yield chunk
            done += len(chunk)
            if on_progress is not None:
                on_progress(done, size)


def _pause_or_give_up(deadline: float, exc: Exception, what: str, resumes_from: str) -> None:
    """After a dropped connection: wait a moment and go on, or, with no progress for RETRY_S, say so."""
    if time.monotonic() > deadline:
        raise BackendError(
            f"{what} keeps failing: {type(exc).__name__}",
            hint=f"run the same command again: it goes on from {resumes_from}",
            retryable=True,
        ) from None
    time.sleep(0.5)


def _transport_errors() -> tuple[type[Exception], ...]:
    import httpx

    return (httpx.TransportError,)


def httpx_timeout() -> Any:
    """Connect within 30 s and send each chunk within 60 (a connection that stalls is dropped and resumed),
    then wait for the answer as long as the server works (validating a large file, say)."""
    import httpx

    return httpx.Timeout(connect=30.0, write=60.0, pool=60.0, read=None)


def _uploads_file() -> Path:
    return anytune_home() / "uploads" / "started.json"


def _remembered_upload(digest: str) -> dict[str, Any] | None:
    try:
        known = json.loads(_uploads_file().read_text())
    except (OSError, ValueError):
        return None
    found = known.get(digest) if isinstance(known, dict) else None
    return found if isinstance(found, dict) else None


def _remember_upload(digest: str, upload: dict[str, Any] | None) -> None:
    from anytune.locks import file_lock

    path = _uploads_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_suffix(".lock")):
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = {}
        if upload is None:
            known.pop(digest, None)
        else:
            known[digest] = upload
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, path)


def _forget_upload(digest: str) -> None:
    _remember_upload(digest, None)
