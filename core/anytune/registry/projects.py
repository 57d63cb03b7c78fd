"""Projects: a team's corner of a shared registry, with what its operator lets it spend (the caps are
checked by `anytune.registry.caps`).

A project is a name; every job, model, dataset, evaluation, token and webhook carries one, and `Registry`
keeps each read to its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from anytune.errors import NotFoundError, UsageError
from anytune.jobs import utcnow
from anytune.registry.caps import active_jobs, spent_usd
from anytune.registry.store import Registry
from anytune.registry.tables import ProjectRow

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class ProjectInfo:
    name: str
    monthly_budget_usd: float | None
    max_concurrent_jobs: int | None
    created_at: datetime
    spent_usd: float = 0.0  # committed this month (anytune.registry.caps says how it counts)
    active_jobs: int = 0


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise UsageError(
            f"{name[:100]!r} cannot be a project's name",
            hint="lower-case letters, digits, '.', '_' and '-', at most 100, starting with a letter or digit",
        )
    return name


def create_project(
    registry: Registry,
    name: str,
    *,
    monthly_budget_usd: float | None = None,
    max_concurrent_jobs: int | None = None,
) -> ProjectInfo:
    check_name(name)
    _check_caps(monthly_budget_usd, max_concurrent_jobs)
    try:
        with registry.session() as s, s.begin():
            s.add(
                ProjectRow(
                    name=name,
                    monthly_budget_usd=monthly_budget_usd,
                    max_concurrent_jobs=max_concurrent_jobs,
                    created_at=utcnow(),
                )
            )
    except IntegrityError:
        raise UsageError(f"project {name!r} exists", hint="`anytune projects set` changes its caps") from None
    return get_project(registry, name)


def set_caps(
    registry: Registry,
    name: str,
    *,
    monthly_budget_usd: float | None,
    max_concurrent_jobs: int | None,
) -> ProjectInfo:
    """Replace a project's caps (None: no cap)."""
    _check_caps(monthly_budget_usd, max_concurrent_jobs)
    with registry.session() as s, s.begin():
        row = _row(s, name)
        row.monthly_budget_usd, row.max_concurrent_jobs = monthly_budget_usd, max_concurrent_jobs
    return get_project(registry, name)


def get_project(registry: Registry, name: str) -> ProjectInfo:
    with registry.session() as s:
        return _info(s, _row(s, name))


def list_projects(registry: Registry) -> list[ProjectInfo]:
    with registry.session() as s:
        return [_info(s, r) for r in s.scalars(select(ProjectRow).order_by(ProjectRow.name))]


def project_exists(registry: Registry, name: str) -> bool:
    with registry.session() as s:
        return s.get(ProjectRow, name) is not None


def _check_caps(budget: float | None, concurrent: int | None) -> None:
    if budget is not None and not 0 <= budget < 1e12:
        raise UsageError(f"a monthly budget of {budget} USD: give 0 or more")
    if concurrent is not None and not 0 <= concurrent < 2**31:
        raise UsageError(f"{concurrent} concurrent jobs: give 0 or more")


def _row(s: Session, name: str) -> ProjectRow:
    row = s.get(ProjectRow, name)
    if row is None:
        raise NotFoundError(f"no project {name!r}", hint="`anytune projects list` shows them")
    return row


def _info(s: Session, row: ProjectRow) -> ProjectInfo:
    return ProjectInfo(
        row.name,
        row.monthly_budget_usd,
        row.max_concurrent_jobs,
        row.created_at,
        spent_usd=round(spent_usd(s, row.name), 6),
        active_jobs=active_jobs(s, row.name),
    )
