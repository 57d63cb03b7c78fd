"""Rehearsal: the quick start from a "laptop" against `anytune server` run as another Unix user (`nobody`),
with its own home, unable to read the laptop's home and data (mode 700, checked first), and allowed to read
no data folder (`ANYTUNE_DATA_ROOT` empty): the data reach it only through the upload. The suite's short form
is tests/test_service_laptop.py (a tiny model); this one trains the real SmolLM2-135M (minutes on a CPU).

    sudo .venv/bin/python tests/benchmarks/two_users_quickstart.py     # as root, which can switch users

Runs `anytune run examples/quickstart.yaml`, `anytune report`, `anytune models pull` and `anytune serve`
(answering one chat completion), all from the laptop's side; prints each step's exit code and time, and
exits 1 if one fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.conftest import run_anytune  # noqa: E402
from tests.test_service_crash import free_port  # noqa: E402
from tests.test_service_laptop import can_read, machine_of, other_user, server_on  # noqa: E402


def step(name: str, started: float, done: subprocess.CompletedProcess[str]) -> None:
    print(f"{name:<32} exit {done.returncode}  {time.monotonic() - started:7.1f} s", flush=True)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
        raise SystemExit(1)


def main() -> None:
    user = other_user()
    if user is None:
        raise SystemExit("run it as root: the server is started as another user (nobody)")
    laptop = Path(tempfile.mkdtemp(prefix="anytune-laptop-"))
    laptop.chmod(0o700)
    shutil.copy(ROOT / "examples" / "quickstart.yaml", laptop / "quickstart.yaml")
    shutil.copytree(ROOT / "examples" / "data" / "reverse", laptop / "data" / "reverse")
    with machine_of(user) as machine:
        assert not can_read(user, laptop / "data" / "reverse" / "train.jsonl") and not can_read(user, laptop)
        print(f"the server runs as {user}; it cannot read {laptop} (checked)")
        server = server_on(machine, user, laptop / "server.log")
        server.start()
        env = dict(
            os.environ,
            ANYTUNE_HOME=str(laptop / "home"),
            ANYTUNE_SERVER=f"http://127.0.0.1:{server.port}",
            COLUMNS="200",
        )
        serving = None
        try:
            started = time.monotonic()
            run = run_anytune("run", str(laptop / "quickstart.yaml"), env=env, timeout=1800)
            step("anytune run quickstart.yaml", started, run)
            print(
                "\n".join(line for line in run.stdout.splitlines() if "match" in line or "succeeded" in line)
            )
            job_id = next(w for w in run.stdout.split() if w.startswith("job-"))
            started = time.monotonic()
            step(
                "anytune report", started, run_anytune("report", job_id, "--out", str(laptop / "r"), env=env)
            )
            started = time.monotonic()
            step("anytune models pull", started, run_anytune("models", "pull", "reverse-letters", env=env))
            port, started = free_port(), time.monotonic()
            serving = subprocess.Popen(
                [sys.executable, "-m", "anytune", "serve", "reverse-letters", "--port", str(port)], env=env
            )
            from openai import OpenAI

            client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
            while True:
                try:
                    answer = client.chat.completions.create(
                        model=client.models.list().data[0].id,  # the name it serves the version as
                        messages=[{"role": "user", "content": "Reverse the letters of: anytune"}],
                        max_tokens=16,
                    )
                    break
                except Exception:
                    if serving.poll() is not None or time.monotonic() - started > 300:
                        raise SystemExit("anytune serve did not answer") from None
                    time.sleep(1)
            print(f"{'anytune serve: one completion':<32} exit 0  {time.monotonic() - started:7.1f} s")
            print(f"  answered: {answer.choices[0].message.content!r}")
            print(f"the laptop keeps no registry: {not (laptop / 'home' / 'registry.db').exists()}")
            print(f"the server's data folder is empty: {list((machine / 'data').iterdir()) == []}")
        finally:
            if serving is not None:
                serving.kill()
            server.stop()
            shutil.rmtree(laptop, ignore_errors=True)


if __name__ == "__main__":
    main()
