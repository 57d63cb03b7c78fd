"""The registry: jobs, events, datasets, model versions with aliases, and evaluations, in one database.

Every write is one transaction, so a crash leaves either the whole record or none of it. Model versions
are immutable: registering again makes a new version; only aliases move. Several processes may follow the
same job (`anytune run` in one terminal, `anytune jobs list` in another): `record_poll` makes sure each
poll's events are stored once, and `register_result` that a job registers one model version.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from anytune.errors import NotFoundError, UsageError
from anytune.jobs import Cost, Event, Job, JobStatus, ModelArtifact, check_transition, new_job_id, utcnow
from anytune.registry.caps import admit
from anytune.registry.db import open_engine
from anytune.registry.model_store import ModelStore
from anytune.registry.records import DatasetRecord, ModelVersion
from anytune.registry.tables import DatasetRow, EventRow, JobRow, ModelRow
from anytune.secrets import redact
from anytune.settings import current_project, database_url
from anytune.spec import JobSpec


def _job(row: JobRow) -> Job:
    return Job(
        id=row.id,
        project=row.project,
        name=row.name,
        provider=row.provider,
        spec=row.spec,  # upgraded from the version it was written in (Job.spec)
        status=JobStatus(row.status),
        provider_status=row.provider_status,
        provider_job_id=row.provider_job_id,
        provider_ref=row.provider_ref,
        event_cursor=row.event_cursor,
        data=row.data,
        progress=row.progress,
        metrics=row.metrics or {},
        artifact=ModelArtifact.model_validate(row.artifact) if row.artifact else None,
        cost=Cost.model_validate(row.cost) if row.cost else None,
        error=row.error,
        dataset_fingerprint=row.dataset_fingerprint,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def _apply(row: JobRow, status: JobStatus | None, fields: dict[str, Any]) -> None:
    """Set fields on a job row; a status change is checked against the status machine and stamps times."""
    now = utcnow()
    if status is not None and status.value != row.status:
        check_transition(JobStatus(row.status), status)
        row.status = status.value
        if status is JobStatus.RUNNING and row.started_at is None:
            row.started_at = now
        if status.terminal:
            row.finished_at = now
            if row.started_at is None:
                row.started_at = row.created_at
    for key, value in fields.items():
        if not hasattr(JobRow, key) or key in ("id", "created_at"):
            raise AttributeError(f"jobs have no writable field {key!r}")
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        setattr(row, key, redact(value) if key == "error" else value)
    row.updated_at = now


def _append_events(s: Session, job_id: str, events: list[Event]) -> list[Event]:
    last = s.scalar(select(func.max(EventRow.seq)).where(EventRow.job_id == job_id)) or 0
    stored = []
    for seq, ev in enumerate(events, start=last + 1):
        ev = ev.model_copy(update={"seq": seq, "message": redact(ev.message), "data": redact(ev.data)})
        s.add(
            EventRow(
                job_id=job_id,
                seq=seq,
                time=ev.time,
                kind=ev.kind.value,
                level=ev.level,
                message=ev.message,
                data=ev.data,
            )
        )
        stored.append(ev)
    return stored


def _event(row: EventRow) -> Event:
    return Event(
        seq=row.seq, time=row.time, kind=row.kind, level=row.level, message=row.message, data=row.data
    )


class Registry(ModelStore):
    """The registry on one database, seen from one project. `Registry()` opens the default database
    ($ANYTUNE_DATABASE_URL or SQLite) in the default project (`$ANYTUNE_PROJECT`, or `default`).

    Every read and write keeps to `project`: another project's jobs and models are not found, as if they
    were not there. `in_project(name)` is the same database seen from another project; `everywhere()` sees
    every project at once (the service's workers, which follow every team's jobs, and its operator)."""

    def __init__(
        self, url: str | None = None, *, engine: Engine | None = None, project: str | None = None
    ) -> None:
        self.url = url or database_url()
        self.engine = engine or open_engine(self.url)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self.project: str | None = project or current_project()

    def in_project(self, project: str) -> Registry:
        """This database, seen from `project` (sharing the engine and its connections)."""
        return self._view(project)

    def everywhere(self) -> Registry:
        """This database, every project at once."""
        return self._view(None)

    def _view(self, project: str | None) -> Registry:
        view = copy.copy(self)
        view.project = project
        return view

    def session(self) -> Session:
        return self._session()

    @property
    def dialect(self) -> str:
        """The database's kind: sqlite, postgresql..."""
        return self.engine.dialect.name

    def ping(self) -> str | None:
        """None if the database answers a query now, else what went wrong (the exception's class)."""
        from sqlalchemy import text

        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # whatever the driver raises: the database is not there
            return type(exc).__name__
        return None

    # --------------------------------------------------------------------------------------------- jobs

    def create_job(
        self,
        spec: JobSpec,
        *,
        job_id: str | None = None,
        cost: Cost | None = None,
        dataset_fingerprint: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> Job:
        """Record a new job, `pending`. `data` is what the backend will be given (to resubmit after a crash)."""
        now = utcnow()
        row = JobRow(
            id=job_id or new_job_id(),
            project=self.owner,
            name=spec.display_name(),
            provider=spec.provider,
            status=JobStatus.PENDING.value,
            spec=spec.model_dump(mode="json"),
            data=data,
            metrics={},
            cost=cost.model_dump(mode="json") if cost else None,
            dataset_fingerprint=dataset_fingerprint,
            created_at=now,
            updated_at=now,
        )
        with self.session() as s, s.begin():
            admit(s, self.owner, cost)  # the project's caps, checked in the transaction that records
            s.add(row)
        return _job(row)

    def _resolve_job(self, s: Session, job_id: str) -> JobRow:
        row = s.get(JobRow, job_id)
        if row is not None and self.project in (None, row.project):
            return row
        mine = self.mine(JobRow)
        matches = s.scalars(select(JobRow).where(JobRow.id.startswith(job_id), *mine).limit(2)).all()
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UsageError(f"job id prefix {job_id!r} is ambiguous", hint="give more characters of the id")
        named = s.scalars(
            select(JobRow)
            .where(JobRow.name == job_id, *mine)
            .order_by(JobRow.created_at.desc(), JobRow.id.desc())
            .limit(1)
        ).first()
        if named is not None:  # a job's name where its id was asked: the newest job of that name
            return named
        raise NotFoundError(f"no job {job_id!r}", hint="`anytune jobs list` shows the jobs")

    def get_job(self, job_id: str) -> Job:
        """By id, unique id prefix, or name (the newest job of that name)."""
        with self.session() as s:
            return _job(self._resolve_job(s, job_id))

    def list_jobs(
        self,
        *,
        status: str | None = None,
        provider: str | None = None,
        active: bool | None = None,
        limit: int | None = 100,
        after: str | None = None,
    ) -> list[Job]:
        """Newest first; `after` (a job id) starts the page after that job (keyset paging: the service's
        cursor)."""
        q = select(JobRow).where(*self.mine(JobRow)).order_by(JobRow.created_at.desc(), JobRow.id.desc())
        if after is not None:
            with self.session() as s:
                mark = s.get(JobRow, after)
            if mark is None or self.project not in (None, mark.project):
                raise UsageError(f"unknown cursor {after!r}", hint="start again without a cursor")
            q = q.where(
                or_(
                    JobRow.created_at < mark.created_at,
                    and_(JobRow.created_at == mark.created_at, JobRow.id < mark.id),
                )
            )
        if status:
            q = q.where(JobRow.status == status)
        if provider:
            q = q.where(JobRow.provider == provider)
        if active is not None:
            terminal = [s.value for s in JobStatus if s.terminal]
            q = q.where(JobRow.status.not_in(terminal) if active else JobRow.status.in_(terminal))
        if limit:
            q = q.limit(limit)
        with self.session() as s:
            return [_job(r) for r in s.scalars(q)]

    def update_job(self, job_id: str, *, status: JobStatus | None = None, **fields: Any) -> Job:
        """Change a job. A status change is checked against the status machine and stamps the times."""
        with self.session() as s, s.begin():
            row = self._resolve_job(s, job_id)
            _apply(row, status, fields)
        return _job(row)

    def record_poll(
        self,
        job_id: str,
        *,
        cursor_before: str | None,
        cursor_after: str | None,
        events: list[Event],
        status: JobStatus | None = None,
        **fields: Any,
    ) -> tuple[Job, list[Event]] | None:
        """Record what one poll of the backend found, all in one transaction, or nothing at all.

        The poll started from `cursor_before`; if another process recorded a poll from that cursor first,
        this one is dropped (None is returned) so that no event is stored twice. An `artifact` is stored
        only while the job has none (registering it as a model is `register_result`'s work)."""
        same_cursor = (
            JobRow.event_cursor.is_(None) if cursor_before is None else JobRow.event_cursor == cursor_before
        )
        with self.session() as s, s.begin():
            # The conditional UPDATE takes the row's write lock (SQLite: the database's) before anything is read.
            claimed = s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, same_cursor, *self.mine(JobRow))
                .values(event_cursor=cursor_after)
            ).rowcount
            if not claimed:
                return None
            row = s.get(JobRow, job_id, populate_existing=True)
            assert row is not None
            artifact = fields.pop("artifact", None)
            _apply(row, status, fields)
            if artifact is not None and row.artifact is None:
                row.artifact = artifact.model_dump(mode="json")
            stored = _append_events(s, job_id, events)
        return _job(row), stored

    def register_result(self, job_id: str, name: str) -> ModelVersion | None:
        """The model version of a job's artifact, registered as `name` with its lineage the first time it is
        asked for, and found after that: however many processes follow a job, it gets one version. None
        while the job has no artifact."""
        with self.session() as s, s.begin():
            # lock the job's row first (SQLite: the database), so two registrars of one job take turns
            s.execute(update(JobRow).where(JobRow.id == job_id).values(updated_at=JobRow.updated_at))
            row = self._resolve_job(s, job_id)
            if row.artifact is None:
                return None
            existing = s.scalars(
                select(ModelRow).where(ModelRow.job_id == row.id).order_by(ModelRow.version).limit(1)
            ).first()
            if existing is not None:
                return self._model(existing, self._aliases(s, existing))
            artifact = ModelArtifact.model_validate(row.artifact)
            retires = artifact.base_model_retires
            model = self._insert_model(
                s,
                name,
                artifact,
                project=row.project,  # the job's, whoever registers it (a worker sees every project)
                job_id=row.id,
                spec=row.spec,
                cost=row.cost,
                dataset_fingerprint=row.dataset_fingerprint,
                metrics={**(row.metrics or {}), **artifact.metrics},
                base_model_retires=datetime(retires.year, retires.month, retires.day, tzinfo=UTC)
                if retires
                else None,
            )
            return self._model(model, [])

    # ------------------------------------------------------------------------------------------- events

    def add_events(self, job_id: str, events: Iterable[Event]) -> list[Event]:
        """Append events to a job, numbering them after its last one."""
        events = list(events)
        if not events:
            return []
        with self.session() as s, s.begin():
            return _append_events(s, job_id, events)

    def events(
        self, job_id: str, *, after: int = 0, kind: str | None = None, limit: int | None = None
    ) -> list[Event]:
        q = select(EventRow).where(EventRow.job_id == job_id, EventRow.seq > after).order_by(EventRow.seq)
        if self.project is not None:  # another project's job has no events to show here
            q = q.where(EventRow.job_id.in_(select(JobRow.id).where(JobRow.id == job_id, *self.mine(JobRow))))
        if kind:
            q = q.where(EventRow.kind == kind)
        if limit:
            q = q.limit(limit)
        with self.session() as s:
            return [_event(r) for r in s.scalars(q)]

    # ----------------------------------------------------------------------------------------- datasets

    def record_dataset(
        self,
        *,
        fingerprint: str,
        format: str,
        rows: int,
        path: str,
        tokens: int | None = None,
        stats: dict[str, Any] | None = None,
    ) -> DatasetRecord:
        """Record a data file by its content (once; a later sighting only updates its path). Two processes
        recording the same content at once both succeed: the second finds the first's row."""
        for attempt in range(3):
            try:
                with self.session() as s, s.begin():
                    row = s.get(DatasetRow, fingerprint)
                    if row is None:
                        row = DatasetRow(
                            fingerprint=fingerprint,
                            format=format,
                            rows=rows,
                            tokens=tokens,
                            path=path,
                            stats=stats,
                            created_at=utcnow(),
                        )
                        s.add(row)
                    else:
                        row.path = path
                return DatasetRecord.model_validate(row, from_attributes=True)
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def get_dataset(self, fingerprint: str) -> DatasetRecord:
        with self.session() as s:
            row = s.get(DatasetRow, fingerprint)
            if row is None:
                raise NotFoundError(f"no dataset {fingerprint!r}")
            return DatasetRecord.model_validate(row, from_attributes=True)
