"""Errors as Fireworks' gRPC gateway answers them: `{"code": <gRPC code>, "message": ...}` with the HTTP
status Fireworks uses (shared by the emulator's modules)."""

from __future__ import annotations

from anytune.testing import ApiError

GRPC = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 429: 8, 500: 13, 503: 14}


class FireworksError(ApiError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.body = {"code": GRPC.get(status, 2), "message": message, "details": []}
