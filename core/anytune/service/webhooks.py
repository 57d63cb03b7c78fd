"""Webhooks: every event the registry records, POSTed to each receiver, signed, in order, at least once.

Deliveries are read from the events table (the outbox is the log itself): each webhook keeps a cursor, the
last event row it has delivered, and moves it only after the receiver answered 2xx. So a crash, a restart or
a receiver that is down loses nothing; the price is that an event can arrive twice (after a crash between the
receiver's answer and the cursor's move), which is why every delivery carries a stable id
(`X-Anytune-Event-Id: <job id>:<seq>`) for the receiver to drop repeats.

Events are read only once they are `SETTLE_S` old: on PostgreSQL, rows numbered by a sequence can commit out of
order, and a cursor that had passed a number still uncommitted would skip that event forever.

The signature is Stripe's scheme: `X-Anytune-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>"
with the webhook's secret>`; `verify_signature` checks one (and its age), for receivers written in Python.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update

from anytune.errors import UsageError
from anytune.jobs import utcnow
from anytune.registry.store import Registry
from anytune.registry.tables import EventRow, JobRow, WebhookRow

SETTLE_S = 2.0
BATCH = 100
TIMEOUT_S = 10.0
MAX_BACKOFF_S = 600.0
SIGNATURE_TOLERANCE_S = 300


@dataclass(frozen=True)
class WebhookInfo:
    id: str
    url: str
    kinds: list[str] | None
    delivered: int
    failures: int
    last_error: str | None


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
        return [_info(r) for r in s.scalars(select(WebhookRow).order_by(WebhookRow.created_at))]


def remove_webhook(registry: Registry, webhook_id: str) -> None:
    with registry.session() as s, s.begin():
        row = s.get(WebhookRow, webhook_id)
        if row is None:
            raise UsageError(f"no webhook {webhook_id!r}")
        s.delete(row)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(secret: str, body: bytes, header: str, *, now: float | None = None) -> bool:
    """Whether `header` (X-Anytune-Signature) signs `body` with `secret`, made within the last 5 minutes."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > SIGNATURE_TOLERANCE_S:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), f"t={timestamp},v1={parts.get('v1', '')}")


class Deliverer:
    """`tick()` delivers what is due to every webhook not held by another process; the workers call it."""

    def __init__(self, registry: Registry, *, owner: str, lease_s: float = 60.0) -> None:
        self.registry = registry
        self.owner = owner
        self.lease_s = lease_s

    def tick(self) -> int:
        """Events delivered in this pass (over all webhooks)."""
        delivered = 0
        for webhook_id in self._claim():
            try:
                delivered += self._deliver(webhook_id)
            finally:
                self._release(webhook_id)
        return delivered

    def _claim(self) -> list[str]:
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

    def _release(self, webhook_id: str) -> None:
        with self.registry.session() as s, s.begin():
            s.execute(
                update(WebhookRow)
                .where(WebhookRow.id == webhook_id, WebhookRow.owner == self.owner)
                .values(owner=None, expires_at=None)
            )

    def _deliver(self, webhook_id: str) -> int:
        import httpx

        with self.registry.session() as s:
            hook = s.get(WebhookRow, webhook_id)
            if hook is None:
                return 0
            url, secret, kinds, cursor = hook.url, hook.secret, hook.kinds, hook.cursor
            settled = utcnow() - timedelta(seconds=SETTLE_S)
            q = (
                select(EventRow, JobRow)
                .join(JobRow, JobRow.id == EventRow.job_id)
                .where(EventRow.id > cursor, EventRow.time <= settled)
                .order_by(EventRow.id)
                .limit(BATCH)
            )
            rows = s.execute(q).all()
        sent = 0
        with httpx.Client(timeout=TIMEOUT_S) as http:
            for event, job in rows:
                if kinds and event.kind not in kinds:
                    self._advance(webhook_id, event.id, delivered=False)
                    continue
                body = json.dumps(payload(event, job), ensure_ascii=False, sort_keys=True).encode()
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "anytune-webhooks",
                    "X-Anytune-Event-Id": f"{event.job_id}:{event.seq}",
                    "X-Anytune-Signature": sign(secret, body, int(time.time())),
                }
                try:
                    answer = http.post(url, content=body, headers=headers)
                    error = None if 200 <= answer.status_code < 300 else f"HTTP {answer.status_code}"
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                if error is not None:
                    self._failed(webhook_id, error)
                    return sent
                self._advance(webhook_id, event.id, delivered=True)
                sent += 1
        return sent

    def _advance(self, webhook_id: str, event_id: int, *, delivered: bool) -> None:
        values: dict[str, Any] = {"cursor": event_id, "failures": 0, "last_error": None}
        if delivered:
            values["delivered"] = WebhookRow.delivered + 1
        with self.registry.session() as s, s.begin():
            s.execute(update(WebhookRow).where(WebhookRow.id == webhook_id).values(**values))

    def _failed(self, webhook_id: str, error: str) -> None:
        """The receiver did not take it: the same event again after a backoff (2 s doubling to 10 min)."""
        with self.registry.session() as s, s.begin():
            row = s.get(WebhookRow, webhook_id)
            if row is None:
                return
            row.failures += 1
            row.last_error = error[:500]
            row.next_attempt_at = utcnow() + timedelta(
                seconds=min(MAX_BACKOFF_S, 2.0 * 2 ** (row.failures - 1))
            )


def payload(event: EventRow, job: JobRow) -> dict[str, Any]:
    return {
        "id": f"{event.job_id}:{event.seq}",
        "type": f"job.{event.kind}",
        "created_at": event.time.isoformat(),
        "job": {"id": job.id, "name": job.name, "provider": job.provider, "status": job.status},
        "event": {
            "seq": event.seq,
            "kind": event.kind,
            "level": event.level,
            "message": event.message,
            "data": event.data or {},
        },
    }
