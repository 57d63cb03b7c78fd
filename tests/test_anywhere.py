"""One job file, three providers (local for real, OpenAI and Together emulated): only --provider differs,
and `anytune jobs list` shows all three jobs in one neutral table."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from anytune.testing.clock import RealClock
from anytune.testing.server import EmulatorServer
from anytune_openai.emulator import OpenAIEmulator
from anytune_together.emulator import TogetherEmulator
from tests.conftest import cli_env, reversal_rows, run_anytune, write_jsonl

pytestmark = pytest.mark.slow


def test_same_job_file_on_three_providers(tmp_path: Path, tiny_model: Path):
    rows = reversal_rows(50, seed=41)
    write_jsonl(tmp_path / "train.jsonl", rows[:40])
    write_jsonl(tmp_path / "test.jsonl", rows[40:])
    # the example file, with the tiny model for the local run (40 rows: 5 steps) and small data
    job = yaml.safe_load((Path(__file__).parents[1] / "examples" / "anywhere.yaml").read_text())
    job.update(base_model=str(tiny_model), data={"train": "train.jsonl", "test": "test.jsonl"})
    job_file = tmp_path / "anywhere.yaml"
    job_file.write_text(yaml.safe_dump(job))

    openai_emu = OpenAIEmulator(clock=RealClock(speed=40), step_seconds=0.5)
    together_emu = TogetherEmulator(clock=RealClock(speed=40), step_seconds=0.5)
    with EmulatorServer(openai_emu.app) as oa, EmulatorServer(together_emu.app) as tg:
        env = cli_env(
            tmp_path,
            OPENAI_BASE_URL=f"{oa.url}/v1",
            OPENAI_API_KEY="sk-emulator-anywhere",
            TOGETHER_BASE_URL=tg.url,
            TOGETHER_API_KEY="tg-emulator-anywhere",
        )
        for provider in ("local", "openai", "together"):
            run = run_anytune("run", str(job_file), "--provider", provider, env=env)
            assert run.returncode == 0, f"{provider}:\n{run.stdout}\n{run.stderr}"
            assert "succeeded in" in run.stdout and "held-out evaluation" in run.stdout
        listing = run_anytune("jobs", "list", env=env)
    assert listing.returncode == 0, listing.stderr
    rows_out = [line for line in listing.stdout.splitlines() if "job-" in line]
    assert len(rows_out) == 3
    providers = {p for line in rows_out for p in ("local", "openai", "together") if f" {p} " in line}
    assert providers == {"local", "openai", "together"}
    assert all("succeeded" in line for line in rows_out)
    assert openai_emu.jobs and together_emu.jobs
