"""Webhooks: every event the registry records, POSTed to each receiver, signed, in order, at least once.

Deliveries are read from the events table (the outbox is the log itself, `anytune.registry.outbox`): each
webhook keeps a cursor, the last event row it has delivered, and moves it only after the receiver answered
2xx. So a crash, a restart or
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
import time
from typing import Any

from anytune.registry import Registry
from anytune.registry.outbox import (
    Outbox,
    OutboxEvent,
    WebhookInfo,
    add_webhook,
    list_webhooks,
    remove_webhook,
)

SETTLE_S = 2.0
BATCH = 100
TIMEOUT_S = 10.0
MAX_BACKOFF_S = 600.0  # a receiver that keeps failing is tried at least this often
SIGNATURE_TOLERANCE_S = 300


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
        self.outbox = Outbox(registry, owner=owner, lease_s=lease_s)

    def tick(self) -> int:
        """Events delivered in this pass (over all webhooks)."""
        delivered = 0
        for webhook_id in self.outbox.claim():
            try:
                delivered += self._deliver(webhook_id)
            finally:
                self.outbox.release(webhook_id)
        return delivered

    def _deliver(self, webhook_id: str) -> int:
        import httpx

        due = self.outbox.pending(webhook_id, settle_s=SETTLE_S, batch=BATCH)
        if due is None:
            return 0
        sent = 0
        with httpx.Client(timeout=TIMEOUT_S) as http:
            for event in due.events:
                if due.kinds and event.kind not in due.kinds:
                    self.outbox.advance(webhook_id, event.id, delivered=False)
                    continue
                body = json.dumps(payload(event), ensure_ascii=False, sort_keys=True).encode()
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "anytune-webhooks",
                    "X-Anytune-Event-Id": f"{event.job_id}:{event.seq}",
                    "X-Anytune-Signature": sign(due.secret, body, int(time.time())),
                }
                try:
                    answer = http.post(due.url, content=body, headers=headers)
                    error = None if 200 <= answer.status_code < 300 else f"HTTP {answer.status_code}"
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                if error is not None:
                    self.outbox.failed(webhook_id, error, max_backoff_s=MAX_BACKOFF_S)
                    return sent
                self.outbox.advance(webhook_id, event.id, delivered=True)
                sent += 1
        return sent


def payload(event: OutboxEvent) -> dict[str, Any]:
    return {
        "id": f"{event.job_id}:{event.seq}",
        "type": f"job.{event.kind}",
        "created_at": event.time.isoformat(),
        "job": {
            "id": event.job_id,
            "name": event.job_name,
            "provider": event.job_provider,
            "status": event.job_status,
        },
        "event": {
            "seq": event.seq,
            "kind": event.kind,
            "level": event.level,
            "message": event.message,
            "data": event.data,
        },
    }


__all__ = [
    "Deliverer",
    "WebhookInfo",
    "add_webhook",
    "list_webhooks",
    "payload",
    "remove_webhook",
    "sign",
    "verify_signature",
]
