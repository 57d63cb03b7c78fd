"""Health (/v1/health/live, /ready), webhooks (/v1/webhooks, admin scope), Prometheus (/metrics) and the
pricing catalog (/v1/prices)."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from anytune.registry import Registry
from anytune.registry.leases import Leases
from anytune.service.common import API_PREFIX, WebhookBody, scope, the_registry
from anytune.service.observe import prometheus_text
from anytune.service.webhooks import add_webhook, list_webhooks, remove_webhook

health = APIRouter(prefix=f"{API_PREFIX}/health")
router = APIRouter()


@health.get("/live")
def live() -> dict[str, str]:
    return {"status": "ok"}


@health.get("/ready")
def ready(registry: Registry = Depends(the_registry)) -> JSONResponse:
    problem = registry.ping()
    if problem is not None:  # the database is what readiness is about
        return JSONResponse({"status": "unavailable", "database": problem}, 503)
    return JSONResponse({"status": "ready", "database": "ok"})


@router.post(f"{API_PREFIX}/webhooks", status_code=201, dependencies=[scope("admin")])
def create_webhook(body: WebhookBody, registry: Registry = Depends(the_registry)) -> dict[str, Any]:
    """A receiver of every job event (or of `kinds`), signed with the secret returned here once."""
    info, secret = add_webhook(
        registry, body.url, secret=body.secret, kinds=body.kinds, from_start=body.from_start
    )
    return {**dataclasses.asdict(info), "secret": secret}


@router.get(f"{API_PREFIX}/webhooks", dependencies=[scope("admin")])
def webhooks(registry: Registry = Depends(the_registry)) -> list[dict[str, Any]]:
    return [dataclasses.asdict(w) for w in list_webhooks(registry)]


@router.delete(f"{API_PREFIX}/webhooks/{{webhook_id}}", status_code=204, dependencies=[scope("admin")])
def delete_webhook(webhook_id: str, registry: Registry = Depends(the_registry)) -> Response:
    remove_webhook(registry, webhook_id)
    return Response(status_code=204)


@router.get(
    "/metrics",
    dependencies=[scope("read")],
    response_class=Response,  # errors are JSON like every route's; only the metrics are text
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}
    },
)
def metrics(registry: Registry = Depends(the_registry)) -> PlainTextResponse:
    """Prometheus' text format: jobs by status and provider, polls and provider errors by provider."""
    return PlainTextResponse(prometheus_text(Leases(registry).counts()))


@router.get(f"{API_PREFIX}/prices", dependencies=[scope("read")])
def prices() -> list[dict[str, Any]]:
    from anytune.cost.catalog import load_catalog

    return [e.model_dump(mode="json") for e in load_catalog().entries]
