"""The service's workers against the Together emulator: they follow jobs other processes submitted to their
end, finish submitting a job whose submitter died without a second provider job, and share the jobs through
leases (on SQLite, and on PostgreSQL with several workers at once)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from anytune.client import Client
from anytune.jobfile import spec_from_dict
from anytune.jobs import JobStatus, utcnow
from anytune.registry.store import Registry
from anytune.registry.tables import JobRow, LeaseRow
from anytune.service.worker import Worker
from tests.conftest import TOGETHER_TEST_KEY, chat_splits, emulated

LLAMA = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    monkeypatch.setenv("ANYTUNE_POLL_INTERVAL", "0")
    with emulated("together", api_key=TOGETHER_TEST_KEY, tick=4.0) as emu:
        yield emu


def spec(data: dict[str, str], name: str):  # type: ignore[no-untyped-def]
    return spec_from_dict(
        {
            "name": name,
            "base_model": LLAMA,
            "provider": "together",
            "data": data,
            "hyperparameters": {"epochs": 1, "batch_size": 8, "learning_rate": 1e-4},
        }
    )


def own_data(tmp_path: Path, seed: int) -> dict[str, str]:
    """Data of its own for each job: Together's SDK backs off for seconds on a file uploaded twice."""
    folder = tmp_path / f"data-{seed}"
    folder.mkdir()
    return chat_splits(folder, seed=seed)


def drive(workers: list[Worker], registry: Registry, job_ids: list[str], rounds: int = 200) -> None:
    for _ in range(rounds):
        for w in workers:
            w.tick()
        if all(registry.get_job(j).status.terminal for j in job_ids):
            return
    raise AssertionError("the jobs did not end")


def lease(registry: Registry, job_id: str) -> LeaseRow:
    with registry.session() as s:
        row = s.get(LeaseRow, job_id)
        assert row is not None
        return row


def test_a_worker_follows_jobs_submitted_elsewhere_to_their_end(emulator, tmp_path: Path):
    submitter = Client()
    jobs = [submitter.submit(spec(own_data(tmp_path, 410 + i), f"w{i}")).id for i in range(3)]
    assert not any(submitter.registry.get_job(j).status.terminal for j in jobs)
    worker = Worker(Client(), lease_s=30)
    drive([worker], submitter.registry, jobs)
    for job_id in jobs:
        job = submitter.registry.get_job(job_id)
        assert job.status is JobStatus.SUCCEEDED and job.artifact is not None
        row = lease(submitter.registry, job_id)
        assert row.stage == "done" and row.owner is None and row.polls >= 2 and 1 <= row.changes <= row.polls
    # one provider job per anytune job, each named after it
    assert len(emulator.job_ids()) == 3
    # a finished job is no longer claimed
    assert worker.tick().claimed == []


def test_a_job_recorded_but_never_confirmed_is_finished_without_a_second_provider_job(emulator, tmp_path):
    client = Client()
    # the submitter died after the provider created the job, before it saved the provider's id
    job = client.submit(spec(own_data(tmp_path, 420), "crashed"))
    with client.registry.session() as s, s.begin():
        s.execute(
            update(JobRow)
            .where(JobRow.id == job.id)
            .values(provider_ref=None, provider_job_id=None, status=JobStatus.PENDING.value)
        )
    # ...and one that died before it reached the provider at all
    pre = client.preflight(spec(own_data(tmp_path, 421), "never-sent"))
    recorded = client.registry.create_job(
        pre.spec, data=pre.prepared.model_dump(mode="json"), dataset_fingerprint=pre.data.train.fingerprint
    )
    assert len(emulator.job_ids()) == 1
    patient = Worker(Client(), submit_grace_s=3600)
    report = patient.tick()
    assert report.resumed == [] and len(emulator.job_ids()) == 1  # its submitter may still be at it
    with client.registry.session() as s, s.begin():  # time passes: both are due again
        s.execute(update(LeaseRow).values(next_poll_at=utcnow()))
    worker = Worker(Client(), submit_grace_s=0)
    drive([worker], client.registry, [job.id, recorded.id])
    assert client.registry.get_job(job.id).status is JobStatus.SUCCEEDED
    assert client.registry.get_job(recorded.id).status is JobStatus.SUCCEEDED
    assert len(emulator.job_ids()) == 2  # found the first one again, submitted the second once


def test_a_resubmit_cut_short_is_tried_again_as_its_own_event(emulator, tmp_path):
    from anytune.jobs import Event, EventKind

    client = Client()
    pre = client.preflight(spec(own_data(tmp_path, 430), "cut-short"))
    recorded = client.registry.create_job(
        pre.spec, data=pre.prepared.model_dump(mode="json"), dataset_fingerprint=pre.data.train.fingerprint
    )
    # a worker began resubmitting it and was killed before the provider had the job
    client.registry.add_events(
        recorded.id, [Event(kind=EventKind.STATUS, message="resubmitting to together")]
    )
    client.resume(recorded.id)
    messages = [e.message for e in client.registry.events(recorded.id, kind="status")]
    assert messages.count("resubmitting to together") == 1
    assert "resubmitting to together (attempt 2)" in messages
    assert len(emulator.job_ids()) == 1


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_claimed_job_waits_for_its_lease_then_is_taken_over(emulator, tmp_path, request, database):
    registry = Registry(request.getfixturevalue("postgres_url")) if database == "postgresql" else None
    client = Client(registry=registry)

    def another() -> Client:
        return Client(registry=Registry(registry.url)) if registry is not None else Client()

    job = client.submit(spec(own_data(tmp_path, 430), "lease"))
    dead = Worker(another(), name="dead", lease_s=0.6)
    dead._adopt_new_jobs()
    assert dead._claim() == [job.id]  # and then it is killed: it never releases
    alive = Worker(another(), name="alive", lease_s=30)
    assert alive.tick().claimed == []
    time.sleep(0.7)
    assert alive.tick().claimed == [job.id]
    drive([alive], client.registry, [job.id])
    assert client.registry.get_job(job.id).status is JobStatus.SUCCEEDED


@pytest.mark.parametrize("count", [2, 4])
def test_workers_on_postgresql_never_poll_one_job_at_once(emulator, tmp_path, postgres_url, count):
    emulator.clock.tick = 0.5  # slow time: every job takes several polls, so overlapping ones would show
    # slow answers to every read of a job, so that two polls of one job at once would overlap at the emulator
    emulator.faults.add(method="GET", path=r"/v1/fine-tunes/ft-[^/]+(/events)?", delay=0.05, times=10**6)
    registries = [Registry(postgres_url) for _ in range(count + 1)]
    submitter = Client(registry=registries[0])
    jobs = [submitter.submit(spec(own_data(tmp_path, 440 + i), f"pg{i}")).id for i in range(4)]
    submitted = time.monotonic()
    polls: list[tuple[str, str, float, float]] = []  # job, worker, start, end
    lock = threading.Lock()

    def timed(client: Client, name: str) -> Client:
        refresh = client.refresh

        def wrapper(job_id: str):  # type: ignore[no-untyped-def]
            start = time.monotonic()
            try:
                return refresh(job_id)
            finally:
                with lock:
                    polls.append((job_id, name, start, time.monotonic()))

        client.refresh = wrapper  # type: ignore[method-assign]
        return client

    workers = [
        Worker(timed(Client(registry=r), f"w{i}"), name=f"w{i}", lease_s=30, batch=2, idle_s=0.01)
        for i, r in enumerate(registries[1:])
    ]
    stop = threading.Event()
    threads = [threading.Thread(target=w.run, args=(stop,)) for w in workers]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(
        submitter.registry.get_job(j).status.terminal for j in jobs
    ):
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join()
    assert all(submitter.registry.get_job(j).status is JobStatus.SUCCEEDED for j in jobs)
    assert len(emulator.job_ids()) == len(jobs)
    by_job: dict[str, list[tuple[str, float, float]]] = {}
    for job_id, name, start, end in polls:
        by_job.setdefault(job_id, []).append((name, start, end))
    # The emulator's own log: no two reads of one provider job in flight at once, and each read falls inside
    # one worker's poll of that job (so reads by two workers never interleave either).
    provider_ids = {j: submitter.registry.get_job(j).provider_job_id for j in jobs}
    for job_id, ft in provider_ids.items():
        reads = sorted(
            (
                e
                for e in emulator.recorder.exchanges
                if e.method == "GET" and e.path.startswith(f"/v1/fine-tunes/{ft}")
            ),
            key=lambda e: e.started,
        )
        assert len(reads) >= 3
        for a, b in itertools.pairwise(reads):
            assert b.started >= a.at, f"{ft} was read twice at once: {a.path} and {b.path}"
        for e in (e for e in reads if e.started > submitted):  # the submitter's own read is before
            owners = {n for n, start, end in by_job[job_id] if start <= e.started and e.at <= end}
            assert len(owners) == 1, f"a read of {ft} at {e.started} fell in {len(owners)} workers' polls"
    # and the workers' own record of their polls says the same
    assert all(len(spans) >= 2 for spans in by_job.values())  # each job was polled more than once
    for job_id, spans in by_job.items():
        spans.sort(key=lambda s: s[1])
        for (_, _, end), (_, start, _) in itertools.pairwise(spans):
            assert start >= end, f"job {job_id} was polled by two workers at once"
    assert len({name for _, name, _, _ in polls}) > 1  # the work was shared
    for r in registries:
        r.engine.dispose()


class Receiver:
    """A webhook receiver on 127.0.0.1 that refuses its first `fail` requests with 500."""

    def __init__(self, fail: int = 0) -> None:
        import http.server

        self.fail = fail
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 500 if outer.fail > 0 else 204
                outer.fail -= 1
                outer.requests.append((dict(self.headers), body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_webhooks_deliver_every_event_signed_in_order_at_least_once(emulator, tmp_path, monkeypatch):
    from anytune.service import webhooks

    monkeypatch.setattr(webhooks, "SETTLE_S", 0.0)
    monkeypatch.setattr(webhooks, "MAX_BACKOFF_S", 0.05)
    receiver = Receiver(fail=2)
    try:
        client = Client()
        info, secret = webhooks.add_webhook(client.registry, receiver.url)
        job = client.submit(spec(own_data(tmp_path, 450), "hooked"))
        worker = Worker(Client(), lease_s=30)
        drive([worker], client.registry, [job.id])
        recorded = [f"{job.id}:{e.seq}" for e in client.registry.events(job.id)]
        for _ in range(200):
            worker.tick()
            if sum(1 for _, _, status in receiver.requests if status == 204) >= len(recorded):
                break
            time.sleep(0.01)
    finally:
        receiver.close()
    accepted = [h["X-Anytune-Event-Id"] for h, _, status in receiver.requests if status == 204]
    assert accepted == recorded  # every event, in order, each accepted once
    refused = [h["X-Anytune-Event-Id"] for h, _, status in receiver.requests if status == 500]
    assert refused == [recorded[0], recorded[0]]  # retried with the same id: receivers drop repeats by it
    for headers, body, _ in receiver.requests:
        assert webhooks.verify_signature(secret, body, headers["X-Anytune-Signature"])
        assert not webhooks.verify_signature("wrong", body, headers["X-Anytune-Signature"])
        sent = json.loads(body)
        assert sent["id"] == headers["X-Anytune-Event-Id"] and sent["job"]["id"] == job.id
    [hook] = webhooks.list_webhooks(client.registry)
    assert hook.id == info.id and hook.delivered == len(recorded) and hook.failures == 0


def test_a_provider_limit_holds_across_workers(emulator, tmp_path):
    client = Client()
    jobs = [client.submit(spec(own_data(tmp_path, 460 + i), f"lim{i}")).id for i in range(3)]
    other = Worker(Client(), name="other", lease_s=0.6, batch=1)
    other._adopt_new_jobs()
    assert len(other._claim()) == 1  # holds one together job (and never lets it go)
    limited = Worker(Client(), name="limited", lease_s=30, limits={"together": 1})
    assert limited._claim() == []  # the provider's one slot is taken, by another worker
    time.sleep(0.7)  # that lease runs out
    claimed = limited._claim()
    assert len(claimed) == 1 and claimed[0] in jobs
    limited.leases.release(claimed[0], limited.name, delay=0)
    drive([limited], client.registry, jobs)
    assert all(client.registry.get_job(j).status is JobStatus.SUCCEEDED for j in jobs)
