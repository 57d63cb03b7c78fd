"""Workers: follow every job that has not ended, on any provider, without a terminal open; evaluate it after
success; finish submitting a job whose submitter died. Several workers share one registry through leases.

A worker claims due jobs in one transaction: it selects lease rows that are due and free (no owner, or an
owner whose lease has run out) with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so two workers scanning at once
take different rows, and writes its name and an expiry on them. SQLite has no row locks: there the claim is
the same statement under SQLite's single writer, and the server runs one worker. A claim is a lease, not a
lock held open: a worker killed with SIGKILL holds its jobs only until the lease expires, then any worker
takes them over. Work done twice after a takeover is harmless by construction: `Client.refresh` drops a poll
another process recorded first, and `Client.resume` asks the provider (`find_existing`) before submitting.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from anytune.client import Client
from anytune.errors import AnytuneError, BackendError
from anytune.jobs import Event, JobStatus, utcnow
from anytune.registry.access import submit_grace_s as submit_grace_s_default
from anytune.registry.tables import JobRow, LeaseRow
from anytune.service.webhooks import Deliverer

log = logging.getLogger("anytune.worker")

TERMINAL = tuple(s.value for s in JobStatus if s.terminal)
MAX_BACKOFF_S = 300.0


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

    `lease_s`: how long a claim holds (a killed worker's jobs wait this long); `batch`: jobs claimed per
    pass; `submit_grace_s`: how old an unconfirmed job must be before this worker finishes submitting it."""

    def __init__(
        self,
        client: Client,
        *,
        name: str | None = None,
        lease_s: float = 120.0,
        batch: int = 16,
        idle_s: float = 1.0,
        submit_grace_s: float | None = None,
        evaluate: bool = True,
        limits: Mapping[str, int] | None = None,
    ) -> None:
        self.client = client
        self.name = name or worker_name()
        self.lease_s = lease_s
        self.batch = batch
        self.idle_s = idle_s
        self.submit_grace_s = submit_grace_s if submit_grace_s is not None else submit_grace_s_default()
        self.evaluate = evaluate
        self.webhooks = Deliverer(client.registry, owner=self.name)
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
                self._release(job_id, delay=self._backoff(job_id), ok=False)
        try:
            report.delivered = self.webhooks.tick()
        except Exception as exc:  # a webhook's trouble never stops the jobs
            log.warning("worker %s: webhooks: %s", self.name, exc)
        return report

    # ------------------------------------------------------------------------------------------ claims

    def _adopt_new_jobs(self) -> None:
        """A lease row for every job that has not ended and has none yet (jobs submitted by any process)."""
        registry = self.client.registry
        now = utcnow()
        with registry.session() as s:
            missing = s.scalars(
                select(JobRow.id)
                .outerjoin(LeaseRow, LeaseRow.job_id == JobRow.id)
                .where(LeaseRow.job_id.is_(None), JobRow.status.not_in(TERMINAL))
                .limit(500)
            ).all()
        for job_id in missing:
            try:
                with registry.session() as s, s.begin():
                    s.add(
                        LeaseRow(
                            job_id=job_id, next_poll_at=now, stage="follow", polls=0, failures=0, errors=0
                        )
                    )
            except IntegrityError:  # another worker adopted it first
                pass

    def _claim(self) -> list[str]:
        now = utcnow()
        free = or_(LeaseRow.owner.is_(None), LeaseRow.expires_at < now, LeaseRow.owner == self.name)
        with self.client.registry.session() as s, s.begin():
            rows = s.execute(
                select(LeaseRow.job_id, JobRow.provider)
                .join(JobRow, JobRow.id == LeaseRow.job_id)
                .where(LeaseRow.stage != "done", LeaseRow.next_poll_at <= now, free)
                .order_by(LeaseRow.next_poll_at)
                .limit(self.batch * (4 if self.limits else 1))
                .with_for_update(skip_locked=True, of=LeaseRow)
            ).all()
            ids = self._within_limits(s, rows, now)
            if not ids:
                return []
            s.execute(
                update(LeaseRow)
                .where(LeaseRow.job_id.in_(ids), free)
                .values(owner=self.name, expires_at=now + timedelta(seconds=self.lease_s))
            )
        return ids

    def _within_limits(self, s: Any, rows: Sequence[Any], now: datetime) -> list[str]:
        """The claimable jobs, keeping each limited provider under its number of jobs held at once by all
        workers together (ANYTUNE_PROVIDER_CONCURRENCY="openai=4,together=8")."""
        if not self.limits:
            return [job_id for job_id, _ in rows][: self.batch]
        held = dict(
            s.execute(
                select(JobRow.provider, func.count())
                .join(LeaseRow, LeaseRow.job_id == JobRow.id)
                .where(LeaseRow.owner.is_not(None), LeaseRow.expires_at >= now, LeaseRow.owner != self.name)
                .group_by(JobRow.provider)
            ).all()
        )
        ids: list[str] = []
        for job_id, provider in rows:
            limit = self.limits.get(provider)
            if limit is not None and held.get(provider, 0) >= limit:
                continue
            held[provider] = held.get(provider, 0) + 1
            ids.append(job_id)
            if len(ids) >= self.batch:
                break
        return ids

    def _release(
        self,
        job_id: str,
        *,
        delay: float,
        stage: str | None = None,
        polled: bool = False,
        ok: bool = True,
        changed: bool = False,
    ) -> None:
        values: dict[str, object] = {
            "owner": None,
            "expires_at": None,
            "next_poll_at": utcnow() + timedelta(seconds=delay),
        }
        if stage is not None:
            values["stage"] = stage
        if polled:
            values["polls"] = LeaseRow.polls + 1
        if ok:
            values["failures"] = 0
        if changed:
            values["changes"] = LeaseRow.changes + 1
        with self.client.registry.session() as s, s.begin():
            s.execute(
                update(LeaseRow)
                .where(and_(LeaseRow.job_id == job_id, LeaseRow.owner == self.name))
                .values(**values)
            )

    def _lease(self, job_id: str) -> LeaseRow | None:
        with self.client.registry.session() as s:
            return s.get(LeaseRow, job_id)

    def _backoff(self, job_id: str) -> float:
        with self.client.registry.session() as s, s.begin():
            row = s.get(LeaseRow, job_id)
            if row is None:
                return 5.0
            row.failures += 1
            row.errors += 1
            return min(MAX_BACKOFF_S, 5.0 * 2 ** (row.failures - 1))

    # -------------------------------------------------------------------------------------------- work

    def _work(self, job_id: str, report: TickReport) -> None:
        lease = self._lease(job_id)
        job = self.client.registry.get_job(job_id)
        if lease is not None and lease.stage == "evaluate":
            self._evaluate(job_id, report)
            return
        if job.status is JobStatus.PENDING and job.provider_ref is None:
            age = (utcnow() - job.updated_at).total_seconds()
            if age < self.submit_grace_s:  # its submitter may still be at it: look again later
                self._release(job_id, delay=min(self.submit_grace_s - age, 30.0))
                return
            job = self.client.resume(job_id)  # find_existing first: never a second paid job
            report.resumed.append(job_id)
            changed = True
        else:
            started, before = time.perf_counter(), job.status
            try:
                job = self.client.refresh(job_id)
            except BackendError as exc:
                if not exc.retryable:
                    raise
                self._release(job_id, delay=self._backoff(job_id), polled=True, ok=False)
                return
            finally:
                POLL_SECONDS.observe(job.provider, time.perf_counter() - started)
            report.polled.append(job_id)
            changed = job.status is not before
        if not job.status.terminal:
            self._release(job_id, delay=self.client.poll_delay(job_id), polled=True, changed=changed)
            return
        if job.status is JobStatus.SUCCEEDED and self.evaluate and job.spec.evaluation is not None:
            self._release(job_id, delay=0, stage="evaluate", polled=True, changed=changed)
            self._claim_again(job_id)
            self._evaluate(job_id, report)
            return
        self._release(job_id, delay=0, stage="done", polled=True, changed=changed)
        report.finished.append(job_id)

    def _claim_again(self, job_id: str) -> None:
        """Take the job back for its evaluation, with a lease long enough for one (it runs the model)."""
        now = utcnow()
        with self.client.registry.session() as s, s.begin():
            s.execute(
                update(LeaseRow)
                .where(LeaseRow.job_id == job_id, or_(LeaseRow.owner.is_(None), LeaseRow.expires_at < now))
                .values(owner=self.name, expires_at=now + timedelta(seconds=max(self.lease_s, 3600)))
            )

    def _evaluate(self, job_id: str, report: TickReport) -> None:
        """The spec's evaluation, its result recorded as the job's event `evaluated` (a client that is not
        here, `anytune run` against the server, prints the table from it)."""
        try:
            result = self.client.evaluate(job_id, on_progress=lambda _s: None)
        except AnytuneError as exc:
            log.warning("worker %s: evaluating %s failed: %s", self.name, job_id, exc.message)
            report.errors[job_id] = exc.message
            event = Event(
                level="error", message=f"evaluation failed: {exc.message}", data={"evaluation": None}
            )
        else:
            report.evaluated.append(job_id)
            shown = result.model_copy(update={"examples": result.examples[:3], "references": []})
            event = Event(message="evaluated", data={"evaluation": shown.model_dump(mode="json")})
        self.client.registry.add_events(job_id, [event])
        self._release(job_id, delay=0, stage="done")
        report.finished.append(job_id)
