"""What the service shows of the work going on: a job's events as server-sent events, and Prometheus metrics.

Both read what every worker writes in the registry, so any server process shows the work of every worker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from anytune.api import ClientAPI
from anytune.registry.leases import LeaseCounts

SSE_POLL_S = 0.5  # how often a stream looks for new events
SSE_HEARTBEAT_S = 15.0  # a comment line this often keeps proxies from closing an idle stream


def event_stream(client: ClientAPI, job_id: str, after: int = 0) -> Iterator[bytes]:
    """`id: <seq>` / `event: <kind>` / `data: <event JSON>` for each event after `after`, until the job has
    ended and its last event is sent (then an `end` event). A client that reconnects with `Last-Event-ID`
    gets exactly the events it missed: ids are the events' own sequence numbers."""
    last_beat = time.monotonic()
    yield b"retry: 2000\n\n"
    while True:
        events = client.events(job_id, after=after, limit=500)
        for event in events:
            after = event.seq
            body = json.dumps(event.model_dump(mode="json"), ensure_ascii=False)
            yield f"id: {event.seq}\nevent: {event.kind.value}\ndata: {body}\n\n".encode()
        if events:
            last_beat = time.monotonic()
            continue
        job = client.get_job(job_id)
        if job.status.terminal and not client.events(job_id, after=after, limit=1):
            yield f"event: end\ndata: {json.dumps({'status': job.status.value})}\n\n".encode()
            return
        if time.monotonic() - last_beat > SSE_HEARTBEAT_S:
            yield b": keep-alive\n\n"
            last_beat = time.monotonic()
        time.sleep(SSE_POLL_S)


def prometheus_text(counts: LeaseCounts) -> str:
    """Gauges and counters in Prometheus' text exposition format, from the registry's counts."""
    lines: list[str] = []

    def metric(name: str, kind: str, doc: str, samples: list[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {name} {doc}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{name}{{{text}}} {value:g}" if text else f"{name} {value:g}")

    by_status, leases, followed = counts.jobs, counts.polls, counts.leased
    metric(
        "anytune_jobs",
        "gauge",
        "Jobs in the registry by provider and status.",
        [({"provider": p, "status": st}, n) for p, st, n in by_status],
    )
    metric(
        "anytune_job_polls_total",
        "counter",
        "Polls of providers by the workers, by provider.",
        [({"provider": p}, float(polls or 0)) for p, polls, _, _ in leases],
    )
    metric(
        "anytune_job_status_changes_total",
        "counter",
        "Status changes the workers' polls saw, by provider (polls / changes: how well polling is paced).",
        [({"provider": p}, float(changes or 0)) for p, _, _, changes in leases],
    )
    metric(
        "anytune_provider_errors_total",
        "counter",
        "Polls that failed (provider unreachable or refusing), by provider.",
        [({"provider": p}, float(errors or 0)) for p, _, errors, _ in leases],
    )
    metric(
        "anytune_jobs_leased",
        "gauge",
        "Jobs a worker holds a lease on right now, by provider.",
        [({"provider": p}, n) for p, n in followed],
    )
    from anytune.service.worker import POLL_SECONDS

    times = POLL_SECONDS.snapshot()
    lines.append("# HELP anytune_poll_seconds Seconds per poll of a provider, by this process's workers.")
    lines.append("# TYPE anytune_poll_seconds summary")
    for provider, (count, total) in sorted(times.items()):
        lines.append(f'anytune_poll_seconds_sum{{provider="{_escape(provider)}"}} {total:g}')
        lines.append(f'anytune_poll_seconds_count{{provider="{_escape(provider)}"}} {count}')
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
