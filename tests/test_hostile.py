"""Hostile input, concurrent processes, secrets on the console, outages mid-run: each case reproduced as
it broke on main before, and held."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from anytune.client import Client
from anytune.errors import PluginError, SpecError
from anytune.jobfile import load_job_file
from anytune.plugins import PluginManager
from anytune.registry import Registry
from tests.conftest import (
    OPENAI_TEST_KEY,
    anytune_in_process,
    cli_env,
    emulated,
    job_yaml,
    reversal_rows,
    run_anytune,
    write_jsonl,
)

KEY = OPENAI_TEST_KEY
WANDB = "wandb-secret-9876543210zyxwvutsrq"

BOMB = "\n".join(
    [f"a: &a [{','.join(['lol'] * 9)}]"]
    + [f"{b}: &{b} [{','.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi", strict=True)]
)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    return anytune_in_process(capsys, *args)


def openai_job(tmp_path: Path, **extra: object) -> Path:
    rows = reversal_rows(40, seed=9)
    data = {
        "train": str(write_jsonl(tmp_path / "train.jsonl", rows[:30])),
        "test": str(write_jsonl(tmp_path / "test.jsonl", rows[30:])),
    }
    fields = {
        "name": "hostile",
        "base_model": "gpt-4o-mini",
        "provider": "openai",
        "data": data,
        "hyperparameters": {"epochs": 1},
        "evaluation": {"metrics": ["token_f1"]},
        **extra,
    }
    return job_yaml(tmp_path / "job.yaml", **fields)


# ------------------------------------------------------------------------------------------- 1. YAML


def test_an_alias_bomb_is_refused_at_once_in_bounded_memory(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    probe = (  # VmHWM: the peak of this program (ru_maxrss would include the forking pytest's own)
        "import re, sys, time\n"
        "from anytune.errors import SpecError\n"
        "from anytune.jobfile import load_job_file\n"
        "t = time.perf_counter()\n"
        "try:\n"
        f"    load_job_file({str(bomb)!r})\n"
        "except SpecError as exc:\n"
        "    print(exc.message)\n"
        "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
        "print(time.perf_counter() - t, int(hwm) // 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    message, numbers = done.stdout.strip().splitlines()
    seconds, peak_mb = float(numbers.split()[0]), int(numbers.split()[1])
    assert "unfolds into more than 10,000 values" in message
    assert seconds < 1.0 and peak_mb < 300, (seconds, peak_mb)  # it grew to 3.9 GB before


def test_an_alias_bomb_in_a_prices_file_is_refused_too(tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text(BOMB)
    done = run_anytune("prices", env=cli_env(tmp_path, ANYTUNE_PRICES=str(prices)), timeout=60)
    assert done.returncode == 2 and "unfolds into more than" in done.stderr
    assert "Traceback" not in done.stderr


def test_aliases_under_provider_options_cannot_send_megabytes(tmp_path):
    # small enough for the YAML budget, large once unfolded: refused by the options' own size limit
    text = "base_model: tiny\ndata: {train: t.jsonl}\nx: &x [" + ",".join(['"' + "y" * 60 + '"'] * 40) + "]\n"
    text += (
        "provider_options:\n  openai:\n    metadata: {" + ", ".join(f"k{i}: *x" for i in range(40)) + "}\n"
    )
    job = tmp_path / "job.yaml"
    job.write_text(text.replace("x: &x", "tags: &x"))
    with pytest.raises(SpecError) as info:
        load_job_file(job)
    assert any("bytes of provider options" in d for d in info.value.details)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: a\nname: b\nbase_model: tiny\n", "2: key 'name' repeats the one on line 1"),
        ("a: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deep"),
        ("base_model: tiny\ndata: {train: t.jsonl}\nhyperparameters: {epochs: true}\n", "epochs"),
        (
            "base_model: tiny\ndata: {train: 'http://example.com/t.jsonl'}\n",
            "is a URL; anytune reads local files",
        ),
        (
            "base_model: tiny\ndata: {train: t.jsonl}\nname: 2026-13-45\n",
            "3: not valid YAML: month must be in",
        ),
    ],
)
def test_what_yaml_would_accept_silently_is_refused_with_its_line(tmp_path, text, expected):
    job = tmp_path / "job.yaml"
    job.write_text(text)
    with pytest.raises(SpecError) as info:
        load_job_file(job)
    assert expected in " ".join([info.value.message, *info.value.details])


def test_a_negative_learning_rate_multiplier_never_reaches_openai(openai_emu, tmp_path, capsys):
    job = openai_job(tmp_path, provider_options={"openai": {"learning_rate_multiplier": -1}})
    code, output = cli(capsys, "run", str(job))
    assert code == 2 and "learning_rate_multiplier" in output
    assert openai_emu.recorder.exchanges == []


def test_an_unknown_provider_is_a_usage_error(tmp_path, capsys):
    job = job_yaml(tmp_path / "job.yaml", base_model="tiny", data={"train": "t.jsonl"})
    code, output = cli(capsys, "run", str(job), "--provider", "nowhere")
    assert code == 2 and "unknown backend 'nowhere'" in output


# ---------------------------------------------------------------------------------------- 2. secrets


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_a_provider_error_that_echoes_keys_is_masked_on_the_console(
    openai_emu, tmp_path, capsys, monkeypatch, debug
):
    monkeypatch.setenv("WANDB_API_KEY", WANDB)  # an OpenAI job never reads it; it is a secret all the same
    openai_emu.faults.add(
        method="POST",
        path="/v1/fine_tuning/jobs",
        status=400,
        message=f"Invalid request: key {KEY} (wandb {WANDB[:14]}, and {KEY[:12]})",
    )
    code, output = cli(capsys, *(["--debug"] if debug else []), "run", str(openai_job(tmp_path)))
    assert code == 1 and "Invalid request: key ***" in output
    assert ("Traceback (most recent call last)" in output) is debug  # --debug shows the traceback, masked
    for secret in (KEY, KEY[:12], WANDB[:14]):
        assert secret not in output
    stored = json.dumps([j.model_dump(mode="json") for j in Registry().list_jobs(limit=None)])
    assert KEY[:12] not in stored and WANDB[:14] not in stored


# ------------------------------------------------------------------------------------ 3, 4. concurrency


def test_eight_processes_first_touching_a_home_all_succeed(tmp_path):
    env = cli_env(tmp_path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "anytune", "jobs", "list"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    failed = [(i, code, err[-3000:]) for i, (code, err) in enumerate(results) if code != 0]
    assert not failed, failed  # each failing process with its own words (seen once on a loaded CI machine)


def test_six_concurrent_submits_of_one_dataset_make_one_upload_and_six_jobs(openai_emu, tmp_path):
    job = openai_job(tmp_path)
    spec = load_job_file(job)
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def submit(i: int) -> None:
        try:
            start.wait()
            Client().submit(spec.model_copy(update={"name": f"hostile-{i}"}))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert openai_emu.recorder.count("POST", "/v1/files") == 1
    assert len(openai_emu.jobs) == 6


# ------------------------------------------------------------------------------------------ 5. outages


def test_a_burst_of_503s_mid_poll_ends_in_succeeded_with_the_evaluation(openai_emu, tmp_path, capsys):
    openai_emu.faults.add(method="GET", path=r"/v1/fine_tuning/jobs/[^/]+", status=503, times=8)
    code, output = cli(capsys, "run", str(openai_job(tmp_path)))
    assert code == 0, output
    assert "unreachable, still following" in output and "answers again" in output
    assert "token_f1" in output  # the evaluation ran and printed
    [job] = Registry().list_jobs(limit=None)
    assert job.status.value == "succeeded"


# --------------------------------------------------------------------------- 6-10. names, serve, errors


def test_an_unknown_metric_is_refused_before_any_request(openai_emu, tmp_path, capsys):
    job = openai_job(tmp_path, evaluation={"metrics": ["token_f1", "no_such_metric"]})
    code, output = cli(capsys, "run", str(job))
    assert code == 2 and "unknown metric(s): no_such_metric" in output
    assert openai_emu.recorder.exchanges == []
    assert Registry().list_jobs(limit=None) == []


def test_serve_on_a_public_address_needs_a_key_or_insecure(capsys):
    code, output = cli(capsys, "serve", "anything@1", "--host", "0.0.0.0")
    assert code == 2 and "without --api-key" in output and "--insecure" in output


def test_a_plugin_cannot_shadow_a_built_in_backend_or_metric(monkeypatch):
    from anytune.plugin import hookimpl
    from anytune_openai.backend import OpenAIBackend

    class Shadow(OpenAIBackend):
        """Reads OPENAI_API_KEY like the real one; must never be picked by accident."""

    class ShadowPlugin:
        @hookimpl
        def register_backends(self, register):  # type: ignore[no-untyped-def]
            register(Shadow())

        @hookimpl
        def register_metrics(self, register):  # type: ignore[no-untyped-def]
            register("exact_match", lambda p, r: 1.0)

    pm = PluginManager()
    info = pm.register(ShadowPlugin(), name="shadow")
    with pytest.raises(PluginError, match="offered by several plugins"):
        pm.get_backend("openai")
    assert "exact_match" not in pm.metrics()
    assert any("built-in metric" in c for c in info.conflicts)
    monkeypatch.setenv("ANYTUNE_PREFER", "openai=openai")
    chosen = PluginManager()
    chosen.register(ShadowPlugin(), name="shadow")
    assert type(chosen.get_backend("openai")) is OpenAIBackend


def test_report_markdown_escapes_what_the_data_says(tmp_path):
    """Training data and answers with markup: report.md (Markdown renderers pass raw HTML through) shows them
    as text, as report.html does."""
    from anytune.workflows.report import write_report
    from tests.test_client import make_client, spec

    client, _ = make_client()
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Reverse: <script>alert({i})</script> a b"},
                {"role": "assistant", "content": "Reversed: b a"},
            ]
        }
        for i in range(6)
    ]
    data = {
        "train": str(write_jsonl(tmp_path / "train.jsonl", rows)),
        "test": str(write_jsonl(tmp_path / "test.jsonl", rows[:3])),
    }
    job = client.follow(client.submit(spec(data, name="hostile")).id, interval=0)
    client.evaluate(job.id)
    written = write_report(client, [job.id], tmp_path / "report")
    markdown = written.markdown.read_text()
    assert "alert(" in markdown  # the examples are there...
    assert "<script>" not in markdown and "&lt;script&gt;" in markdown  # ...as text
    assert "<script>" not in written.html.read_text()


def test_a_wrong_together_key_is_a_credentials_error_not_a_spec_one(tmp_path, capsys):
    from anytune.testing.running import environment

    # the wrong key inside the emulator's environment, put back in order (a monkeypatch undone after the
    # emulator's block left the right key set for every later test)
    with (
        emulated("together", api_key="tg-the-right-key-0123456789", tick=2.0) as emu,
        environment({"TOGETHER_API_KEY": "tg-a-wrong-key-9876543210"}),
    ):
        job = job_yaml(
            tmp_path / "job.yaml",
            base_model="meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
            provider="together",
            data={"train": str(write_jsonl(tmp_path / "train.jsonl", reversal_rows(6)))},
        )
        code, output = cli(capsys, "run", str(job))
    assert code == 2 and "refused the credentials (401)" in output
    assert "change the spec" not in output and "TOGETHER_API_KEY" in output
    assert emu.recorder.count("POST", "/v1/files") == 0


def test_a_rate_limit_hint_names_only_what_the_provider_sent():
    import httpx
    import openai

    from anytune_openai.errors import classify

    def answer(body: dict) -> openai.RateLimitError:
        response = httpx.Response(
            429, json=body, headers={"retry-after": "600"}, request=httpx.Request("POST", "http://x")
        )
        return openai.RateLimitError("rate limited", response=response, body=body.get("error"))

    plain = classify(answer({"error": {"message": "slow down", "code": "rate_limit_exceeded"}}))
    assert plain.retryable and "insufficient_quota" not in (plain.error.hint or "")
    quota = classify(answer({"error": {"message": "no credit", "code": "insufficient_quota"}}))
    assert not quota.retryable and "insufficient_quota" in (quota.error.hint or "")


# ----------------------------------------------------------------------------------- hostile data files


@pytest.mark.parametrize("special", ["/dev/zero", "/proc/self/mem", "fifo"])
def test_only_regular_files_are_read(tmp_path, capsys, special):
    import os

    path = special
    if special == "fifo":
        path = str(tmp_path / "data.jsonl")
        os.mkfifo(path)  # reading it would block forever
    code, out = cli(capsys, "validate", path)
    assert code == 2 and f"{path}: not a regular file" in out and "internal error" not in out


def test_a_symbolic_link_loop_is_named_where_it_was_an_internal_error(tmp_path, capsys, monkeypatch):
    """Python 3.11 and 3.12 raise RuntimeError resolving a link that points back to itself: a job file,
    `data convert` and the service's data-folder check resolved data paths that way."""
    import os

    from anytune.data.validate import validate_file
    from anytune.errors import UsageError
    from anytune.service.app import check_data_paths

    monkeypatch.chdir(tmp_path)
    os.symlink("loop-b.jsonl", "loop-a.jsonl")
    os.symlink("loop-a.jsonl", "loop-b.jsonl")
    job = job_yaml(
        tmp_path / "job.yaml", name="loop", base_model="gpt-4o-mini", data={"train": "loop-a.jsonl"}
    )
    named = f"{tmp_path / 'loop-a.jsonl'}: a symbolic link to nothing"
    code, out = cli(capsys, "validate", "loop-a.jsonl")
    assert code == 2 and "loop-a.jsonl: a symbolic link to nothing" in out, out
    code, out = cli(capsys, "quote", str(job), "--providers", "openai,together")
    assert "internal error" not in out and named in out, out
    code, out = cli(capsys, "data", "convert", "loop-a.jsonl", "-o", "out.jsonl", "--to", "completion")
    assert code == 2 and "a symbolic link to nothing" in out and not (tmp_path / "out.jsonl").exists(), out
    write_jsonl(tmp_path / "good.jsonl", reversal_rows(3))
    code, out = cli(capsys, "data", "convert", "good.jsonl", "-o", "loop-a.jsonl", "--to", "completion")
    assert code == 0, out  # the link that led nowhere is replaced by the file asked for
    assert not os.path.islink("loop-a.jsonl") and validate_file(tmp_path / "loop-a.jsonl").valid == 3
    os.symlink("loop-d.jsonl", "loop-c.jsonl")
    os.symlink("loop-c.jsonl", "loop-d.jsonl")
    monkeypatch.setenv("ANYTUNE_DATA_ROOT", str(tmp_path / "data"))
    with pytest.raises(UsageError, match="outside the server's data folder"):
        check_data_paths([str(tmp_path / "loop-c.jsonl")])


def test_records_no_parser_takes_are_line_numbered_errors(tmp_path, capsys):
    good = json.dumps(reversal_rows(1)[0])
    lines = [
        good,
        "[" * 100_000 + "]" * 100_000,  # nested past Python's recursion limit
        '{"messages": [{"role": "user", "content": ' + "9" * 5000 + "}]}",  # an integer of 5,000 digits
        '{"messages": [{"role": "user", "content": "\\ud800"}, {"role": "assistant", "content": "x"}]}',
        '{"messages": [{"role": "' + "r" * 5_000_000 + '", "content": "hi"}]}',  # a 5 MB role
        good,
    ]
    path = tmp_path / "hostile.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, out = cli(capsys, "validate", str(path), "--json")
    assert code == 1 and "internal error" not in out  # errors in the file: exit 1, as for any bad line
    report = json.loads(out[out.index("{") :])
    by_line = {i["line"]: i["message"] for i in report["issues"] if i["severity"] == "error"}
    assert set(by_line) == {2, 3, 4, 5}
    assert "nested too deeply" in by_line[2] and "not a number" in by_line[3] and "surrogate" in by_line[4]
    assert len(by_line[5]) < 400 and "characters in all" in by_line[5]  # not the 5 MB value echoed
    assert report["valid"] == 2


def test_a_huge_unknown_key_is_named_in_a_short_line(tmp_path, capsys):
    """The warning names the key (its field), and a 5 MB key was printed whole on one line."""
    row = {**reversal_rows(1)[0], "k" * 5_000_000: 1}
    path = write_jsonl(tmp_path / "bigkey.jsonl", [row])
    code, out = cli(capsys, "validate", str(path))
    assert code == 0 and "unknown key" in out, out[:500]
    assert max(len(line) for line in out.splitlines()) < 400
    assert "5,000,000 characters in all" in out
    code, out = cli(capsys, "validate", str(path), "--json")
    assert len(out) < 5000


def test_a_line_longer_than_the_limit_is_one_error_read_in_bounded_memory(tmp_path, monkeypatch):
    from anytune.data import readers
    from anytune.data.validate import validate_file

    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 1000)
    good = json.dumps(reversal_rows(1)[0])
    path = tmp_path / "long.jsonl"
    path.write_text(good + "\n" + '{"text": "' + "x" * 50_000 + '"}\n' + good + "\n")
    report = validate_file(path)
    [issue] = [i for i in report.issues if i["severity"] == "error"]
    assert issue["line"] == 2 and "longer than" in issue["message"] and report.valid == 2


def test_csv_that_is_not_utf8_and_parquet_with_typed_columns(tmp_path, capsys):
    csv_path = tmp_path / "bad.csv"
    csv_path.write_bytes(b"prompt,completion\nhello,world\n\xff\xfe bad,bytes\nfine,row\n")
    code, out = cli(capsys, "validate", str(csv_path), "--json")
    report = json.loads(out[out.index("{") :])
    assert code == 1 and "internal error" not in out
    assert [(i["line"], i["message"]) for i in report["issues"]] == [(3, "not valid UTF-8")]
    assert report["valid"] == 2

    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "prompt": ["a", "b"],
            "completion": ["c", "d"],
            "when": [datetime.datetime(2026, 1, 1, 12), datetime.datetime(2026, 1, 2, 12)],
            "day": [datetime.date(2026, 1, 1), datetime.date(2026, 1, 2)],
            "blob": [b"text", b"\xff\xfe"],
        }
    )
    pq.write_table(table, tmp_path / "typed.parquet")
    code, out = cli(capsys, "validate", str(tmp_path / "typed.parquet"), "--json")
    assert code == 1 and "internal error" not in out
    report = json.loads(out[out.index("{") :])
    assert [(i["line"], i["message"]) for i in report["issues"] if i["severity"] == "error"] == [
        (2, "a binary value that is not UTF-8 text")
    ]
    assert report["valid"] == 1
