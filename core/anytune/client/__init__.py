"""The Python API: one `Client`, two transports.

    from anytune import Client, load_job_file

    client = Client()                                   # the stages run in this process
    client = Client(url="http://host:8000", token=...)  # `anytune server` runs them
    job = client.submit(load_job_file("job.yaml"))
    job = client.follow(job.id)
    result = client.evaluate(job.id)

`Client(...)` gives an `InProcessClient` or a `RemoteClient` (as `pathlib.Path` gives a platform's path):
both are Clients, and both implement `anytune.api.ClientAPI` method for method, where each method is
documented once. The package's modules import this one, never the other way round at import time: the
transport is chosen when a Client is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anytune.api import ClientAPI, EvalTarget, Preflight, ReportFiles, RunObserver, RunResult
from anytune.jobs import Job, JobStatus

if TYPE_CHECKING:
    from anytune.cost.table import QuoteTable
    from anytune.evaluation.runner import EvalResult
    from anytune.spec import JobSpec


class Client(ClientAPI):
    """`Client()` works in this process, on its registry (`registry=` and `plugins=` choose others);
    `Client(url=..., token=...)` is the same interface over HTTP to `anytune server` (the token defaulting to
    `$ANYTUNE_TOKEN`)."""

    def __new__(cls, *args: Any, url: str | None = None, **kwargs: Any) -> Client:
        if cls is Client:
            if url:
                from anytune.client.remote import RemoteClient

                cls = RemoteClient
            else:
                from anytune.client.inprocess import InProcessClient

                cls = InProcessClient
        return super().__new__(cls)

    def run(
        self,
        spec: JobSpec,
        *,
        evaluate: bool = True,
        detach: bool = False,
        interval: float | None = None,
        observer: RunObserver | None = None,
    ) -> RunResult:
        """The walk, the same in both transports (what each does at a step: `_submit_for_run`,
        `_evaluation_of_run`)."""
        seen = observer or RunObserver()
        job = self._submit_for_run(spec, seen)
        seen.submitted(job)
        if detach:
            return RunResult(job)
        job = self.follow(job.id, interval=interval, on_update=seen.progress)
        if not evaluate or job.status is not JobStatus.SUCCEEDED or job.spec.evaluation is None:
            return RunResult(job)
        return RunResult(job, self._evaluation_of_run(job, seen, interval))

    def _submit_for_run(self, spec: JobSpec, seen: RunObserver) -> Job:
        """Checked, recorded and submitted (the preflight shown to `seen` where it runs here)."""
        raise NotImplementedError

    def _evaluation_of_run(self, job: Job, seen: RunObserver, interval: float | None) -> EvalResult:
        """The evaluation of a job that succeeded in `run`."""
        raise NotImplementedError

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def quote(
    spec: JobSpec,
    providers: str | Sequence[str] = "all",
    *,
    hardware: str | Sequence[str] | None = None,
    prices: Sequence[str | Path] = (),
    client: ClientAPI | None = None,
    processes: int | None = None,
) -> QuoteTable:
    """`spec` quoted on every provider named (or all), without recording, uploading or starting anything,
    sorted by price: `anytune.quote(spec, providers="all", hardware="all")`. With `client=Client(url=...)`,
    the server quotes with its plugins and catalog.

    `processes`: 2 quotes the local backend's rows in a second process, 1 everything in this one; None (the
    default) chooses 2 for data of 16 MB or more on a machine with two cores or more."""
    client = client or Client()
    return client.quote(spec, providers, hardware=hardware, prices=prices, processes=processes)


__all__ = [
    "Client",
    "ClientAPI",
    "EvalTarget",
    "Preflight",
    "ReportFiles",
    "RunObserver",
    "RunResult",
    "quote",
]
