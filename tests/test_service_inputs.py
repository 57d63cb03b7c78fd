"""The service's inputs, as a hostile client sends them, against a real server (uvicorn on 127.0.0.1) on
SQLite and on PostgreSQL: every answer is a 4xx in the error shape, never a 500, and nothing is recorded.
(Issue 36: each of these answered 500, or read a 60 MB chunked body whole.)"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from anytune.client.inprocess import InProcessClient
from anytune.registry import Registry
from anytune.registry.access import create_token

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Registry, dict[str, str]]]:
    from anytune.service.app import create_app
    from anytune.testing.server import EmulatorServer

    registry = (
        Registry(request.getfixturevalue("postgres_url")) if request.param == "postgresql" else Registry()
    )
    token, _ = create_token(registry, "hostile", "admin")
    with (
        EmulatorServer(create_app(InProcessClient(registry))) as served,
        httpx.Client(base_url=served.url, timeout=60) as http,
    ):
        yield http, registry, {"Authorization": f"Bearer {token}"}


def refused(answer: Any, status: int, words: str) -> None:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"type", "message", "hint", "details"} and words in error["message"], error


def test_json_nested_past_the_recursion_limit_or_with_a_huge_integer_is_a_400(server):
    http, registry, auth = server
    deep = b"[" * 100_000 + b"]" * 100_000
    for path in ("/v1/jobs", "/v1/quotes"):
        refused(http.post(path, content=deep, headers=auth), 400, "nested too deeply")
        number = b'{"base_model": "m", "data": {"train": "t.jsonl"}, "budget_usd": ' + b"9" * 5000 + b"}"
        refused(http.post(path, content=number, headers=auth), 400, "the body is not a job spec")
    deep_model = b'{"targets": ["x"], "metrics": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert http.post("/v1/evaluations", content=deep_model, headers=auth).status_code in (400, 422)
    assert registry.list_jobs() == []


def test_a_chunked_body_over_the_limit_is_refused_without_reading_it_whole(server):
    http, registry, auth = server

    def chunks() -> Iterator[bytes]:
        for _ in range(60 * 16):  # 60 MB in 64 KB chunks, no Content-Length: chunked transfer
            yield b"x" * 65536

    tracemalloc.start()
    try:
        answer = http.post("/v1/jobs", content=chunks(), headers=auth)
        _, peak = tracemalloc.get_traced_memory()
    except httpx.TransportError:  # the server answered and closed while the client was still sending
        answer, peak = None, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if answer is not None:
        refused(answer, 413, "over 1048576 bytes")
    assert peak < 10 * 2**20, f"{peak / 2**20:.1f} MB held for a 60 MB body"
    assert registry.list_jobs() == []


def test_nul_characters_and_overlong_keys_and_names_are_400s(server):
    http, registry, auth = server
    refused(http.get("/v1/models/bad%00name", headers=auth), 400, "NUL")
    refused(http.get("/v1/jobs", params={"provider": "a\x00b"}, headers=auth), 400, "NUL")
    refused(http.put("/v1/models/m/aliases/a%00b", json={"version": 1}, headers=auth), 400, "NUL")
    body = {"base_model": "gpt-4o-mini", "provider": "openai", "data": {"train": "/nowhere/t.jsonl"}}
    refused(
        http.post("/v1/jobs", json=body, headers={**auth, "Idempotency-Key": "k" * 201}),
        400,
        "Idempotency-Key",
    )
    refused(
        http.put(f"/v1/models/m/aliases/{'a' * 101}", json={"version": 1}, headers=auth),
        400,
        "cannot be an alias",
    )
    with pytest.raises(Exception, match="1 to 200 characters"):
        create_token(registry, "n" * 201, "read")
    assert registry.list_jobs() == []
