"""The service's REST API (first part of the orchestration service): tokens stored hashed and scoped on every
route, idempotent job creates (one provider job per key), pagination, the error shape, readiness, quotes,
request size limits; the registry's new tables migrated on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anytune.client import Client
from anytune.jobfile import spec_from_dict
from anytune.registry import Registry
from anytune.registry.access import create_token, list_tokens, revoke_token
from tests.conftest import chat_splits

pytest.importorskip("fastapi")


@pytest.fixture
def api(openai_emu: Any) -> Iterator[tuple[Any, Client]]:
    from fastapi.testclient import TestClient

    from anytune.service.app import create_app

    client = Client()
    with TestClient(create_app(client)) as http:
        yield http, client


def bearer(client: Client, scope: str) -> dict[str, str]:
    token, _ = create_token(client.registry, f"test-{scope}", scope)
    return {"Authorization": f"Bearer {token}"}


def job_body(tmp_path: Path, seed: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "name": "svc",
        "base_model": "gpt-4o-mini",
        "provider": "openai",
        "data": chat_splits(tmp_path / f"d{seed}", seed=seed),
        "hyperparameters": {"epochs": 1},
        **extra,
    }


def test_tokens_are_stored_hashed_and_every_route_checks_its_scope(api, tmp_path):
    http, client = api
    reader, submitter = bearer(client, "read"), bearer(client, "submit")
    assert http.get("/v1/jobs").status_code == 401  # no token
    assert http.get("/v1/jobs", headers={"Authorization": "Bearer at_nope"}).status_code == 401
    assert http.get("/v1/jobs", headers=reader).status_code == 200
    denied = http.post("/v1/jobs", json=job_body(tmp_path), headers=reader)
    assert denied.status_code == 403 and denied.json()["error"]["message"].startswith(
        "this route needs the submit"
    )
    assert http.post("/v1/jobs", json=job_body(tmp_path), headers=submitter).status_code == 201
    # the database keeps hashes only: no token value is anywhere in it
    with client.registry.engine.connect() as conn:
        from sqlalchemy import text

        stored = json.dumps([list(r) for r in conn.execute(text("SELECT * FROM api_tokens"))], default=str)
    for header in (reader, submitter):
        assert header["Authorization"][7:] not in stored
    [read_token] = [t for t in list_tokens(client.registry) if t.scope == "read"]
    assert read_token.last_used_at is not None
    revoke_token(client.registry, read_token.id)
    assert http.get("/v1/jobs", headers=reader).status_code == 401
    assert http.get("/v1/health/live").status_code == 200  # liveness needs no token


def test_the_same_idempotency_key_and_body_make_one_job(api, tmp_path, openai_emu):
    http, client = api
    headers = {**bearer(client, "submit"), "Idempotency-Key": "key-1"}
    body = job_body(tmp_path)
    first = http.post("/v1/jobs", json=body, headers=headers)
    again = http.post("/v1/jobs", json=body, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert len(openai_emu.jobs) == 1  # one provider job, however often the request is repeated
    other = http.post("/v1/jobs", json=job_body(tmp_path, seed=2), headers=headers)
    assert other.status_code == 422 and "different request body" in other.json()["error"]["message"]
    fresh = http.post("/v1/jobs", json=body, headers={**headers, "Idempotency-Key": "key-2"})
    assert fresh.status_code == 201 and fresh.json()["id"] != first.json()["id"]
    # a refused request releases its key: fixed and sent again, it makes the job
    bad = http.post(
        "/v1/jobs", json=job_body(tmp_path, adapter="prefix"), headers={**headers, "Idempotency-Key": "k3"}
    )
    assert bad.status_code == 422 and bad.json()["error"]["type"] == "CapabilityError"
    ok = http.post(
        "/v1/jobs", json=job_body(tmp_path, adapter="prefix"), headers={**headers, "Idempotency-Key": "k3"}
    )
    assert ok.status_code == 422  # the same refusal again, not "still being handled"


def test_jobs_list_pages_with_a_cursor_and_errors_have_one_shape(api, tmp_path):
    http, client = api
    headers = bearer(client, "submit")
    made = [
        http.post("/v1/jobs", json=job_body(tmp_path, seed=i), headers=headers).json()["id"] for i in range(3)
    ]
    first = http.get("/v1/jobs", params={"limit": 2}, headers=headers).json()
    second = http.get("/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]}, headers=headers).json()
    seen = [j["id"] for j in first["jobs"] + second["jobs"]]
    assert sorted(seen) == sorted(made) and len(set(seen)) == 3 and second["next_cursor"] is None
    unknown = http.get("/v1/jobs", params={"cursor": "job-nope"}, headers=headers)
    assert unknown.status_code == 400 and "unknown cursor" in unknown.json()["error"]["message"]
    missing = http.get("/v1/jobs/job-nope", headers=headers)
    assert missing.status_code == 404
    assert set(missing.json()["error"]) == {"type", "message", "hint", "details"}
    broken = http.post("/v1/jobs", content=b"{not json", headers=headers)
    assert broken.status_code == 400 and "not JSON" in broken.json()["error"]["message"]
    invalid = http.post("/v1/jobs", json={"base_model": "x"}, headers=headers)
    assert invalid.status_code == 422 and invalid.json()["error"]["details"]
    huge = http.post("/v1/jobs", content=b"x" * (2 * 2**20), headers=headers)
    assert huge.status_code == 413
    cancelled = http.post(f"/v1/jobs/{made[0]}/cancel", headers=headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


def test_readiness_quotes_plugins_and_prices(api, tmp_path):
    http, client = api
    headers = bearer(client, "read")
    assert http.get("/v1/health/ready").json() == {"status": "ready", "database": "ok"}
    table = http.post(
        "/v1/quotes", params={"providers": "openai,together"}, json=job_body(tmp_path), headers=headers
    )
    assert table.status_code == 200, table.text
    assert {q["provider"] for q in table.json()["quotes"]} == {"openai", "together"}
    assert "openai" in {b for p in http.get("/v1/plugins", headers=headers).json() for b in p["backends"]}
    assert any(e["provider"] == "hf" for e in http.get("/v1/prices", headers=headers).json())
    assert "/v1/jobs" in http.get("/openapi.json").json()["paths"]


def test_the_service_tables_migrate_on_postgresql_too(postgres_url):
    from anytune.registry.access import check_token, claim_key, complete_key

    registry = Registry(postgres_url)
    token, info = create_token(registry, "pg", "admin")
    assert check_token(registry, token, "submit").id == info.id
    assert claim_key(registry, "k", b"body", "job-1") is None
    complete_key(registry, "k", "job-1")
    assert claim_key(registry, "k", b"body", "job-2") == "job-1"
    registry.engine.dispose()


def test_a_retry_after_a_crash_mid_submit_gets_the_recorded_job_not_409_forever(tmp_path):
    from datetime import timedelta

    from anytune.jobfile import spec_from_dict
    from anytune.registry.access import SUBMIT_GRACE_S, IdempotencyConflict, claim_key
    from anytune.registry.tables import IdempotencyRow

    registry = Registry(f"sqlite:///{tmp_path / 'r.db'}")
    body = b'{"name": "x"}'
    assert claim_key(registry, "k1", body, "job-first") is None
    # the first request died before recording anything: a retry is told to wait...
    with pytest.raises(IdempotencyConflict) as busy:
        claim_key(registry, "k1", body, "job-second")
    assert busy.value.status == 409
    # ...and once it recorded the job (then died while submitting), a retry gets that job
    spec = spec_from_dict({"name": "x", "base_model": "tiny", "data": {"train": str(tmp_path / "t.jsonl")}})
    registry.create_job(spec, job_id="job-first")
    assert claim_key(registry, "k1", body, "job-second") == "job-first"
    # a key whose request died before recording anything is free again after the grace period
    assert claim_key(registry, "k2", body, "job-a") is None
    with registry.session() as s, s.begin():
        row = s.get(IdempotencyRow, ("default", "k2"))
        row.created_at = row.created_at - timedelta(seconds=SUBMIT_GRACE_S + 1)
    assert claim_key(registry, "k2", body, "job-b") is None
    with registry.session() as s:
        assert s.get(IdempotencyRow, ("default", "k2")).job_id == "job-b"
    registry.engine.dispose()


def test_several_workers_are_refused_on_sqlite_with_the_reason(capsys, monkeypatch):
    from tests.conftest import anytune_in_process

    monkeypatch.delenv("ANYTUNE_DATABASE_URL", raising=False)  # the home's SQLite registry

    code, output = anytune_in_process(capsys, "server", "--workers", "2")
    assert code == 2 and "SQLite" in output and "PostgreSQL" in output


def sse(text: str) -> list[dict[str, str]]:
    """The events of a server-sent event stream, as dicts of their fields."""
    out = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":")
        )
        if fields:
            out.append(fields)
    return out


def test_events_stream_as_server_sent_events_and_resume_after_last_event_id(api, tmp_path, monkeypatch):
    from anytune.service.worker import Worker

    monkeypatch.setenv("ANYTUNE_POLL_INTERVAL", "0")
    http, client = api
    headers = bearer(client, "read")
    job = http.post("/v1/jobs", json=job_body(tmp_path, seed=7), headers=bearer(client, "submit")).json()
    worker = Worker(Client())
    for _ in range(100):
        worker.tick()
        if client.registry.get_job(job["id"]).status.terminal:
            break
    stream = http.get(f"/v1/jobs/{job['id']}/events?stream=true", headers=headers)
    assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
    events = sse(stream.text)
    assert events[-1]["event"] == "end" and json.loads(events[-1]["data"])["status"] == "succeeded"
    ids = [int(e["id"]) for e in events if "id" in e]
    recorded = [e.seq for e in client.registry.events(job["id"])]
    assert ids == recorded and len(ids) > 3
    # a client that lost the stream after the third event reconnects and gets exactly the rest
    again = sse(
        http.get(
            f"/v1/jobs/{job['id']}/events",
            headers={**headers, "Accept": "text/event-stream", "Last-Event-ID": str(ids[2])},
        ).text
    )
    assert [int(e["id"]) for e in again if "id" in e] == ids[3:]
    listed = http.get(f"/v1/jobs/{job['id']}/events?after={ids[-2]}", headers=headers).json()
    assert [e["seq"] for e in listed] == ids[-1:]
    assert http.get("/v1/jobs/nope/events?stream=true", headers=headers).status_code == 404
    # the metrics count it: jobs by provider and status, and the worker's polls
    text = http.get("/metrics", headers=headers).text
    assert 'anytune_jobs{provider="openai",status="succeeded"} 1' in text
    polls = next(
        line for line in text.splitlines() if line.startswith('anytune_job_polls_total{provider="openai"}')
    )
    assert float(polls.split()[-1]) >= 1
    assert http.get("/metrics").status_code == 401


def test_models_aliases_and_evaluations_through_the_api(api, tmp_path, monkeypatch):
    monkeypatch.setenv("ANYTUNE_POLL_INTERVAL", "0")
    http, client = api
    reader, submitter = bearer(client, "read"), bearer(client, "submit")
    from anytune.jobfile import spec_from_dict

    job = client.follow(client.submit(spec_from_dict(job_body(tmp_path, seed=8))).id, interval=0)
    [model] = http.get("/v1/models", headers=reader).json()
    assert model["job_id"] == job.id
    name, version = model["name"], model["version"]
    promoted = http.put(f"/v1/models/{name}/aliases/production", json={"version": version}, headers=submitter)
    assert promoted.status_code == 200 and "production" in promoted.json()["aliases"]
    assert http.get(f"/v1/models/{name}@production", headers=reader).json()["version"] == version
    assert (
        http.put(
            f"/v1/models/{name}/aliases/production", json={"version": version}, headers=reader
        ).status_code
        == 403
    )
    assert http.delete(f"/v1/models/{name}/aliases/production", headers=submitter).status_code == 204
    missing = http.get(f"/v1/models/{name}@production", headers=reader)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "NotFoundError"
    assert http.get(f"/v1/evaluations?job_id={job.id}", headers=reader).json() == []


def test_the_openapi_document_in_the_repository_is_the_one_served():
    """docs/openapi.json is what the server serves: regenerate it with `anytune server --openapi > docs/openapi.json`."""
    from anytune.service.app import create_app

    served = create_app(Client()).openapi()
    kept = json.loads((Path(__file__).parents[1] / "docs" / "openapi.json").read_text())
    assert kept == json.loads(json.dumps(served)), "regenerate: anytune server --openapi > docs/openapi.json"


def test_webhooks_are_managed_by_admins_and_their_secret_is_shown_once(api):
    http, client = api
    admin, submitter = bearer(client, "admin"), bearer(client, "submit")
    body = {"url": "https://hooks.example/anytune", "kinds": ["status"]}
    assert http.post("/v1/webhooks", json=body, headers=submitter).status_code == 403
    made = http.post("/v1/webhooks", json=body, headers=admin)
    assert made.status_code == 201 and made.json()["secret"].startswith("whsec_")
    [listed] = http.get("/v1/webhooks", headers=admin).json()
    assert listed["id"] == made.json()["id"] and "secret" not in listed and listed["kinds"] == ["status"]
    bad = http.post("/v1/webhooks", json={"url": "ftp://x"}, headers=admin)
    assert bad.status_code == 400 and "http" in bad.json()["error"]["message"]
    assert http.delete(f"/v1/webhooks/{listed['id']}", headers=admin).status_code == 204
    assert http.get("/v1/webhooks", headers=admin).json() == []


def test_data_is_validated_on_the_server_and_paths_can_be_fenced(api, tmp_path, monkeypatch):
    http, client = api
    headers = bearer(client, "submit")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}\n{oops}\n'
    )
    report = http.post("/v1/data/validate", json={"path": str(bad)}, headers=headers)
    assert report.status_code == 200
    [issue] = [i for i in report.json()["issues"] if i["severity"] == "error"]
    assert issue["line"] == 2 and "not valid JSON" in issue["message"]
    monkeypatch.setenv("ANYTUNE_DATA_ROOT", str(tmp_path / "allowed"))
    fenced = http.post("/v1/data/validate", json={"path": str(bad)}, headers=headers)
    assert (
        fenced.status_code == 400 and "outside the server's data folder" in fenced.json()["error"]["message"]
    )
    refused = http.post("/v1/jobs", json=job_body(tmp_path, seed=9), headers=headers)
    assert refused.status_code == 400 and client.registry.list_jobs() == []


def test_no_route_reads_a_file_outside_the_data_root(api, tmp_path, monkeypatch):
    """A quote (read scope) and a migration's overrides (submit scope) name files too: outside
    ANYTUNE_DATA_ROOT they are refused before anything reads them, so their contents are never echoed."""
    http, client = api
    allowed = tmp_path / "allowed"
    body = job_body(allowed, seed=4)
    done = client.follow(client.submit(spec_from_dict(body)).id, interval=0)
    assert done.status.value == "succeeded"
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"messages": [{"role": "TOPSECRET-42", "content": "x"}]}\n')
    monkeypatch.setenv("ANYTUNE_DATA_ROOT", str(allowed))
    quoted = http.post(
        "/v1/quotes", json={**body, "data": {"train": str(secret)}}, headers=bearer(client, "read")
    )
    moved = http.post(
        f"/v1/jobs/{done.id}/migrate",
        json={"to": "together", "overrides": [f"data.train={secret}"]},
        headers=bearer(client, "submit"),
    )
    grader_file = tmp_path / "grader.py"  # an RFT job's Python grader is a file the server would read too
    grader_file.write_text("TOPSECRET = 1\ndef grade(sample, item):\n    return 1.0\n")
    rft = {**body, "method": {"type": "rft", "grader": {"type": "python", "path": str(grader_file)}}}
    graded = [
        http.post(route, json=rft, headers=bearer(client, "submit")) for route in ("/v1/jobs", "/v1/quotes")
    ]
    for answer in (quoted, moved, *graded):
        assert answer.status_code == 400, answer.text
        assert "outside the server's data folder" in answer.text and "TOPSECRET" not in answer.text
    assert str(grader_file) in graded[0].text
    assert [j.id for j in client.registry.list_jobs()] == [done.id]
    inside = http.post(
        f"/v1/jobs/{done.id}/migrate", json={"to": "together"}, headers=bearer(client, "submit")
    )
    # its own data is inside the folder: the migration goes on to Together's own checks (which need a key, or
    # a Together that answers: not here)
    assert "outside the server's data folder" not in inside.text, inside.text


def test_a_body_of_bytes_that_are_not_text_is_a_400(api):
    http, client = api
    answer = http.post(
        "/v1/jobs",
        content=b"\x80\x81",
        headers={**bearer(client, "submit"), "Content-Type": "application/json"},
    )
    assert answer.status_code == 400 and "not UTF-8" in answer.json()["error"]["message"]


# every string a route takes, with a file outside ANYTUNE_DATA_ROOT in it: what each kind of slot becomes
def _secret_values(secret: str) -> dict[str, Any]:
    return {
        "overrides": [f"data.train={secret}", f"data.test={secret}", f"evaluation.data={secret}"],
        "targets": [secret],
        "kinds": [secret],
        "metrics": [secret],
    }


def _fill(schema: dict[str, Any], doc: dict[str, Any], secret: str, name: str = "") -> Any:
    """A value for `schema` with the secret file's path in every string it holds."""
    if "$ref" in schema:
        return _fill(doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]], doc, secret, name)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            return _fill(options[0], doc, secret, name) if options else None
    if name in _secret_values(secret):
        return _secret_values(secret)[name]
    kind = schema.get("type")
    if kind == "object":
        return {k: _fill(v, doc, secret, k) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_fill(schema.get("items") or {"type": "string"}, doc, secret, name)]
    if kind == "integer":
        return 1
    if kind == "boolean":
        return True
    return secret


def test_no_route_of_the_openapi_document_reads_a_file_outside_the_data_root(api, tmp_path, monkeypatch):
    """Every operation of the service's OpenAPI document, called with the path of a file outside
    ANYTUNE_DATA_ROOT in every string it takes (body fields, query and path parameters; a job spec's data
    and evaluation files; overrides naming them), with a read token and with an admin token: the file is
    never opened (Python's audit hook sees every open), its contents never come back, no answer is a 500."""
    import sys
    from urllib.parse import quote

    http, client = api
    allowed = tmp_path / "allowed"
    body = job_body(allowed, seed=7)
    done = client.follow(client.submit(spec_from_dict(body)).id, interval=0)
    secret_dir = tmp_path / "private"
    secret_dir.mkdir()
    secret = secret_dir / "secret.jsonl"
    secret.write_text('{"messages": [{"role": "TOPSECRET-42", "content": "x"}]}\n')
    (secret_dir / "tokenizer.json").write_text('{"TOPSECRET": 1}')
    monkeypatch.setenv("ANYTUNE_DATA_ROOT", str(allowed))
    opened: list[str] = []
    watching = [True]

    def audit(event: str, args: tuple[Any, ...]) -> None:
        if watching[0] and event == "open" and args and str(args[0]).startswith(str(secret_dir)):
            opened.append(str(args[0]))

    sys.addaudithook(audit)  # (a hook stays for the process: `watching` turns it off after this test)
    doc = http.get("/openapi.json").json()
    spec_with_secret = {
        **body,
        "data": {"train": str(secret), "validation": str(secret), "test": str(secret)},
        "evaluation": {"metrics": ["exact_match"], "data": str(secret)},
    }
    tokens = {scope: bearer(client, scope) for scope in ("read", "admin")}
    calls = 0
    try:
        for path, item in doc["paths"].items():
            for method, op in item.items():
                params = op.get("parameters", [])
                schema = (
                    (op.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema")
                )
                for path_value in {str(secret), done.id}:
                    url = path
                    for p in params:
                        if p["in"] == "path":
                            url = url.replace("{" + p["name"] + "}", quote(path_value, safe=""))
                    query = {
                        p["name"]: str(secret) for p in params if p["in"] == "query" and p["name"] != "stream"
                    }
                    if schema is None:
                        payload = None
                    elif "job spec" in str(schema.get("description", "")):
                        payload = spec_with_secret
                    else:
                        payload = _fill(schema, doc, str(secret))
                    for auth in tokens.values():
                        answer = http.request(method.upper(), url, params=query, json=payload, headers=auth)
                        calls += 1
                        where = f"{method.upper()} {url}"
                        assert answer.status_code < 500, (where, answer.status_code, answer.text[:300])
                        assert "TOPSECRET" not in answer.text, (where, answer.text[:300])
                        assert opened == [], (where, opened)
        # one slot at a time where the others are good: the tokenizer of a validation is a folder it reads
        for auth in tokens.values():
            answer = http.post(
                "/v1/data/validate",
                json={"path": body["data"]["train"], "tokenizer": str(secret_dir)},
                headers=auth,
            )
            assert answer.status_code in (400, 403) and "TOPSECRET" not in answer.text, answer.text[:300]
            assert answer.status_code == 403 or "outside the server's data folder" in answer.text, answer.text
            assert opened == [], opened
        # a provider no plugin serves was an internal error (500) where no data root refused first
        monkeypatch.delenv("ANYTUNE_DATA_ROOT")
        answer = http.post(f"/v1/jobs/{done.id}/migrate", json={"to": "nowhere"}, headers=tokens["admin"])
        assert answer.status_code == 400 and "unknown backend" in answer.text, answer.text[:300]
    finally:
        watching[0] = False
    assert calls >= 4 * 25  # every operation, both ids, both tokens
    assert [j.id for j in client.registry.list_jobs()] == [done.id]
