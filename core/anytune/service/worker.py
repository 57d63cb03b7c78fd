"""Workers: follow every job that has not ended, on any provider, without a terminal open; evaluate it after
success; finish submitting a job whose submitter died. Several workers share one registry through leases
(`anytune.registry.leases`): a worker claims due jobs, works on them and releases each with the time it is
next due. A worker killed with SIGKILL holds its jobs only until its lease expires, then any worker takes
them over. Work done twice after a takeover is harmless by construction: `refresh` drops a poll another
process recorded first, and `resume` asks the provider (`find_existing`) before submitting.

What is done per job is the Client's own work (`refresh`, `resume`, `evaluate`): the service has no second
code path for following a job.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from anytune.client.inprocess import InProcessClient
from anytune.errors import AnytuneError, BackendError
from anytune.jobs import JobStatus, utcnow
from anytune.pipeline.submit import QUEUED
from anytune.registry import Registry
from anytune.registry.access import submit_grace_s as submit_grace_s_default
from anytune.registry.leases import Leases
from anytune.service.webhooks import Deliverer

log = logging.getLogger("anytune.worker")

# A job recorded but not yet confirmed is looked at again this soon: most submits take seconds, and a worker
# that waited longer would start following a job its client (`anytune run` through the server) waits on
# long after the provider had it.
SUBMITTING_RECHECK_S = 1.0


class PollTimes:
    """Seconds per poll, by provider, of the workers in this process (Prometheus' summary: sum and count)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.totals: dict[str, tuple[int, float]] = {}

    def snapshot(self) -> dict[str, tuple[int, float]]:
        with self._lock:
            return dict(self.totals)

    def observe(self, provider: str, seconds: float) -> None:
        with self._lock:
            count, total = self.totals.get(provider, (0, 0.0))
            self.totals[provider] = (count + 1, total + seconds)


POLL_SECONDS = PollTimes()


def provider_limits() -> dict[str, int]:
    """$ANYTUNE_PROVIDER_CONCURRENCY ("openai=4,together=8"): jobs of a provider worked on at once, by all
    workers together (a provider's rate limit shared by many jobs); providers not named are not limited."""
    limits: dict[str, int] = {}
    for item in os.environ.get("ANYTUNE_PROVIDER_CONCURRENCY", "").split(","):
        name, _, value = item.partition("=")
        if name.strip() and value.strip().isdigit() and int(value) > 0:
            limits[name.strip()] = int(value)
    return limits


def lease_s_default() -> float:
    """120 s, or `$ANYTUNE_LEASE_S`: how long a killed worker's jobs wait before another takes them (crash
    rehearsals shorten it, so that their length does not hang on where the kills land)."""
    return float(os.environ.get("ANYTUNE_LEASE_S") or 120.0)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class TickReport:
    """What one pass of a worker did (tests and metrics read it)."""

    claimed: list[str] = field(default_factory=list)
    polled: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    evaluated: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    delivered: int = 0  # webhook deliveries


class Worker:
    """`Worker(client).run(stop_event)`, or `tick()` for one pass (tests drive it that way).

    `lease_s`: how long a claim holds (a killed worker's jobs wait this long; `$ANYTUNE_LEASE_S`, 120 s);
    `batch`: jobs claimed per pass; `submit_grace_s`: how old an unconfirmed job must be before this worker
    finishes submitting it. `registry`: where the leases and webhooks are (the client's, which is the default)."""

    def __init__(
        self,
        client: InProcessClient,
        *,
        registry: Registry | None = None,
        name: str | None = None,
        lease_s: float | None = None,
        batch: int = 16,
        idle_s: float = 1.0,
        submit_grace_s: float | None = None,
        evaluate: bool = True,
        limits: Mapping[str, int] | None = None,
    ) -> None:
        self.client = client
        self.name = name or worker_name()
        self.lease_s = lease_s if lease_s is not None else lease_s_default()
        self.batch = batch
        self.idle_s = idle_s
        self.submit_grace_s = submit_grace_s if submit_grace_s is not None else submit_grace_s_default()
        self.evaluate = evaluate
        # every project's jobs and webhooks: each job is then worked on in its own project (`_work`)
        registry = (registry if registry is not None else client.pipeline.registry).everywhere()
        self.everywhere = registry
        self.leases = Leases(registry)
        self.webhooks = Deliverer(registry, owner=self.name)
        self.limits = dict(limits) if limits is not None else provider_limits()

    # ------------------------------------------------------------------------------------------- loop

    def run(self, stop: threading.Event) -> None:
        log.info("worker %s started", self.name)
        while not stop.is_set():
            try:
                report = self.tick()
            except Exception:  # the database went away for a moment: try again, never die
                log.exception("worker %s: a pass failed", self.name)
                report = TickReport()
            if not report.claimed and not report.delivered:
                stop.wait(self.idle_s)
        log.info("worker %s stopped", self.name)

    def tick(self) -> TickReport:
        report = TickReport()
        self._adopt_new_jobs()
        for job_id in self._claim():
            report.claimed.append(job_id)
            try:
                self._work(job_id, report)
            except Exception as exc:  # one job's trouble never stops the others
                report.errors[job_id] = str(exc)
                log.warning("worker %s: job %s: %s", self.name, job_id, exc)
                wait = getattr(exc, "retry_after", None) or 0.0  # a provider's own "not before"
                self.leases.release(job_id, self.name, delay=max(self._backoff(job_id), wait), ok=False)
        try:
            report.delivered = self.webhooks.tick()
        except Exception as exc:  # a webhook's trouble never stops the jobs
            log.warning("worker %s: webhooks: %s", self.name, exc)
        return report

    # ------------------------------------------------------------------------------------------ claims

    def _adopt_new_jobs(self) -> None:
        self.leases.adopt_new_jobs()

    def _claim(self) -> list[str]:
        return self.leases.claim(self.name, batch=self.batch, lease_s=self.lease_s, limits=self.limits)

    def _backoff(self, job_id: str) -> float:
        return self.leases.backoff(job_id)

    # -------------------------------------------------------------------------------------------- work

    def _work(self, job_id: str, report: TickReport) -> None:
        lease = self.leases.get(job_id)
        job = self.everywhere.get_job(job_id)
        client = self.client.in_project(job.project)  # what it registers, evaluates and reads goes there
        if lease is not None and lease.stage == "evaluate":
            self._evaluate(client, job_id, report)
            return
        if job.status is JobStatus.PENDING and job.provider_ref is None:
            age = (utcnow() - job.updated_at).total_seconds()
            if (
                age < self.submit_grace_s and job.provider_status != QUEUED
            ):  # its submitter may still be at it (seconds, usually): look again soon
                self.leases.release(
                    job_id, self.name, delay=min(self.submit_grace_s - age, SUBMITTING_RECHECK_S)
                )
                return
            job = client.resume(job_id)  # find_existing first: never a second paid job (a queued one: now)
            report.resumed.append(job_id)
            changed = True
        else:
            started, before = time.perf_counter(), job.status
            try:
                job = client.refresh(job_id)
            except BackendError as exc:
                if not exc.retryable:
                    raise
                self.leases.release(job_id, self.name, delay=self._backoff(job_id), polled=True, ok=False)
                return
            finally:
                POLL_SECONDS.observe(job.provider, time.perf_counter() - started)
            report.polled.append(job_id)
            changed = job.status is not before
        if not job.status.terminal:
            self.leases.release(
                job_id, self.name, delay=client.poll_delay(job_id), polled=True, changed=changed
            )
            return
        if job.status is JobStatus.SUCCEEDED and self.evaluate and job.spec.evaluation is not None:
            self.leases.release(job_id, self.name, delay=0, stage="evaluate", polled=True, changed=changed)
            self._claim_again(job_id)
            self._evaluate(client, job_id, report)
            return
        self.leases.release(job_id, self.name, delay=0, stage="done", polled=True, changed=changed)
        report.finished.append(job_id)

    def _claim_again(self, job_id: str) -> None:
        """Take the job back for its evaluation, with a lease long enough for one (it runs the model)."""
        self.leases.claim_again(job_id, self.name, max(self.lease_s, 3600))

    def _evaluate(self, client: InProcessClient, job_id: str, report: TickReport) -> None:
        """The spec's evaluation; the Client notes its result in the job's log (`evaluated`, with the scores)
        where a client that is not here (`anytune run` against the server) reads it."""
        try:
            client.evaluate(job_id, on_progress=lambda _s: None)
        except AnytuneError as exc:
            log.warning("worker %s: evaluating %s failed: %s", self.name, job_id, exc.message)
            report.errors[job_id] = exc.message
        else:
            report.evaluated.append(job_id)
        self.leases.release(job_id, self.name, delay=0, stage="done")
        report.finished.append(job_id)
