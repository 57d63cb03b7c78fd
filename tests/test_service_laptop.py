"""The laptop workflow: the CLI on one home, the server and its worker on another, the server allowed to read
no data folder at all (`ANYTUNE_DATA_ROOT` an empty folder), so the job's data can reach it only through the
upload. `anytune run`, `report`, `models pull` and `serve` from the laptop side all exit 0, and the served
model answers a chat completion here."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.conftest import job_yaml, reversal_rows, run_anytune, write_jsonl
from tests.test_service_crash import Server, free_port

pytest.importorskip("fastapi")


def test_a_job_from_a_laptop_uploads_its_data_and_its_model_comes_back_to_serve(tiny_model, tmp_path):
    fenced = tmp_path / "server-data"  # the only folder the server may read paths in: empty
    fenced.mkdir()
    server_home = tmp_path / "server-home"
    server = Server(
        dict(
            os.environ,
            ANYTUNE_HOME=str(server_home),
            ANYTUNE_DATA_ROOT=str(fenced),
            ANYTUNE_POLL_INTERVAL="0.1",
        ),
        free_port(),
        tmp_path / "server.log",
    )
    server.start()
    laptop = tmp_path / "laptop"
    rows = reversal_rows(60, seed=13)
    write_jsonl(laptop / "data" / "train.jsonl", rows[:50])
    write_jsonl(laptop / "data" / "test.jsonl", rows[50:])
    job = job_yaml(
        laptop / "job.yaml",
        name="laptop",
        base_model=str(tiny_model),
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
    finally:
        if serving is not None:
            serving.kill()
            serving.wait()
        server.stop()
