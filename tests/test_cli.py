"""The command line: fast start, clear errors and exit codes, and the data commands."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from anytune.cli import main
from tests.conftest import cli_env, job_yaml, reversal_rows, run_anytune, write_jsonl

HEAVY = {
    "torch",
    "transformers",
    "peft",
    "trl",
    "openai",
    "together",
    "huggingface_hub",
    "bitsandbytes",
    "datasets",
    "accelerate",
    "boto3",
    "botocore",
    "moto",
    "httpx",
}


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def test_importing_the_cli_pulls_in_no_heavy_library():
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import anytune.cli"],
        capture_output=True,
        text=True,
        check=True,
    )
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0] for line in res.stderr.splitlines() if "|" in line
    }
    assert "anytune" in imported and "typer" in imported
    assert not imported & HEAVY, imported & HEAVY


def test_help_and_plugin_listing_import_no_heavy_library():
    code = (
        "import sys\n"
        "from anytune.cli import main\n"
        "for argv in (['--help'], ['run', '--help'], ['plugins', 'list']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (argv, e.code)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(res.stdout.strip().splitlines()[-1].replace("'", '"')))
    assert not loaded & HEAVY, loaded & HEAVY


def test_version(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.startswith("anytune ")


def test_validate_valid_file_prints_stats_and_exits_0(capsys, tmp_path: Path):
    path = write_jsonl(tmp_path / "ok.jsonl", reversal_rows(12))
    code, out, err = run_cli(capsys, "validate", str(path))
    assert code == 0, err
    assert "12 valid chat records" in out and "tokens" in out and "duplicates" in out
    assert "fingerprint sha256:" in out


def test_validate_broken_file_names_every_line_and_exits_1(capsys, tmp_path: Path):
    rows = [*reversal_rows(2), "{bad json", {"messages": [{"role": "usr", "content": "x"}]}, {"text": 5}]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    code, _, err = run_cli(capsys, "validate", str(path))
    assert code == 1
    assert f"{path}:3: not valid JSON" in err
    assert f"{path}:4: messages[0].role: unknown role 'usr'" in err
    assert f"{path}:5: is a text record, but the file is chat" in err
    assert "3 error(s) in 5 chat records" in err


def test_validate_json_output(capsys, tmp_path: Path):
    path = write_jsonl(tmp_path / "bad.jsonl", [*reversal_rows(2), "nope"])
    code, out, _ = run_cli(capsys, "validate", str(path), "--json")
    report = json.loads(out)
    assert code == 1 and report["errors"] == 1 and report["issues"][0]["line"] == 3


def test_validate_missing_file_is_a_usage_error(capsys, tmp_path: Path):
    code, _, err = run_cli(capsys, "validate", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "no such file" in err and "Traceback" not in err


def test_data_stats_convert_and_split(capsys, tmp_path: Path):
    path = write_jsonl(tmp_path / "all.jsonl", reversal_rows(100, seed=4))
    code, out, _ = run_cli(capsys, "data", "stats", str(path), "--json")
    assert code == 0 and json.loads(out)["rows"] == 100
    code, out, _ = run_cli(capsys, "data", "convert", str(path), "--to", "alpaca")
    assert code == 0 and "100 records converted from chat to instruction" in out
    converted = tmp_path / "all.instruction.jsonl"
    assert json.loads(converted.read_text().splitlines()[0])["instruction"].startswith("Reverse:")
    code, out, _ = run_cli(
        capsys, "data", "split", str(path), "--out", str(tmp_path / "split"), "--seed", "1"
    )
    assert code == 0 and "no leakage" in out
    assert (
        sum(
            len((tmp_path / "split" / f"{n}.jsonl").read_text().splitlines())
            for n in ("train", "validation", "test")
        )
        == 100
    )


def test_data_convert_unknown_format(capsys, tmp_path: Path):
    path = write_jsonl(tmp_path / "a.jsonl", reversal_rows(2))
    code, _, err = run_cli(capsys, "data", "convert", str(path), "--to", "xml")
    assert code == 2 and "unknown format 'xml'" in err


def test_run_with_an_invalid_job_file_is_a_clear_usage_error(capsys, tmp_path: Path):
    job = tmp_path / "job.yaml"
    job.write_text("base_model: tiny\ndata:\n  train: t.jsonl\nhyperparameters:\n  learning_rate: 2\n")
    code, _, err = run_cli(capsys, "run", str(job))
    assert code == 2
    assert f"{job}:5: hyperparameters.learning_rate: Input should be less than 1" in err
    assert "Traceback" not in err
    code, _, err = run_cli(capsys, "--debug", "run", str(job))
    assert code == 2 and "Traceback" in err


def test_run_refuses_broken_data_before_anything_starts(capsys, tmp_path: Path):
    data = write_jsonl(tmp_path / "train.jsonl", [*reversal_rows(3), "oops"])
    job = job_yaml(tmp_path / "job.yaml", base_model="tiny", data={"train": "train.jsonl"})
    code, _, err = run_cli(capsys, "run", str(job))
    assert code == 2 and f"{data}:4" in err
    code, out, _ = run_cli(capsys, "jobs", "list", "--json")
    assert code == 0 and json.loads(out) == []


def test_run_refuses_what_the_backend_cannot_do(capsys, tmp_path: Path):
    write_jsonl(tmp_path / "train.jsonl", reversal_rows(3))
    job = job_yaml(tmp_path / "job.yaml", base_model="tiny", data={"train": "train.jsonl"}, adapter="prefix")
    code, _, err = run_cli(capsys, "run", str(job), "--set", "method=ppo")
    assert code == 2
    assert "cannot run method 'ppo'" in err
    code, _, err = run_cli(capsys, "run", str(job), "--provider", "together")
    assert code == 2 and "cannot train adapter 'prefix'" in err and "providers that can: hf, local" in err
    code, _, err = run_cli(capsys, "run", str(job), "--provider", "nowhere")
    assert code == 2 and "unknown backend 'nowhere'" in err


def test_unknown_job_and_model_are_usage_errors(capsys):
    code, _, err = run_cli(capsys, "jobs", "show", "job-none")
    assert code == 2 and "no job 'job-none'" in err
    code, _, err = run_cli(capsys, "models", "show", "nothing@production")
    assert code == 2 and "no model 'nothing@production'" in err


def test_empty_listings(capsys):
    assert "no jobs yet" in run_cli(capsys, "jobs", "list")[1]
    assert "no models registered yet" in run_cli(capsys, "models", "list")[1]


def test_plugins_list_json(capsys):
    code, out, _ = run_cli(capsys, "plugins", "list", "--json")
    local = next(p for p in json.loads(out) if p["name"] == "local")
    assert code == 0 and local["ok"] and local["backends"] == ["local"]


def test_usage_mistakes_are_usage_errors_not_internal_ones(tmp_path):
    env = cli_env(tmp_path)
    missing = run_anytune("run", env=env)
    assert missing.returncode == 2 and "Missing argument" in missing.stderr
    assert "internal error" not in missing.stderr
    unknown = run_anytune("jobs", "list", "--bogus", env=env)
    assert unknown.returncode == 2 and "No such option: --bogus" in unknown.stderr
    bare = run_anytune(env=env)
    assert bare.returncode == 0 and "internal error" not in bare.stderr and "run" in bare.stdout


def test_jobs_show_prints_a_loss_as_a_number_and_a_share_as_a_percentage(capsys, tmp_path):
    from anytune.jobfile import spec_from_dict
    from anytune.registry import Registry

    registry = Registry()
    train = write_jsonl(tmp_path / "train.jsonl", reversal_rows(4))
    job = registry.create_job(
        spec_from_dict({"base_model": "tiny", "provider": "local", "data": {"train": str(train)}})
    )
    registry.add_evaluation(
        subject="fine-tuned",
        provider="local",
        model_id="tiny",
        dataset_path=str(train),
        dataset_fingerprint="sha256:x",
        metrics={"eval_loss": 1.23, "exact_match": 0.5},
        n=4,
        job_id=job.id,
    )
    code, out, err = run_cli(capsys, "jobs", "show", job.id)
    assert code == 0, err
    text = " ".join(out.split())
    assert "eval_loss 1.230" in text and "exact_match 50.0%" in text
    assert "123.0%" not in text


def test_run_without_a_terminal_tells_the_evaluations_progress(openai_emu, tmp_path: Path):
    """In a log (no terminal) an evaluation says which model it is at, and again every
    ANYTUNE_PROGRESS_SECONDS (30 by default), as training does: minutes of generation never pass in silence."""
    openai_emu.faults.add(method="POST", path="/v1/chat/completions", delay=0.25, times=1000)
    rows = reversal_rows(30, seed=8)
    data = {
        "train": str(write_jsonl(tmp_path / "train.jsonl", rows[:24])),
        "test": str(write_jsonl(tmp_path / "test.jsonl", rows[24:])),
    }
    job = job_yaml(
        tmp_path / "job.yaml",
        name="talkative",
        base_model="gpt-4o-mini",
        provider="openai",
        data=data,
        hyperparameters={"epochs": 1},
        evaluation={"metrics": ["exact_match"], "limit": 6},
    )
    env = cli_env(tmp_path, ANYTUNE_PROGRESS_SECONDS="0.5", ANYTUNE_POLL_INTERVAL="0")
    done = run_anytune("run", str(job), env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip().startswith("evaluating ")]
    assert any(line.startswith("evaluating base") for line in lines), done.stderr
    assert any(line.startswith("evaluating fine-tuned") for line in lines), done.stderr
    assert len(lines) >= 4, lines  # 12 answers at 0.25 s: a line each half second besides the two stages
    assert "held-out evaluation" in done.stdout


def test_at_80_columns_every_listed_id_is_whole_and_accepted_by_jobs_show(tmp_path: Path):
    """Jobs made in the same second share all but the last characters of their ids: a table that cut ids
    to fit showed `job-1a250…` for each, which `jobs show` could not take. A job's name is taken too."""
    from anytune.registry import Registry
    from anytune.spec import JobSpec

    env = cli_env(tmp_path, COLUMNS="80")
    registry = Registry(f"sqlite:///{tmp_path / 'home' / 'registry.db'}")
    made = [
        registry.create_job(
            JobSpec.model_validate(
                {"name": f"same-second-{i}", "base_model": "m", "data": {"train": "t.jsonl"}}
            )
        ).id
        for i in range(3)
    ]
    listed = run_anytune("jobs", "list", "--no-refresh", env=env)
    assert listed.returncode == 0, listed.stderr
    assert max(len(line) for line in listed.stdout.splitlines()) <= 80
    assert all(f"same-second-{i}" in listed.stdout for i in range(3)) and "pending" in listed.stdout
    shown = re.findall(r"job-[0-9a-f…]+", listed.stdout)
    assert sorted(shown) == sorted(made), listed.stdout
    for job_id in shown:
        one = run_anytune("jobs", "show", job_id, "--json", env=env)
        assert one.returncode == 0 and json.loads(one.stdout)["id"] == job_id
    by_name = run_anytune("jobs", "show", "same-second-1", "--json", env=env)
    assert by_name.returncode == 0 and json.loads(by_name.stdout)["id"] == made[1]
    assert "the newest job of that name" in by_name.stderr
