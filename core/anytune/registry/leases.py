"""Leases: which worker follows which job, and when each job is next due. The service's workers share the
jobs of one registry through these rows (`anytune.service.worker` decides what to do; this module is the
SQL that makes claims safe).

A claim selects due, free rows (no owner, or an owner whose lease has run out) with `FOR UPDATE SKIP
LOCKED` on PostgreSQL, so two workers scanning at once take different rows, and writes its owner and an
expiry on them. SQLite has no row locks: there the claim is the same statement under SQLite's single
writer. A claim is a lease, not a lock held open: a worker killed with SIGKILL holds its jobs only until
the lease expires.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from anytune.jobs import JobStatus, utcnow
from anytune.registry.store import Registry
from anytune.registry.tables import JobRow, LeaseRow

TERMINAL = tuple(s.value for s in JobStatus if s.terminal)
MAX_BACKOFF_S = 300.0


@dataclass(frozen=True)
class Lease:
    """A job's lease as a worker reads it: the stage it is at (follow, evaluate, done)."""

    job_id: str
    stage: str


@dataclass(frozen=True)
class LeaseCounts:
    """What Prometheus is told: jobs by provider and status, and the workers' polls, errors and status
    changes by provider, and the jobs leased right now."""

    jobs: list[tuple[str, str, int]]  # provider, status, count
    polls: list[tuple[str, int, int, int]]  # provider, polls, errors, changes
    leased: list[tuple[str, int]]  # provider, jobs held


class Leases:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def adopt_new_jobs(self) -> None:
        """A lease row for every job that has not ended and has none yet (jobs submitted by any process)."""
        now = utcnow()
        with self.registry.session() as s:
            missing = s.scalars(
                select(JobRow.id)
                .outerjoin(LeaseRow, LeaseRow.job_id == JobRow.id)
                .where(LeaseRow.job_id.is_(None), JobRow.status.not_in(TERMINAL))
                .limit(500)
            ).all()
        for job_id in missing:
            try:
                with self.registry.session() as s, s.begin():
                    row = LeaseRow(
                        job_id=job_id, next_poll_at=now, stage="follow", polls=0, failures=0, errors=0
                    )
                    s.add(row)
            except IntegrityError:  # another worker adopted it first
                pass

    def claim(self, owner: str, *, batch: int, lease_s: float, limits: Mapping[str, int]) -> list[str]:
        """Up to `batch` due jobs, now `owner`'s for `lease_s` seconds, keeping each provider in `limits`
        under its number of jobs held at once by all workers together."""
        now = utcnow()
        free = or_(LeaseRow.owner.is_(None), LeaseRow.expires_at < now, LeaseRow.owner == owner)
        with self.registry.session() as s, s.begin():
            rows = s.execute(
                select(LeaseRow.job_id, JobRow.provider)
                .join(JobRow, JobRow.id == LeaseRow.job_id)
                .where(LeaseRow.stage != "done", LeaseRow.next_poll_at <= now, free)
                .order_by(LeaseRow.next_poll_at)
                .limit(batch * (4 if limits else 1))
                .with_for_update(skip_locked=True, of=LeaseRow)
            ).all()
            ids = self._within_limits(s, rows, now, owner, batch, limits)
            if ids:
                s.execute(
                    update(LeaseRow)
                    .where(LeaseRow.job_id.in_(ids), free)
                    .values(owner=owner, expires_at=now + timedelta(seconds=lease_s))
                )
        return ids

    @staticmethod
    def _within_limits(
        s: Any, rows: Sequence[Any], now: datetime, owner: str, batch: int, limits: Mapping[str, int]
    ) -> list[str]:
        if not limits:
            return [job_id for job_id, _ in rows][:batch]
        held = dict(
            s.execute(
                select(JobRow.provider, func.count())
                .join(LeaseRow, LeaseRow.job_id == JobRow.id)
                .where(LeaseRow.owner.is_not(None), LeaseRow.expires_at >= now, LeaseRow.owner != owner)
                .group_by(JobRow.provider)
            ).all()
        )
        ids: list[str] = []
        for job_id, provider in rows:
            limit = limits.get(provider)
            if limit is not None and held.get(provider, 0) >= limit:
                continue
            held[provider] = held.get(provider, 0) + 1
            ids.append(job_id)
            if len(ids) >= batch:
                break
        return ids

    def release(
        self,
        job_id: str,
        owner: str,
        *,
        delay: float,
        stage: str | None = None,
        polled: bool = False,
        ok: bool = True,
        changed: bool = False,
    ) -> None:
        """Let go of a job until `delay` seconds from now, counting what the pass did."""
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
        with self.registry.session() as s, s.begin():
            s.execute(
                update(LeaseRow)
                .where(and_(LeaseRow.job_id == job_id, LeaseRow.owner == owner))
                .values(**values)
            )

    def get(self, job_id: str) -> Lease | None:
        with self.registry.session() as s:
            row = s.get(LeaseRow, job_id)
            return None if row is None else Lease(row.job_id, row.stage)

    def backoff(self, job_id: str) -> float:
        """A failed pass counted; the seconds to wait before the next (5 s doubling to 5 minutes)."""
        with self.registry.session() as s, s.begin():
            row = s.get(LeaseRow, job_id)
            if row is None:
                return 5.0
            row.failures += 1
            row.errors += 1
            return min(MAX_BACKOFF_S, 5.0 * 2 ** (row.failures - 1))

    def claim_again(self, job_id: str, owner: str, seconds: float) -> None:
        """Take a released job back at once (for its evaluation), if no other worker took it meanwhile."""
        now = utcnow()
        with self.registry.session() as s, s.begin():
            s.execute(
                update(LeaseRow)
                .where(LeaseRow.job_id == job_id, or_(LeaseRow.owner.is_(None), LeaseRow.expires_at < now))
                .values(owner=owner, expires_at=now + timedelta(seconds=seconds))
            )

    def counts(self) -> LeaseCounts:
        """Of the registry's project (every project's, seen from everywhere)."""
        mine = self.registry.mine(JobRow)
        with self.registry.session() as s:
            by_status = s.execute(
                select(JobRow.provider, JobRow.status, func.count())
                .where(*mine)
                .group_by(JobRow.provider, JobRow.status)
            ).all()
            polls = s.execute(
                select(
                    JobRow.provider,
                    func.sum(LeaseRow.polls),
                    func.sum(LeaseRow.errors),
                    func.sum(LeaseRow.changes),
                )
                .join(LeaseRow, LeaseRow.job_id == JobRow.id)
                .where(*mine)
                .group_by(JobRow.provider)
            ).all()
            leased = s.execute(
                select(JobRow.provider, func.count())
                .join(LeaseRow, LeaseRow.job_id == JobRow.id)
                .where(LeaseRow.owner.is_not(None), *mine)
                .group_by(JobRow.provider)
            ).all()
        return LeaseCounts(
            jobs=[(p, st, int(n)) for p, st, n in by_status],
            polls=[(p, int(a or 0), int(b or 0), int(c or 0)) for p, a, b, c in polls],
            leased=[(p, int(n)) for p, n in leased],
        )
