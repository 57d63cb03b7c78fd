"""Data up, models down: datasets uploaded to the service (streamed, hashed as they arrive, validated before
they are kept, kept once by the SHA-256 of their bytes, resumed after a dropped connection), jobs that name
them, the remote Client uploading a job's local files by itself, and a model's files pulled back with a
resumable download."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from anytune.client import Client
from anytune.errors import AnytuneError, CapabilityError, DataError, NotFoundError
from anytune.jobfile import spec_from_dict
from tests.conftest import OPENAI_TEST_KEY, chat_splits, emulated, reversal_rows, write_jsonl
from tests.cutting_proxy import CuttingProxy
from tests.test_service_crash import Server, free_port

pytest.importorskip("fastapi")


def chat_file(path: Path, rows: int, pad: int = 0, seed: int = 0) -> Path:
    """`rows` valid chat records, each padded to about `pad` bytes of text."""
    filler = "x" * pad
    return write_jsonl(
        path,
        (
            {
                "messages": [
                    {"role": "user", "content": f"question {seed}-{i} {filler}"},
                    {"role": "assistant", "content": f"answer {i}"},
                ]
            }
            for i in range(rows)
        ),
    )


def sha(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def http(openai_emu: Any):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from anytune.service.app import create_app

    with TestClient(create_app(Client(), auth=False)) as client:
        yield client


def test_an_upload_is_validated_kept_once_by_its_bytes_and_a_refused_one_leaves_nothing(
    http, tmp_path, anytune_home
):
    good = chat_file(tmp_path / "train.jsonl", 30)
    first = http.post("/v1/datasets", params={"name": "train.jsonl"}, content=good.read_bytes())
    assert first.status_code == 201, first.text
    kept = first.json()
    assert kept["id"] == sha(good) and kept["ref"] == f"dataset:{sha(good)}"
    assert (kept["rows"], kept["format"], kept["size"]) == (30, "chat", good.stat().st_size)
    again = http.post("/v1/datasets", params={"name": "copy.jsonl"}, content=good.read_bytes())
    assert again.status_code == 200 and again.json()["id"] == kept["id"]
    blobs = list((anytune_home / "storage" / "datasets").iterdir())
    assert [b.name for b in blobs] == [kept["id"].removeprefix("sha256:")]
    assert blobs[0].read_bytes() == good.read_bytes()

    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text() + '{"messages": [{"role": "robot", "content": "hi"}]}\n')
    refused = http.post("/v1/datasets", params={"name": "bad.jsonl"}, content=bad.read_bytes())
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["type"] == "DataError" and "nothing was kept" in error["hint"]
    assert any(d.startswith("bad.jsonl:31: ") and "robot" in d for d in error["details"]), error["details"]
    assert [d["id"] for d in http.get("/v1/datasets").json()] == [kept["id"]]
    assert len(list((anytune_home / "storage" / "datasets").iterdir())) == 1
    assert list((anytune_home / "uploads").glob("*.part")) == []
    assert http.get(f"/v1/datasets/{sha(bad)}").status_code == 404

    # in parts: a part for the wrong offset is refused with the server's offset; a wrong digest keeps nothing
    body = {"name": "p.jsonl", "length": good.stat().st_size, "sha256": "sha256:" + "0" * 64}
    started = http.post("/v1/datasets/uploads", json=body)
    assert started.status_code == 201 and started.headers["location"].endswith(started.json()["id"])
    where = started.headers["location"]
    data = good.read_bytes()
    assert http.patch(where, content=data[:1000], headers={"Upload-Offset": "0"}).status_code == 204
    wrong = http.patch(where, content=data[:1000], headers={"Upload-Offset": "0"})
    assert wrong.status_code == 409 and "at byte 1,000" in wrong.json()["error"]["message"]
    assert http.get(where).json()["offset"] == 1000
    last = http.patch(where, content=data[1000:], headers={"Upload-Offset": "1000"})
    assert last.status_code == 422 and "not sha256:000" in last.json()["error"]["message"]
    assert http.get(where).status_code == 404  # the upload is over either way
    too_long = http.post("/v1/datasets/uploads", json={"name": "x", "length": 100})
    over = http.patch(too_long.headers["location"], content=b"y" * 101, headers={"Upload-Offset": "0"})
    assert over.status_code == 413


def test_a_job_names_a_dataset_and_it_cannot_be_deleted_while_the_job_runs(http, tmp_path, openai_emu):
    splits = chat_splits(tmp_path / "d", seed=3)
    refs = {}
    for split, path in splits.items():
        answer = http.post("/v1/datasets", params={"name": Path(path).name}, content=Path(path).read_bytes())
        refs[split] = answer.json()["ref"]
    spec = {"name": "named", "base_model": "gpt-4o-mini", "provider": "openai", "data": refs}
    quoted = http.post("/v1/quotes", params={"providers": "openai"}, json=spec)
    assert quoted.status_code == 200, quoted.text
    created = http.post("/v1/jobs", json={**spec, "hyperparameters": {"epochs": 1}})
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["spec"]["data"]["train"] == refs["train"]  # the record names the dataset, not a server path
    assert job["dataset_fingerprint"] == http.get(f"/v1/datasets/{refs['train'][8:]}").json()["fingerprint"]
    busy = http.delete(f"/v1/datasets/{refs['train'][8:]}")
    assert busy.status_code == 409 and job["id"] in busy.json()["error"]["message"]
    checked = http.post("/v1/data/validate", json={"path": refs["test"]})
    assert checked.status_code == 200 and checked.json()["path"] == refs["test"]
    unknown = {**spec, "data": {"train": "dataset:sha256:" + "a" * 64}}
    missing = http.post("/v1/jobs", json=unknown)
    assert missing.status_code == 404 and "upload it" in missing.json()["error"]["hint"]
    assert http.post("/v1/jobs", json={**spec, "data": {"train": "dataset:md5:1"}}).status_code == 400
    http.post(f"/v1/jobs/{job['id']}/cancel")
    assert http.delete(f"/v1/datasets/{refs['train'][8:]}").status_code == 204
    assert refs["train"] not in [d["ref"] for d in http.get("/v1/datasets").json()]


def _server(tmp_path: Path, **env: str) -> Server:
    home = tmp_path / "server-home"
    server = Server(
        dict(os.environ, ANYTUNE_HOME=str(home), ANYTUNE_POLL_INTERVAL="0.05", **env),
        free_port(),
        tmp_path / "server.log",
    )
    server.start()
    return server


def _rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_a_large_upload_cut_half_way_resumes_without_sending_the_first_half_again(tmp_path):
    """64 MB here (tests/benchmarks/upload_1gb.py does 1 GB): the connection is cut at 50% by a proxy that
    counts the bytes; the client goes on from the server's offset; the server's memory stays flat."""
    data = chat_file(tmp_path / "big.jsonl", 64_000, pad=1000)
    size = data.stat().st_size
    server = _server(tmp_path)
    proxy = CuttingProxy(server.port, cut_up_after=size // 2)
    try:
        assert server.proc is not None
        before = _rss_kb(server.proc.pid)
        seen: list[tuple[int, int]] = []
        with Client(url=proxy.url) as client:
            kept = client.upload(data, on_progress=lambda done, total: seen.append((done, total)))
            peak = _rss_kb(server.proc.pid, "VmHWM")
            assert proxy.cuts == 1
            assert kept.id == sha(data) and kept.rows == 64_000 and kept.size == size
            assert proxy.up < size * 1.1, f"sent {proxy.up:,} bytes for a {size:,}-byte file"
            assert seen[-1] == (size, size)
            assert (peak - before) * 1024 < 40 * 2**20, f"the server grew by {(peak - before) // 1024} MB"
            blob = tmp_path / "server-home" / "storage" / "datasets" / kept.id.removeprefix("sha256:")
            assert sha(blob) == kept.id
            sent = proxy.up
            assert client.upload(data).id == kept.id  # asked by hash: nothing sent again
            assert proxy.up - sent < 10_000
    finally:
        proxy.close()
        server.stop()


def test_the_remote_client_uploads_a_jobs_local_files_once_and_the_job_names_them(tmp_path, monkeypatch):
    monkeypatch.setenv("ANYTUNE_TODAY", "2026-11-28")
    with emulated("openai", api_key=OPENAI_TEST_KEY, tick=3.0):
        server = _server(tmp_path)
        try:
            splits = chat_splits(tmp_path / "mine", seed=5)
            raw = {"name": "up", "base_model": "gpt-4o-mini", "provider": "openai", "data": splits}
            spec = spec_from_dict({**raw, "hyperparameters": {"epochs": 1}}, source="test")
            client = Client(url=f"http://127.0.0.1:{server.port}")
            shown: list[str] = []
            client.on_upload = lambda name, done, total: shown.append(name)  # type: ignore[attr-defined]
            job = client.submit(spec)
            assert job.spec.data.train == f"dataset:{sha(Path(splits['train']))}"
            assert {d.name for d in client.datasets()} == {Path(p).name for p in splits.values()}
            assert set(shown) == {Path(p).name for p in splits.values()}
            shown.clear()
            table = client.quote(spec, "openai")
            assert table.rows and shown == []  # the server has them: nothing uploaded again
            client.close()
        finally:
            server.stop()


def test_a_models_files_come_back_with_a_resumable_download_and_load_here(tiny_model, tmp_path):
    server = _server(tmp_path)
    try:
        url = f"http://127.0.0.1:{server.port}"
        client = Client(url=url)
        train = write_jsonl(tmp_path / "t.jsonl", reversal_rows(16, seed=2))
        spec = spec_from_dict(
            {
                "name": "pulled",
                "base_model": str(tiny_model),
                "provider": "local",
                "data": {"train": str(train)},
                "hyperparameters": {"max_steps": 4, "batch_size": 4},
            },
            source="test",
        )
        job = client.follow(client.submit(spec).id, timeout=300)
        assert job.status.value == "succeeded", job.error
        deadline = time.monotonic() + 60
        while not client.models_for_job(job.id) and time.monotonic() < deadline:
            time.sleep(0.2)
        [model] = client.models_for_job(job.id)
        head = client._send("HEAD", f"/v1/models/{model.ref}/files")  # type: ignore[attr-defined]
        size = int(head.headers["content-length"])
        proxy = CuttingProxy(server.port, cut_down_after=size // 2)
        try:
            with Client(url=proxy.url) as through:
                got = through.pull(model.ref, tmp_path / "here")
            assert proxy.cuts == 1 and proxy.down < size * 1.2, (proxy.down, size)
        finally:
            proxy.close()
        assert got.artifact.path == str(tmp_path / "here" / "adapter")
        assert sorted(os.listdir(got.artifact.path)) == sorted(model.artifact.files)
        for name in model.artifact.files:
            assert (Path(got.artifact.path) / name).read_bytes() == (
                Path(model.artifact.path) / name
            ).read_bytes()
        from anytune.client.inprocess import InProcessClient
        from anytune.hookspecs import GenerationParams

        backend = InProcessClient().backend("local")
        [answer] = backend.generate(
            got.artifact, [[{"role": "user", "content": "abc"}]], GenerationParams(max_new_tokens=2)
        )
        assert isinstance(answer, str)
        again = client.pull(model.ref, tmp_path / "here")  # pulled already: nothing fetched
        assert again.artifact.metadata["archive_sha256"] == head.headers["x-content-sha256"]
        client.close()
    finally:
        server.stop()


def test_a_hosted_model_has_no_files_and_the_refusal_says_how_to_call_it(tmp_path):
    from anytune.jobs import ModelArtifact

    client = Client()
    artifact = ModelArtifact(
        provider="openai", model_id="ft:gpt-4o-mini:acme::x1", kind="provider_model", base_model="gpt-4o-mini"
    )
    client.registry.register_model("hosted", artifact)
    with pytest.raises(CapabilityError) as refused:
        client.pull("hosted", tmp_path / "x")
    assert "ft:gpt-4o-mini:acme::x1" in refused.value.message and "openai" in refused.value.hint
    assert not (tmp_path / "x").exists()


def test_datasets_in_process_and_the_storage_kinds(tmp_path):
    client = Client()
    path = chat_file(tmp_path / "a.jsonl", 5)
    kept = client.upload(path)
    assert client.dataset(kept.ref) == kept and client.datasets() == [kept]
    assert client.upload(path) == kept
    client.delete_dataset(kept.id)
    with pytest.raises(NotFoundError):
        client.dataset(kept.id)
    with pytest.raises(AnytuneError, match="not a dataset id"):
        client.dataset("sha256:xyz")
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{}\n")
    with pytest.raises(DataError):
        client.upload(broken)
    assert client.datasets() == []
    _ = json  # keep the import used where the file grows


def test_a_server_killed_during_an_upload_keeps_no_half_dataset_and_the_upload_completes(tmp_path):
    """kill -9 while the bytes stream in: nothing half is kept, and the same client call goes on once the
    server is back (from the offset on its disk), ending with the file's own SHA-256."""
    import threading

    data = chat_file(tmp_path / "big.jsonl", 20_000, pad=1000)
    size = data.stat().st_size
    server = _server(tmp_path)
    proxy = CuttingProxy(server.port)
    result: dict[str, Any] = {}

    def upload() -> None:
        try:
            with Client(url=proxy.url) as client:
                result["kept"] = client.upload(data)
        except Exception as exc:  # reported below
            result["error"] = exc

    thread = threading.Thread(target=upload)
    try:
        thread.start()
        deadline = time.monotonic() + 60
        while proxy.up < size // 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill()
        home = tmp_path / "server-home"
        assert not list((home / "storage").rglob("datasets/*"))  # nothing half kept
        server.start()
        thread.join(120)
        assert "error" not in result, result.get("error")
        kept = result["kept"]
        assert kept.id == sha(data) and kept.rows == 20_000
        assert sha(home / "storage" / "datasets" / kept.id.removeprefix("sha256:")) == kept.id
        assert proxy.up < size * 1.5  # went on from the server's offset, not from the start
        assert list((home / "uploads").glob("*.part")) == []
    finally:
        proxy.close()
        server.stop()


@pytest.fixture
def s3_url(monkeypatch):  # type: ignore[no-untyped-def]
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    for key, value in {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    import boto3

    bucket = f"anytune-test-{uuid.uuid4().hex[:8]}"  # moto's state outlives its server: a bucket per test
    boto3.session.Session().client("s3").create_bucket(
        Bucket=bucket
    )  # (not the default session: it keeps its first credentials)
    yield f"s3://{bucket}/team"
    moto.stop()


@pytest.mark.parametrize("kind", ["folder", "s3"])
def test_both_storages_keep_whole_blobs_read_ranges_and_forget(kind, tmp_path, request):
    from anytune.storage import open_storage

    url = request.getfixturevalue("s3_url") if kind == "s3" else str(tmp_path / "blobs")
    storage = open_storage(url)
    source = tmp_path / "source.bin"
    source.write_bytes(bytes(range(256)) * 4096)  # 1 MB
    assert storage.size("datasets/abc") is None and not storage.exists("datasets/abc")
    storage.put_file("datasets/abc", source)
    assert storage.size("datasets/abc") == source.stat().st_size
    assert storage.local_file("datasets/abc").read_bytes() == source.read_bytes()
    assert b"".join(storage.read_range("datasets/abc", 1000, 3000)) == source.read_bytes()[1000:3000]
    assert b"".join(storage.read_range("datasets/abc", 1_048_000)) == source.read_bytes()[1_048_000:]
    storage.delete("datasets/abc")
    assert not storage.exists("datasets/abc")
    with pytest.raises(FileNotFoundError):
        storage.local_file("datasets/abc")
    with pytest.raises(ValueError):
        storage.put_file("../escape", source)


def test_a_server_on_s3_storage_keeps_uploads_there_and_trains_from_them(s3_url, tmp_path, monkeypatch):
    """The storage named by ANYTUNE_STORAGE_URL (moto's S3): uploads land in the bucket, not on the server's
    disk, and a job reads its dataset back from there."""
    monkeypatch.setenv("ANYTUNE_STORAGE_URL", s3_url)
    client = Client()
    path = chat_file(tmp_path / "a.jsonl", 12)
    kept = client.upload(path)
    import boto3

    bucket = s3_url.removeprefix("s3://").split("/")[0]
    listed = boto3.session.Session().client("s3").list_objects_v2(Bucket=bucket, Prefix="team/datasets/")
    assert [o["Key"] for o in listed["Contents"]] == [f"team/datasets/{kept.id.removeprefix('sha256:')}"]
    spec = spec_from_dict(
        {"name": "s3", "base_model": "tiny", "provider": "local", "data": {"train": kept.ref}}, source="test"
    )
    pre = client.preflight(spec, quote_only=True)
    assert pre.data.train.rows == 12 and pre.data.train.fingerprint == kept.fingerprint


def test_a_worker_with_its_own_home_trains_a_job_from_the_storage_and_the_model_is_pullable(
    s3_url, postgres_url, tiny_model, tmp_path
):
    """Three homes: the server (API only; it records checked jobs and leaves the submit to the workers),
    a worker in another process that shares only the database and the S3 storage (moto's server), and the
    client. The client's files go up through the server into the bucket; the worker reads them from there,
    trains, registers, and puts the model's archive in the bucket; the client pulls it through the server."""
    import subprocess
    import sys

    shared = {
        "ANYTUNE_DATABASE_URL": postgres_url,
        "ANYTUNE_STORAGE_URL": s3_url,
        "ANYTUNE_POLL_INTERVAL": "0.1",
    }
    port = free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    server_env = dict(os.environ, ANYTUNE_HOME=str(tmp_path / "server-home"), **shared)
    worker_env = dict(os.environ, ANYTUNE_HOME=str(tmp_path / "worker-home"), **shared)
    with (logs / "server.log").open("wb") as server_log, (logs / "worker.log").open("wb") as worker_log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "anytune",
                "server",
                "--port",
                str(port),
                "--no-auth",
                "--workers",
                "0",
                "--submit-in-workers",
            ],
            env=server_env,
            stdout=server_log,
            stderr=subprocess.STDOUT,
        )
        worker = subprocess.Popen(
            [sys.executable, "-m", "anytune", "worker"],
            env=worker_env,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        client = Client(url=url)
        train = write_jsonl(tmp_path / "client" / "t.jsonl", reversal_rows(16, seed=4))
        spec = spec_from_dict(
            {
                "name": "elsewhere",
                "base_model": str(tiny_model),
                "provider": "local",
                "data": {"train": str(train)},
                "hyperparameters": {"max_steps": 4, "batch_size": 4},
            },
            source="test",
        )
        job = client.submit(spec)  # retried while the server starts
        assert job.provider_status == "queued for a worker"
        job = client.follow(job.id, timeout=300)
        assert job.status.value == "succeeded", (job.error, (logs / "worker.log").read_text()[-3000:])
        assert (
            job.provider_ref is not None and str(tmp_path / "worker-home") in job.provider_ref["data"]["dir"]
        )
        deadline = time.monotonic() + 60
        while not client.models_for_job(job.id) and time.monotonic() < deadline:
            time.sleep(0.2)
        [model] = client.models_for_job(job.id)
        got = client.pull(model.ref, tmp_path / "client" / "model")
        assert sorted(os.listdir(got.artifact.path)) == sorted(model.artifact.files)
        assert not (tmp_path / "server-home" / "storage").exists()  # everything went through the bucket
        client.close()
    finally:
        for proc in (server, worker):
            proc.kill()
            proc.wait()


def test_an_upload_left_unfinished_expires_with_its_bytes(http, anytune_home, monkeypatch):
    started = http.post("/v1/datasets/uploads", json={"name": "left.jsonl", "length": 10_000})
    where = started.headers["location"]
    assert http.patch(where, content=b"x" * 500, headers={"Upload-Offset": "0"}).status_code == 204
    assert len(list((anytune_home / "uploads").glob("*.part"))) == 1
    monkeypatch.setenv("ANYTUNE_UPLOAD_EXPIRY_HOURS", "0")
    http.post(
        "/v1/datasets/uploads", json={"name": "next.jsonl", "length": 10}
    )  # expiry runs on a new upload
    assert http.get(where).status_code == 404
    assert list((anytune_home / "uploads").glob("*.part")) == []


def test_two_requests_never_write_one_upload_at_once(http, anytune_home):
    import fcntl

    started = http.post("/v1/datasets/uploads", json={"name": "twice.jsonl", "length": 1000})
    where, upload_id = started.headers["location"], started.json()["id"]
    assert http.patch(where, content=b"{" * 10, headers={"Upload-Offset": "0"}).status_code == 204
    with (anytune_home / "uploads" / f"{upload_id}.part").open("r+b") as other:  # as a request still writing
        fcntl.flock(other, fcntl.LOCK_EX)
        busy = http.patch(where, content=b"x" * 10, headers={"Upload-Offset": "10"})
    assert busy.status_code == 409 and "another request" in busy.json()["error"]["message"]
    assert http.get(where).json()["offset"] == 10
