"""A project's caps, checked where a job is recorded: `admit` runs in the transaction that records it, with
the project's row locked first, so two submits at once cannot both slip under a cap.

What a month has cost a project counts each job created this month (UTC) once: what it actually cost if
anytune knows (the provider's bill, else its tokens at the catalog price); a job still running counts its
quote (the provider's own estimate where that is higher); a job that failed or was cancelled with no cost
known counts 0, and one that succeeded with none known counts its quote. A job anytune cannot price (a local
run with no price for its hardware) counts 0.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from anytune.errors import NotFoundError, UsageError
from anytune.jobs import Cost, JobStatus
from anytune.registry.tables import JobRow, ProjectRow
from anytune.settings import today

TERMINAL = [s.value for s in JobStatus if s.terminal]


class QuotaExceeded(UsageError):
    """A job its project's caps do not allow now (429, as providers answer an exhausted quota)."""

    http_status = 429


def admit(s: Session, project: str, cost: Cost | None) -> None:
    """Refuse (QuotaExceeded) a job of `project` quoted at `cost` that would cross one of its caps. Runs in
    the transaction that records the job, after locking the project's row (on SQLite: the database)."""
    locked = s.execute(update(ProjectRow).where(ProjectRow.name == project).values(name=ProjectRow.name))
    if not locked.rowcount:
        raise NotFoundError(
            f"no project {project!r}", hint=f"`anytune projects create {project}` makes it (the operator's)"
        )
    row = s.get(ProjectRow, project)
    assert row is not None
    if row.max_concurrent_jobs is not None:
        active = active_jobs(s, project)
        if active >= row.max_concurrent_jobs:
            raise QuotaExceeded(
                f"project {project!r} may run {row.max_concurrent_jobs} jobs at once and has {active} "
                "that have not ended",
                hint="wait for one to end (or cancel one), or ask the operator to raise the cap",
            )
    if row.monthly_budget_usd is not None:
        quote = committed(cost, JobStatus.PENDING)
        spent = spent_usd(s, project)
        left = row.monthly_budget_usd - spent
        if spent + quote > row.monthly_budget_usd + 1e-9:
            raise QuotaExceeded(
                f"project {project!r} has a monthly spend cap of ${row.monthly_budget_usd:.2f}: "
                f"${spent:.2f} is committed this month, this job is quoted at ${quote:.2f}, "
                f"${max(left, 0.0):.2f} is left",
                hint="a cheaper job (fewer epochs, a smaller model or provider) fits, or ask the operator "
                f"to raise the cap: `anytune projects set {project} --monthly-budget-usd N`",
            )


def active_jobs(s: Session, project: str) -> int:
    return (
        s.scalar(select(func.count()).where(JobRow.project == project, JobRow.status.not_in(TERMINAL))) or 0
    )


def spent_usd(s: Session, project: str) -> float:
    now = today()  # ($ANYTUNE_TODAY: a month can be looked at as of a date)
    month = datetime(now.year, now.month, 1, tzinfo=UTC)
    rows = s.execute(
        select(JobRow.status, JobRow.cost).where(JobRow.project == project, JobRow.created_at >= month)
    )
    return sum(committed(Cost.model_validate(c) if c else None, JobStatus(st)) for st, c in rows)


def committed(cost: Cost | None, status: JobStatus) -> float:
    """What one job counts against its project's month (see the module's docstring)."""
    if cost is None:
        return 0.0
    actual = cost.provider_actual if cost.provider_actual is not None else cost.actual
    if actual is not None:
        return actual
    quoted = max(cost.quoted or 0.0, cost.provider_quote or 0.0)
    if status.terminal and status is not JobStatus.SUCCEEDED:
        return 0.0
    return quoted
