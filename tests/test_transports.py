"""One interface, two transports: `Client()` runs the stages in this process, `Client(url=...)` asks a server
that runs them. Both implement `anytune.api.ClientAPI` method for method (same signatures), and the same
behavioural tests pass against both: the server here is a real uvicorn server on 127.0.0.1 with a worker,
over the real OpenAI backend and its emulator, exactly what `anytune server --workers 1` runs."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anytune.api import ClientAPI, RunObserver
from anytune.client import Client
from anytune.client.inprocess import InProcessClient
from anytune.client.remote import RemoteClient
from anytune.errors import CapabilityError, DataError, NotFoundError
from anytune.jobfile import spec_from_dict
from anytune.jobs import Event, Job, JobStatus
from anytune.spec import JobSpec
from tests.conftest import chat_splits, write_jsonl

pytest.importorskip("fastapi")

API = sorted(name for name, value in vars(ClientAPI).items() if callable(value) and not name.startswith("_"))
# what each transport has beyond the interface, on purpose (the in-process one runs the stages itself)
EXTRAS = {
    InProcessClient: {"backend", "in_project", "preflight", "submit_prepared"},
    RemoteClient: {"call"},
}


def test_both_transports_implement_the_interface_method_for_method():
    assert len(API) >= 25
    for transport in (InProcessClient, RemoteClient):
        assert issubclass(transport, Client)
        for name in API:  # implemented by the transport, or once for both by the Client (the walk: run)
            assert getattr(transport, name) is not getattr(ClientAPI, name), (
                f"{transport.__name__}: no {name}"
            )
            theirs = inspect.signature(getattr(transport, name))
            ours = inspect.signature(getattr(ClientAPI, name))
            assert theirs == ours, f"{transport.__name__}.{name}{theirs} is not ClientAPI.{name}{ours}"
        public = {n for n, v in vars(transport).items() if callable(v) and not n.startswith("_")}
        assert public - set(API) == EXTRAS[transport]


def test_client_picks_its_transport_by_url():
    assert type(Client()) is InProcessClient
    remote = Client(url="http://127.0.0.1:9")
    assert type(remote) is RemoteClient and isinstance(remote, Client)
    remote.close()


# ------------------------------------------------------------------------------------------ the suite


@pytest.fixture(params=["in-process", "server"])
def client(request: pytest.FixtureRequest, openai_emu: Any) -> Iterator[ClientAPI]:
    if request.param == "in-process":
        yield Client()
        return
    yield from _served()


def _served() -> Iterator[ClientAPI]:
    """A server over this test's registry (`anytune server --workers 1`, in threads), and a client of it."""
    from anytune.registry import Registry
    from anytune.registry.access import create_token
    from anytune.service.app import create_app
    from anytune.service.worker import Worker
    from anytune.testing.server import EmulatorServer

    registry = Registry()
    served = InProcessClient(registry)
    token, _ = create_token(registry, "transports", "submit")
    worker = Worker(served, lease_s=30, idle_s=0.02)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    with EmulatorServer(create_app(served)) as server:
        thread.start()
        remote = Client(url=server.url, token=token)
        try:
            yield remote
        finally:
            remote.close()
            stop.set()
            thread.join(timeout=30)


def job(tmp_path: Path, seed: int = 5, **extra: Any) -> JobSpec:
    return spec_from_dict(
        {
            "name": "both-ways",
            "base_model": "gpt-4o-mini",
            "provider": "openai",
            "data": chat_splits(tmp_path / f"data{seed}", seed=seed),
            "hyperparameters": {"epochs": 1},
            **extra,
        }
    )


class Seen(RunObserver):
    def __init__(self) -> None:
        self.stages: list[str] = []
        self.events: list[Event] = []

    def submitted(self, job: Job) -> None:
        self.stages.append("submitted")

    def progress(self, job: Job, events: list[Event]) -> None:
        self.events += events
        if job.status.terminal and "ended" not in self.stages:
            self.stages.append("ended")

    def evaluating(self, stage: str) -> None:
        if "evaluating" not in self.stages:
            self.stages.append("evaluating")


def test_a_job_runs_to_its_evaluation_and_is_read_back_the_same_way(client: ClientAPI, tmp_path: Path):
    seen = Seen()
    spec = job(tmp_path, evaluation={"metrics": ["exact_match", "token_f1"], "limit": 6})
    done = client.run(spec, interval=0.05, observer=seen)
    assert done.job.status is JobStatus.SUCCEEDED
    assert seen.stages == ["submitted", "ended", "evaluating"]
    assert any(e.kind.value == "status" for e in seen.events)
    assert done.evaluation is not None and done.evaluation.n == 6
    assert [s.subject for s in done.evaluation.subjects] == ["base", "fine-tuned"]
    # read back: the job, its events, its model, its stored scores
    assert client.get_job(done.job.id[:14]).id == done.job.id
    assert [j.id for j in client.list_jobs()] == [done.job.id]
    assert client.list_jobs(active=True) == []
    events = client.events(done.job.id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert any(e.message == "evaluated" for e in events)
    assert client.events(done.job.id, after=events[-2].seq) == events[-1:]
    [model] = client.models_for_job(done.job.id)
    assert model.ref == "both-ways@1" and client.get_model("both-ways").version == 1
    assert {e.subject for e in client.evaluations(job_id=done.job.id)} == {"base", "fine-tuned"}
    target = client.resolve_target("both-ways@1")
    assert target.job is not None and target.job.id == done.job.id and target.base_model == model.base_model


def test_aliases_move_and_come_off(client: ClientAPI, tmp_path: Path):
    first = client.follow(client.submit(job(tmp_path)).id, interval=0.05)
    second = client.follow(client.submit(job(tmp_path, seed=6)).id, interval=0.05)
    assert (first.status, second.status) == (JobStatus.SUCCEEDED, JobStatus.SUCCEEDED)
    assert client.set_alias("both-ways", "production", 1).aliases == ["production"]
    client.set_alias("both-ways", "production", 2)
    assert client.get_model("both-ways@production").version == 2
    client.remove_alias("both-ways", "production")
    with pytest.raises(NotFoundError):
        client.get_model("both-ways@production")
    newest_first = client.list_jobs()
    assert [j.id for j in newest_first] == [second.id, first.id]
    assert [j.id for j in client.list_jobs(after=second.id)] == [first.id]


def test_bad_data_is_refused_with_its_lines_and_nothing_is_recorded(client: ClientAPI, tmp_path: Path):
    spec = job(tmp_path)
    broken = write_jsonl(tmp_path / "broken.jsonl", ['{"messages": "no"}', "{not json"])
    with pytest.raises(DataError) as refused:
        client.submit(spec.model_copy(update={"data": spec.data.model_copy(update={"train": str(broken)})}))
    text = "\n".join(refused.value.details)
    assert "broken.jsonl:1" in text and "broken.jsonl:2" in text
    assert client.list_jobs() == []


def test_errors_are_the_same_classes_through_either(client: ClientAPI, tmp_path: Path):
    with pytest.raises(NotFoundError):
        client.get_job("job-nope")
    with pytest.raises(NotFoundError):
        client.get_model("no-such-model")
    done = client.follow(client.submit(job(tmp_path)).id, interval=0.05)
    with pytest.raises(CapabilityError):  # OpenAI cannot continue from a checkpoint
        client.continue_job(done.id)


def test_a_cancelled_job_ends_cancelled(client: ClientAPI, tmp_path: Path, openai_emu: Any):
    submitted = client.submit(job(tmp_path))
    cancelled = client.cancel(submitted.id)
    ended = client.follow(cancelled.id, interval=0.05, timeout=60)
    assert ended.status is JobStatus.CANCELLED


def test_quotes_scores_and_reports(client: ClientAPI, tmp_path: Path):
    spec = job(tmp_path, evaluation={"metrics": ["exact_match"], "limit": 4})
    table = client.quote(spec, "openai")
    [row] = table.quotes
    assert row.provider == "openai" and row.available and row.price is not None and row.billable_tokens
    done = client.run(spec, interval=0.05)
    again = client.evaluate_targets([done.job.id], changes={"limit": 3, "compare_base": False})
    assert again.n == 3 and [s.subject for s in again.subjects] == ["fine-tuned"]
    written = client.report([done.job.id], tmp_path / "report")
    assert written.html.exists() and written.markdown.exists()
    assert done.job.id in written.html.read_text() or "fine-tuned" in written.html.read_text()


def test_a_python_grader_file_scores_as_a_metric_through_either_transport(
    client: ClientAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The grader's file is on this machine: a server gets its source (it may not read the file, and here is
    fenced off from it)."""
    from anytune.spec import EvalSpec

    done = client.run(job(tmp_path, evaluation=None), interval=0.05)
    grader = tmp_path / "graders" / "same.py"
    grader.parent.mkdir()
    grader.write_text(
        "def grade(sample, item):\n    return float(sample['output_text'] == item['reference'])\n"
    )
    if isinstance(client, RemoteClient):
        monkeypatch.setenv("ANYTUNE_DATA_ROOT", str(tmp_path / "the-server-reads-nothing-here"))
    metrics = ["exact_match", {"grader": {"type": "python", "path": str(grader)}, "name": "same"}]
    result = client.evaluate(done.job.id, EvalSpec(metrics=metrics, limit=4))
    for subject in result.subjects:
        assert subject.metrics["same"] == subject.metrics["exact_match"], subject
    assert [c.metric for c in result.comparisons] == ["exact_match", "same"]
