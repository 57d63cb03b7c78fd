"""The laptop workflow, two machines honestly apart: the CLI on one home, the server and its worker on
another, run as another Unix user that cannot read the laptop's home or data (mode 700, checked before it
starts), and allowed to read no data folder at all (`ANYTUNE_DATA_ROOT` an empty folder), so the job's data
can reach it only through the upload. `anytune run`, `report`, `models pull` and `serve` from the laptop side
all exit 0, and the served model answers a chat completion here.

The server runs as `nobody` where the tests run as root (CI does); elsewhere as the same user, with only the
data folder fenced. tests/benchmarks/two_users_quickstart.py is the same with the quick start's real model."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import job_yaml, reversal_rows, run_anytune, write_jsonl
from tests.test_service_crash import Server, free_port

pytest.importorskip("fastapi")

OTHER_USER = "nobody"


def other_user() -> str | None:
    """A user to run the server as: `nobody`, where this process may switch to it (root)."""
    import pwd

    try:
        pwd.getpwnam(OTHER_USER)
    except KeyError:
        return None
    return OTHER_USER if os.geteuid() == 0 else None


@contextmanager
def machine_of(user: str | None) -> Iterator[Path]:
    """A folder for the other "machine": its own, mode 700 (owned by `user` where there is one). The
    interpreter must stay reachable for it: the Python under /root is, with /root made passable (o+x, not
    readable: nothing in it can be listed) while the test runs, and restored after."""
    home = Path(tempfile.mkdtemp(prefix="anytune-server-"))
    root, before = Path("/root"), None
    try:
        if user is not None:
            import pwd

            entry = pwd.getpwnam(user)
            os.chown(home, entry.pw_uid, entry.pw_gid)
            if str(Path(sys.executable).resolve()).startswith("/root/"):
                before = stat.S_IMODE(root.stat().st_mode)
                root.chmod(before | stat.S_IXOTH)
        home.chmod(0o700)
        yield home
    finally:
        if before is not None:
            root.chmod(before)
        shutil.rmtree(home, ignore_errors=True)


def can_read(user: str | None, path: Path) -> bool:
    """Whether `user` can read the file (or list the folder) at `path`, tried as that user: the child says
    which, so that a child that could not run at all is not taken for a refusal."""
    from tests.test_service_crash import _as_user

    code = (
        "import os, sys\n"
        f"p = {str(path)!r}\n"
        "try:\n"
        "    os.listdir(p) if os.path.isdir(p) else open(p).close()\n"
        "except PermissionError:\n"
        "    print('denied')\n"
        "else:\n"
        "    print('read')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, **_as_user(user))
    assert done.returncode == 0 and done.stdout.strip() in ("read", "denied"), done.stderr
    return done.stdout.strip() == "read"


def server_on(machine: Path, user: str | None, log: Path, **env: str) -> Server:
    """`anytune server` on the other "machine": its home and caches there, an empty folder as the only one it
    may read data paths in, all owned by `user` (who runs it)."""
    (machine / "data").mkdir(exist_ok=True)
    if user is not None:
        subprocess.run(["chown", "-R", f"{user}:", str(machine)], check=True)
    return Server(
        dict(
            os.environ,
            HOME=str(machine),
            ANYTUNE_HOME=str(machine / "home"),
            ANYTUNE_DATA_ROOT=str(machine / "data"),
            HF_HOME=str(machine / "hf"),
            XDG_CACHE_HOME=str(machine / "cache"),
            **env,
        ),
        free_port(),
        log,
        user=user,
    )


def test_a_job_from_a_laptop_uploads_its_data_and_its_model_comes_back_to_serve(tiny_model, tmp_path):
    user = other_user()
    with machine_of(user) as server_machine:
        run_it(user, server_machine, tiny_model, tmp_path)


def run_it(user: str | None, server_machine: Path, tiny_model: Path, tmp_path: Path) -> None:
    laptop = tmp_path / "laptop"
    rows = reversal_rows(60, seed=13)
    write_jsonl(laptop / "data" / "train.jsonl", rows[:50])
    write_jsonl(laptop / "data" / "test.jsonl", rows[50:])
    laptop.chmod(0o700)
    if user is not None:  # the server's user can read neither the laptop's data nor its home
        assert not can_read(user, laptop / "data" / "train.jsonl") and not can_read(user, laptop)
        assert can_read(None, laptop / "data" / "train.jsonl")  # (the check itself works)
    base = server_machine / "base-model"  # the base model is the server's, on its machine
    shutil.copytree(tiny_model, base)
    server = server_on(server_machine, user, tmp_path / "server.log", ANYTUNE_POLL_INTERVAL="0.1")
    fenced = server_machine / "data"
    server.start()
    job = job_yaml(
        laptop / "job.yaml",
        name="laptop",
        base_model=str(base),
        adapter={"type": "lora", "r": 8},
        hyperparameters={"max_steps": 8, "batch_size": 8, "learning_rate": 3e-3},
        data={"train": "data/train.jsonl", "test": "data/test.jsonl"},
        evaluation={"max_new_tokens": 8, "limit": 5},
        provider_options={"local": {"merge": True}},
    )
    env = dict(
        os.environ,
        ANYTUNE_HOME=str(laptop / "home"),
        ANYTUNE_SERVER=f"http://127.0.0.1:{server.port}",
        ANYTUNE_POLL_INTERVAL="0.2",
        COLUMNS="200",
    )
    serving = None
    try:
        done = run_anytune("run", str(job), env=env, timeout=400)
        assert done.returncode == 0, done.stdout + done.stderr + server.log.read_text()[-3000:]
        assert "uploading train.jsonl" in done.stderr and "uploading test.jsonl" in done.stderr
        assert "succeeded" in done.stdout and "held-out evaluation" in done.stdout
        job_id = next(w for w in done.stdout.split() if w.startswith("job-"))
        report = run_anytune("report", job_id, "--out", str(laptop / "report"), env=env)
        assert report.returncode == 0, report.stdout + report.stderr
        assert (laptop / "report" / "report.html").exists()
        scored = run_anytune(
            "eval", "laptop@1", "--data", str(laptop / "data" / "test.jsonl"), "--limit", "3", env=env
        )
        assert scored.returncode == 0, scored.stdout + scored.stderr
        assert "uploading" not in scored.stderr  # the server holds those bytes already: asked by hash
        assert "held-out evaluation (3 examples, dataset:sha256:" in scored.stdout
        listed = run_anytune("datasets", "list", env=env)
        assert (
            listed.returncode == 0 and "train.jsonl" in listed.stdout and "dataset:sha256:" in listed.stdout
        )

        pulled = run_anytune("models", "pull", "laptop@1", env=env)
        assert pulled.returncode == 0, pulled.stdout + pulled.stderr
        here = laptop / "home" / "models" / "laptop" / "1"
        assert (here / "merged" / "config.json").exists() and (here / "adapter").is_dir()

        port = free_port()
        serving = subprocess.Popen(
            [sys.executable, "-m", "anytune", "serve", "laptop@1", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        from openai import OpenAI

        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        deadline = time.monotonic() + 120
        while True:
            try:
                client.models.list()
                break
            except Exception:
                assert serving.poll() is None, serving.stdout.read() if serving.stdout else ""
                assert time.monotonic() < deadline, "anytune serve never came up"
                time.sleep(0.5)
        answer = client.chat.completions.create(
            model="laptop@1", messages=[{"role": "user", "content": "Reverse: a b c"}], max_tokens=8
        )
        assert isinstance(answer.choices[0].message.content, str)
        assert not (laptop / "home" / "registry.db").exists()  # the laptop keeps no registry of its own
        assert list(fenced.iterdir()) == []
        if user is not None:  # what the server wrote is its user's
            assert (server_machine / "home" / "registry.db").stat().st_uid != os.geteuid()
    finally:
        if serving is not None:
            serving.kill()
            serving.wait()
        server.stop()
