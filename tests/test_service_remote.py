"""The CLI and the Python Client against a running `anytune server`: `anytune run` submits there, follows the
job as the server's worker polls it, prints the evaluation the worker ran, and writes nothing to the CLI's own
registry; quote, eval and report go to the server as well; `Client(url=..., token=...)` has the in-process
Client's methods, and the server's errors come back as the same AnytuneError classes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from anytune.client import Client
from anytune.errors import NotFoundError
from anytune.jobfile import load_job_file
from anytune.jobs import JobStatus
from anytune.registry import Registry
from anytune.registry.access import create_token
from tests.conftest import OPENAI_TEST_KEY, emulated, job_yaml, reversal_rows, run_anytune, write_jsonl
from tests.test_service_crash import Server, free_port

pytest.importorskip("fastapi")


def openai_job(folder: Path) -> Path:
    rows = reversal_rows(40, seed=21)
    data = {
        "train": str(write_jsonl(folder / "train.jsonl", rows[:30])),
        "test": str(write_jsonl(folder / "test.jsonl", rows[30:])),
    }
    return job_yaml(
        folder / "job.yaml",
        name="remote",
        base_model="gpt-4o-mini",
        provider="openai",
        data=data,
        hyperparameters={"epochs": 1},
        evaluation={"metrics": ["token_f1"]},
    )


def test_the_cli_runs_a_job_on_a_server_and_writes_nothing_locally(tmp_path, monkeypatch):
    monkeypatch.setenv("ANYTUNE_TODAY", "2026-11-28")
    with emulated("openai", api_key=OPENAI_TEST_KEY, tick=3.0):
        server_home = tmp_path / "server-home"
        prices = tmp_path / "server-prices.yaml"  # the server's own contract price: quotes show it
        prices.write_text(
            "prices:\n  - {provider: openai, model: gpt-4o-mini-2024-07-18, unit: 1m_tokens, price: 777.0,"
            " source: the server's contract, seen: 2026-11-01}\n"
        )
        env = dict(
            os.environ,
            ANYTUNE_HOME=str(server_home),
            ANYTUNE_POLL_INTERVAL="0.05",
            ANYTUNE_PRICES=str(prices),
        )
        server = Server(env, free_port(), tmp_path / "server.log")
        token, _ = create_token(Registry(f"sqlite:///{server_home / 'registry.db'}"), "cli", "submit")
        server.start_args = ["--workers", "1"]
        server.start()
        try:
            url = f"http://127.0.0.1:{server.port}"
            here = tmp_path / "cli-home"
            cli = dict(
                os.environ,
                ANYTUNE_HOME=str(here),
                ANYTUNE_SERVER=url,
                ANYTUNE_TOKEN=token,
                ANYTUNE_POLL_INTERVAL="0.2",
                COLUMNS="200",
            )
            job = openai_job(tmp_path)
            done = run_anytune("run", str(job), env=cli, timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "submitted job-" in done.stdout and "succeeded" in done.stdout
            assert "held-out evaluation" in done.stdout and "token_f1" in done.stdout
            listed = run_anytune("jobs", "list", env=cli)
            assert listed.returncode == 0 and "remote" in listed.stdout and "succeeded" in listed.stdout
            [first] = Client(url=url, token=token).list_jobs()
            job_id = first.id

            # quote, eval and report are the server's work too: its catalog, its registry
            quoted = run_anytune("quote", str(job), "--providers", "openai", "--json", env=cli)
            assert quoted.returncode == 0, quoted.stderr
            [row] = json.loads(quoted.stdout)["quotes"]
            assert row["unit_price"] == 777.0 and row["price_source"].startswith("the server's contract")
            before = len(Client(url=url, token=token).evaluations())
            scored = run_anytune(
                "eval", job_id, "--metrics", "exact_match", "--limit", "4", "--no-base", env=cli, timeout=300
            )
            assert scored.returncode == 0, scored.stdout + scored.stderr
            assert "held-out evaluation (4 examples" in scored.stdout and "exact_match" in scored.stdout
            assert len(Client(url=url, token=token).evaluations()) == before + 1
            reported = run_anytune("report", job_id, "--out", str(tmp_path / "report"), env=cli)
            assert reported.returncode == 0, reported.stdout + reported.stderr
            page = (tmp_path / "report" / "report.html").read_text()
            assert job_id in page or "fine-tuned" in page
            assert (tmp_path / "report" / "report.md").exists()
            # a hosted model has no files to pull and merge here: the refusal says what to call instead
            refused = run_anytune("export", job_id, "--out", str(tmp_path / "x"), env=cli)
            assert refused.returncode != 0 and "no files to take away" in refused.stderr, refused.stderr
            assert "ft:" in refused.stderr and not (tmp_path / "x").exists()
            # a drift check reads the server's stored evaluations through the Client's interface: here every
            # one is on the same data, so there is no baseline on other data to compare with, and it says so
            drift = run_anytune("eval", job_id, "--against", "baseline", env=cli, timeout=300)
            assert drift.returncode == 2 and "no stored evaluation to compare with (baseline)" in drift.stderr
            missing = run_anytune("eval", "job-nope", env=cli)
            assert missing.returncode != 0 and "job-nope" in missing.stdout + missing.stderr
            assert not (here / "registry.db").exists()  # nothing was written here
            # --server '' means this process: the CLI's own registry, which has no jobs
            local = run_anytune("--server", "", "jobs", "list", env=cli)
            assert local.returncode == 0 and "remote" not in local.stdout

            # the Python client: the same interface over HTTP
            remote = Client(url=url, token=token)
            [job_row] = remote.list_jobs()
            assert job_row.status is JobStatus.SUCCEEDED
            assert remote.refresh(job_row.id[:12]).id == job_row.id  # prefixes resolve on the server
            assert remote.evaluations(job_id=job_row.id)
            second = remote.run(load_job_file(job), interval=0.1)
            assert second.job.status is JobStatus.SUCCEEDED and second.evaluation is not None
            assert {s.subject for s in second.evaluation.subjects} >= {"base"}
            with pytest.raises(NotFoundError):
                remote.get_job("job-nope")
        finally:
            server.stop()
