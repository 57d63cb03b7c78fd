"""The webhooks' outbox: receivers, and each one's cursor in the events table (the outbox is the log
itself). The service's deliverer (`anytune.service.webhooks`) posts what `pending` returns and moves the
cursor only after a receiver took an event, so a crash or a receiver that is down loses nothing.

Events are handed out only once they are `settle_s` old: on PostgreSQL, rows numbered by a sequence can
commit out of order, and a cursor that had passed a number still uncommitted would skip that event forever.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from anytune.errors import NotFoundError, UsageError
from anytune.jobs import utcnow
from anytune.registry.store import Registry
from anytune.registry.tables import EventRow, JobRow, WebhookRow


@dataclass(frozen=True)
class WebhookInfo:
    id: str
    url: str
    kinds: list[str] | None
    delivered: int
    failures: int
    last_error: str | None


@dataclass(frozen=True)
class OutboxEvent:
    """One event to deliver, with the job it belongs to as it is now."""

    id: int
    job_id: str
    seq: int
    time: datetime
    kind: str
    level: str
    message: str
    data: dict[str, Any]
    job_name: str
    job_provider: str
    job_status: str


@dataclass(frozen=True)
class Pending:
    """A receiver's due deliveries: where to, how to sign, which kinds it wants, and the events in order."""

    url: str
    secret: str
    kinds: list[str] | None
    events: list[OutboxEvent]


def _info(row: WebhookRow) -> WebhookInfo:
    return WebhookInfo(row.id, row.url, row.kinds, row.delivered, row.failures, row.last_error)


def add_webhook(
    registry: Registry,
    url: str,
    *,
    secret: str | None = None,
    kinds: list[str] | None = None,
    from_start: bool = False,
) -> tuple[WebhookInfo, str]:
    """A new receiver, and its signing secret (made here if not given; shown once). It gets the events recorded
    from now on (all of them with `from_start`)."""
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"webhook URL {url!r} is not http(s)", hint="give https://host/path")
    secret = secret or "whsec_" + secrets.token_urlsafe(24)
    with registry.session() as s, s.begin():
        last = 0 if from_start else (s.scalar(select(EventRow.id).order_by(EventRow.id.desc()).limit(1)) or 0)
        row = WebhookRow(
            id=secrets.token_hex(6),
            project=registry.owner,
            url=url,
            secret=secret,
            kinds=kinds,
            cursor=last,
            created_at=utcnow(),
            next_attempt_at=utcnow(),
            failures=0,
            delivered=0,
        )
        s.add(row)
        info = _info(row)
    return info, secret


def list_webhooks(registry: Registry) -> list[WebhookInfo]:
    with registry.session() as s:
        q = select(WebhookRow).where(*registry.mine(WebhookRow)).order_by(WebhookRow.created_at)
        return [_info(r) for r in s.scalars(q)]


def remove_webhook(registry: Registry, webhook_id: str) -> None:
    with registry.session() as s, s.begin():
        row = s.get(WebhookRow, webhook_id)
        if row is None or registry.project not in (None, row.project):
            raise NotFoundError(f"no webhook {webhook_id!r}", hint="GET /v1/webhooks lists them")
        s.delete(row)


class Outbox:
    """The deliverer's side: claim receivers that are due, read what each has pending, move its cursor.
    Every project's receivers, each given only its own project's events."""

    def __init__(self, registry: Registry, *, owner: str, lease_s: float = 60.0) -> None:
        self.registry = registry
        self.owner = owner
        self.lease_s = lease_s

    def claim(self) -> list[str]:
        now = utcnow()
        free = or_(WebhookRow.owner.is_(None), WebhookRow.expires_at < now)
        with self.registry.session() as s, s.begin():
            ids = s.scalars(
                select(WebhookRow.id)
                .where(WebhookRow.next_attempt_at <= now, free)
                .with_for_update(skip_locked=True)
            ).all()
            if ids:
                s.execute(
                    update(WebhookRow)
                    .where(WebhookRow.id.in_(ids), free)
                    .values(owner=self.owner, expires_at=now + timedelta(seconds=self.lease_s))
                )
        return list(ids)

    def release(self, webhook_id: str) -> None:
        with self.registry.session() as s, s.begin():
            s.execute(
                update(WebhookRow)
                .where(WebhookRow.id == webhook_id, WebhookRow.owner == self.owner)
                .values(owner=None, expires_at=None)
            )

    def pending(self, webhook_id: str, *, settle_s: float, batch: int) -> Pending | None:
        """The next `batch` events after the receiver's cursor that are at least `settle_s` old."""
        with self.registry.session() as s:
            hook = s.get(WebhookRow, webhook_id)
            if hook is None:
                return None
            settled = utcnow() - timedelta(seconds=settle_s)
            rows = s.execute(
                select(EventRow, JobRow)
                .join(JobRow, JobRow.id == EventRow.job_id)
                .where(EventRow.id > hook.cursor, EventRow.time <= settled, JobRow.project == hook.project)
                .order_by(EventRow.id)
                .limit(batch)
            ).all()
            events = [
                OutboxEvent(
                    e.id,
                    e.job_id,
                    e.seq,
                    e.time,
                    e.kind,
                    e.level,
                    e.message,
                    e.data or {},
                    j.name,
                    j.provider,
                    j.status,
                )
                for e, j in rows
            ]
            return Pending(hook.url, hook.secret, hook.kinds, events)

    def advance(self, webhook_id: str, event_id: int, *, delivered: bool) -> None:
        values: dict[str, Any] = {"cursor": event_id, "failures": 0, "last_error": None}
        if delivered:
            values["delivered"] = WebhookRow.delivered + 1
        with self.registry.session() as s, s.begin():
            s.execute(update(WebhookRow).where(WebhookRow.id == webhook_id).values(**values))

    def failed(self, webhook_id: str, error: str, *, max_backoff_s: float) -> None:
        """The receiver did not take it: the same event again after a backoff (2 s doubling to the most)."""
        with self.registry.session() as s, s.begin():
            row = s.get(WebhookRow, webhook_id)
            if row is None:
                return
            row.failures += 1
            row.last_error = error[:500]
            row.next_attempt_at = utcnow() + timedelta(
                seconds=min(max_backoff_s, 2.0 * 2 ** (row.failures - 1))
            )
