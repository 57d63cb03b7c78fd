"""Blobs in an S3-compatible bucket (`ANYTUNE_STORAGE_URL=s3://bucket/prefix`): AWS S3, MinIO, R2, moto.

boto3 does the work: `upload_file` sends a large file in parts, `download_file` fetches one; credentials
and the endpoint come from boto3's own chain (`AWS_ENDPOINT_URL` for a store that is not AWS). A blob read
on this machine is fetched once into `$ANYTUNE_HOME/cache/storage` and read from there.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from anytune.errors import UsageError
from anytune.settings import cache_dir
from anytune.storage import CHUNK, check_key


class S3Storage:
    def __init__(self, url: str) -> None:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise UsageError(f"ANYTUNE_STORAGE_URL {url!r} names no bucket", hint="s3://bucket/prefix")
        self.url, self.bucket, self.prefix = url, bucket, prefix.strip("/")
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                import boto3
            except ImportError:
                raise UsageError(
                    "an s3:// storage needs boto3", hint="pip install 'anytune[bedrock]' (or boto3)"
                ) from None
            # a session of its own: boto3's default one keeps the credentials it first found for the process
            self._client = boto3.session.Session().client("s3")
        return self._client

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, key: str, source: Path) -> None:
        self.client.upload_file(str(source), self.bucket, self._key(key))  # one object appears, or none

    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def local_file(self, key: str) -> Path:
        size = self.size(key)
        if size is None:
            raise FileNotFoundError(key)
        folder = cache_dir("storage", self.bucket, *self._key(key).split("/")[:-1])
        path = folder / key.rsplit("/", 1)[-1]
        if path.is_file() and path.stat().st_size == size:
            return path
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=folder)
        os.close(fd)
        try:
            self.client.download_file(self.bucket, self._key(key), tmp)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return path

    def read_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        wanted = f"bytes={start}-{'' if end is None else end - 1}"
        body = self.client.get_object(Bucket=self.bucket, Key=self._key(key), Range=wanted)["Body"]
        try:
            while chunk := body.read(CHUNK):
                yield chunk
        finally:
            body.close()

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
