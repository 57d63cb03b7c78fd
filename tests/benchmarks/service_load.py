"""Benchmark: 1,000 jobs through the service to their end, on the OpenAI and Together emulators.

    .venv/bin/python tests/benchmarks/service_load.py [--jobs 1000] [--submitters 4] [--postgres URL --workers N]

`anytune server` runs as its own process (SQLite and one worker by default; `--postgres` and `--workers` for
scale-out, with `anytune worker` processes beside it); the emulators run in this process, their clocks running at
`--speed` provider seconds per second whatever the polls (30: a job's status changes every few seconds), and
the workers poll each job every `--poll` seconds (1). Four threads submit the jobs through the API (each with
an Idempotency-Key) while a fifth measures the API's latency (GET /v1/jobs and GET /v1/jobs/{id}, in turn).
It prints:
- wall time from the first submit to the last job's end;
- polls per provider status change (from the registry: the workers' polls over the status changes recorded);
- the server's RSS (API and worker) once a tenth of the jobs are in, and at the end: flat, or not;
- the API's p50 / p99 latency under that load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import httpx
    import psutil
    from sqlalchemy import func, select
    from tests.conftest import OPENAI_TEST_KEY, TOGETHER_TEST_KEY, chat_splits
    from tests.test_service_crash import free_port

    from anytune.registry.store import Registry
    from anytune.registry.tables import JobRow, LeaseRow
    from anytune.testing import emulated

    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--submitters", type=int, default=4)
    parser.add_argument("--postgres", default=None, help="a PostgreSQL URL (default: SQLite in a temp home)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--speed", type=float, default=30.0, help="emulated provider seconds per second")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between two polls of one job")
    opts = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="anytune-load-"))
    os.environ["ANYTUNE_TODAY"] = "2026-11-28"
    with (
        emulated("openai", api_key=OPENAI_TEST_KEY) as openai_emu,
        emulated("together", api_key=TOGETHER_TEST_KEY) as together_emu,
    ):
        # the providers' time runs on its own (polls do not move it): `--speed` emulated seconds a second
        stop_clock = threading.Event()

        def run_clocks() -> None:
            while not stop_clock.wait(0.1):
                openai_emu.clock.advance(opts.speed / 10)
                together_emu.clock.advance(opts.speed / 10)

        threading.Thread(target=run_clocks, daemon=True).start()
        env = dict(os.environ, ANYTUNE_HOME=str(tmp / "home"), ANYTUNE_POLL_INTERVAL=str(opts.poll))
        if opts.postgres:
            env["ANYTUNE_DATABASE_URL"] = opts.postgres
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = (tmp / "server.log").open("wb")
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "anytune",
                "server",
                "--port",
                str(port),
                "--no-auth",
                "--workers",
                str(1 if not opts.postgres else min(opts.workers, 2)),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        extra = [
            subprocess.Popen(
                [sys.executable, "-m", "anytune", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
            for _ in range(max(0, opts.workers - 2) if opts.postgres else 0)
        ]
        for _ in range(120):
            try:
                if httpx.get(f"{url}/v1/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.25)
        bodies = []
        for i in range(opts.jobs):
            folder = tmp / f"d{i}"
            folder.mkdir()
            provider = "openai" if i % 2 else "together"
            bodies.append(
                {
                    "name": f"load-{i}",
                    "provider": provider,
                    "base_model": "gpt-4o-mini"
                    if provider == "openai"
                    else "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
                    "data": chat_splits(folder, seed=5000 + i),
                    "hyperparameters": {"epochs": 1},
                }
            )
        ids: list[str] = []
        latencies: list[float] = []
        done = threading.Event()
        rss: dict[str, float] = {}
        proc = psutil.Process(server.pid)
        lock = threading.Lock()

        def submitter(k: int) -> None:
            with httpx.Client(base_url=url, timeout=120) as http:
                for i in range(k, opts.jobs, opts.submitters):
                    answer = http.post("/v1/jobs", json=bodies[i], headers={"Idempotency-Key": f"load-{i}"})
                    answer.raise_for_status()
                    with lock:
                        ids.append(answer.json()["id"])
                        if len(ids) == max(1, opts.jobs // 10):  # warmed up: SDKs and tokenizers loaded
                            rss["start"] = proc.memory_info().rss / 2**20

        def prober() -> None:
            with httpx.Client(base_url=url, timeout=60) as http:
                while not done.is_set():
                    started = time.perf_counter()
                    http.get("/v1/jobs", params={"limit": 50})
                    latencies.append(time.perf_counter() - started)
                    if ids:
                        started = time.perf_counter()
                        http.get(f"/v1/jobs/{ids[-1]}")
                        latencies.append(time.perf_counter() - started)
                    time.sleep(0.05)

        began = time.perf_counter()
        probe = threading.Thread(target=prober, daemon=True)
        probe.start()
        threads = [threading.Thread(target=submitter, args=(k,)) for k in range(opts.submitters)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        submitted = time.perf_counter() - began
        registry = Registry(opts.postgres or f"sqlite:///{tmp / 'home' / 'registry.db'}")
        while True:
            with registry.session() as s:
                open_jobs = s.scalar(
                    select(func.count())
                    .select_from(JobRow)
                    .where(JobRow.status.not_in(["succeeded", "failed", "cancelled"]))
                )
            if not open_jobs:
                break
            time.sleep(1)
        wall = time.perf_counter() - began
        rss["end"] = proc.memory_info().rss / 2**20
        done.set()
        with registry.session() as s:
            statuses = Counter(
                dict(s.execute(select(JobRow.status, func.count()).group_by(JobRow.status)).all())
            )
            polls = dict(
                s.execute(
                    select(JobRow.provider, func.sum(LeaseRow.polls))
                    .join(LeaseRow, LeaseRow.job_id == JobRow.id)
                    .group_by(JobRow.provider)
                ).all()
            )
            changes = dict(
                s.execute(
                    select(JobRow.provider, func.sum(LeaseRow.changes))
                    .join(LeaseRow, LeaseRow.job_id == JobRow.id)
                    .group_by(JobRow.provider)
                ).all()
            )
            per_job = dict(s.execute(select(JobRow.provider, func.count()).group_by(JobRow.provider)).all())
        server.terminate()
        for w in extra:
            w.terminate()
        latencies.sort()
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1000
        print(
            f"{opts.jobs:,} jobs ({dict(per_job)}), {'PostgreSQL' if opts.postgres else 'SQLite'}, "
            f"{opts.workers} worker(s), {os.cpu_count()} cores"
        )
        print(
            f"statuses: {dict(statuses)}; provider jobs: openai {len(openai_emu.job_ids())}, "
            f"together {len(together_emu.job_ids())}"
        )
        print(f"wall: {wall:.1f} s (submitted in {submitted:.1f} s)")
        for provider in sorted(per_job):
            moved = changes.get(provider) or 0
            print(
                f"polls per status change, {provider}: {polls.get(provider, 0)} / {moved} = "
                f"{(polls.get(provider, 0) / moved) if moved else float('nan'):.2f}"
            )
        print(
            f"server RSS: {rss.get('start', 0):.0f} MB at 10% of the jobs in, {rss['end']:.0f} MB at the end"
        )
        print(f"API latency under load: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(latencies)} requests)")


if __name__ == "__main__":
    main()
