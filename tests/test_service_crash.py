"""Crash safety of the service: jobs on the OpenAI and Together emulators and local runs of the tiny model,
submitted through the API by a client that retries with its Idempotency-Key, while the server process (API
and worker) is killed with SIGKILL at random moments (during creates, during polls) and started again,
several times. Every job must reach its true end, each emulator must hold exactly one provider job per
anytune job, the registry exactly one anytune job per request, and no status change may be recorded twice.

`ANYTUNE_CRASH_JOBS` sets how many jobs (40 in the suite; 200 for the issue's run) and `ANYTUNE_CRASH_KILLS`
how many kills (6)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from anytune.jobs import JobStatus
from anytune.registry.store import Registry
from anytune.testing.server import free_port
from tests.conftest import OPENAI_TEST_KEY, TOGETHER_TEST_KEY, chat_splits, emulated

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

JOBS = int(os.environ.get("ANYTUNE_CRASH_JOBS", "40"))
KILLS = int(os.environ.get("ANYTUNE_CRASH_KILLS", "6"))


class Server:
    """`anytune server` as its own process, killed with SIGKILL and started again on the same port."""

    def __init__(self, env: dict[str, str], port: int, log: Path, *, user: str | None = None) -> None:
        self.env, self.port, self.log = env, port, log
        self.user = user  # another Unix user to run it as (the tests running as root can)
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0
        self.start_args = ["--no-auth", "--workers", "1"]

    def start(self) -> None:
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "anytune",
                    "server",
                    "--port",
                    str(self.port),
                    "--no-auth",
                    "--workers",
                    "1",
                ],
                env=self.env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                **_as_user(self.user),
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/v1/health/live", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"the server did not start: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def _as_user(user: str | None) -> dict[str, Any]:
    """Popen's arguments that run a process as `user`, with that user's group and no other."""
    if user is None:
        return {}
    import pwd

    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def job_body(folder: Path, i: int) -> dict[str, Any]:
    provider = "local" if i % 30 == 29 else ("openai" if i % 2 else "together")
    data = folder / f"d{i}"
    data.mkdir()
    body: dict[str, Any] = {
        "name": f"crash-{i}",
        "provider": provider,
        "base_model": {
            "openai": "gpt-4o-mini",
            "together": "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
            "local": "tiny",
        }[provider],
        "data": chat_splits(data, seed=1000 + i),  # data of its own: Together's SDK backs off on a re-upload
        "hyperparameters": {"epochs": 1, "max_steps": 2} if provider == "local" else {"epochs": 1},
    }
    return body


def submit(url: str, body: dict[str, Any], key: str) -> str:
    """POST until the server answers with the job, retrying with the same key through crashes."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            answer = httpx.post(f"{url}/v1/jobs", json=body, headers={"Idempotency-Key": key}, timeout=60)
        except httpx.HTTPError:
            time.sleep(0.2)  # the server is down: the same request again, with the same key
            continue
        if answer.status_code in (200, 201):
            return str(answer.json()["id"])
        if answer.status_code == 409:  # its first copy is still being handled
            time.sleep(0.2)
            continue
        raise AssertionError(f"{answer.status_code}: {answer.text}")
    raise AssertionError(f"{key} was never answered")


def test_killing_the_server_at_random_never_loses_or_doubles_a_job(tmp_path, monkeypatch):
    monkeypatch.setenv("ANYTUNE_TODAY", "2026-11-28")  # before OpenAI's fine-tuning cutoff
    home = tmp_path / "home"
    with (
        emulated("openai", api_key=OPENAI_TEST_KEY, tick=2.0) as openai_emu,
        emulated("together", api_key=TOGETHER_TEST_KEY, tick=2.0) as together_emu,
    ):
        env = dict(
            os.environ,
            ANYTUNE_HOME=str(home),
            ANYTUNE_POLL_INTERVAL="0.05",
            ANYTUNE_SUBMIT_GRACE_S="3",
            ANYTUNE_LEASE_S="10",  # a killed worker's jobs are taken over in 10 s, wherever the kills land
            PYTHONUNBUFFERED="1",
        )
        server = Server(env, free_port(), tmp_path / "server.log")
        url = f"http://127.0.0.1:{server.port}"
        server.start()
        rng = random.Random(7)
        jobs: dict[int, str] = {}
        stop = threading.Event()
        restart_lock = threading.Lock()

        def killer() -> None:
            while server.kills < KILLS and not stop.is_set():
                time.sleep(rng.uniform(0.5, 2.5) * max(1.0, JOBS / 40))  # spread over the whole run
                with restart_lock:
                    server.kill()
                    time.sleep(rng.uniform(0.0, 0.5))
                    server.start()

        killing = threading.Thread(target=killer)
        killing.start()
        started = time.monotonic()
        try:
            bodies = [job_body(tmp_path, i) for i in range(JOBS)]
            for i, body in enumerate(bodies):
                jobs[i] = submit(url, body, f"crash-key-{i}")
            submitted = time.monotonic() - started
            killing.join()
            registry = Registry(f"sqlite:///{home / 'registry.db'}")
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if all(registry.get_job(j).status.terminal for j in jobs.values()):
                    break
                time.sleep(0.5)
        finally:
            stop.set()
            killing.join()
            server.stop()
        assert server.kills == KILLS
        statuses = Counter(registry.get_job(j).status for j in jobs.values())
        assert statuses == {JobStatus.SUCCEEDED: JOBS}, (
            statuses,
            (tmp_path / "server.log").read_text()[-3000:],
        )
        # one anytune job per request, one provider job per anytune job
        assert len(registry.list_jobs(limit=10 * JOBS)) == JOBS == len(set(jobs.values()))
        for provider, emu in (("openai", openai_emu), ("together", together_emu)):
            ours = {
                registry.get_job(j).provider_job_id
                for j in jobs.values()
                if registry.get_job(j).provider == provider
            }
            assert sorted(emu.job_ids()) == sorted(ours), (
                f"{provider}: the emulator holds other jobs than ours"
            )
        # no status change recorded twice (a poll replayed after a kill is dropped, not recorded again)
        for job_id in jobs.values():
            changes = [e.message for e in registry.events(job_id, kind="status")]
            repeated = [m for m, n in Counter(changes).items() if n > 1]
            assert not repeated, (job_id, repeated, changes)
        ended = time.monotonic() - started
        print(
            json.dumps(
                {
                    "jobs": JOBS,
                    "kills": server.kills,
                    "submitted_s": round(submitted, 1),
                    "ended_s": round(ended, 1),
                }
            )
        )
        registry.engine.dispose()
