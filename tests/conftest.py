"""Shared fixtures. Every test gets its own ANYTUNE_HOME (so its own registry); the tiny model is built
once per session and passed to jobs as a local folder, so building it is not repeated."""

from __future__ import annotations

import json
import os
import random
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from anytune.testing.running import emulated

try:  # hypothesis keeps caches (and examples) in .hypothesis/; tests write nothing into the working tree
    from hypothesis import settings as _hypothesis
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(tempfile.mkdtemp(prefix="anytune-hypothesis-"))
    # The suite is deterministic: property tests draw the same examples on every run ("ci", the default), so
    # a new example found on a random day never turns CI red at random. To search further, run them with
    # random examples, 20 times as many (docs/testing.md):
    #     ANYTUNE_HYPOTHESIS=thorough .venv/bin/python -m pytest tests/test_data_properties.py ...
    _hypothesis.register_profile("ci", derandomize=True, database=None, print_blob=True)
    _hypothesis.register_profile("thorough", derandomize=False, database=None, print_blob=True)
    _hypothesis.load_profile(os.environ.get("ANYTUNE_HYPOTHESIS", "ci"))
except ImportError:
    pass


def examples(n: int) -> int:
    """A property test's number of examples: `n` in CI, 20x with ANYTUNE_HYPOTHESIS=thorough (or
    ANYTUNE_HYPOTHESIS_SCALE)."""
    default = "20" if os.environ.get("ANYTUNE_HYPOTHESIS") == "thorough" else "1"
    return n * int(os.environ.get("ANYTUNE_HYPOTHESIS_SCALE") or default)


if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ:
    # Each of README's two workers trains with one thread (and so do the processes it starts): the tiny
    # models train no faster on two (measured: 22.6 s on one, 22.3 s on two), and two workers of two
    # threads each would fight over two cores.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
os.environ["HF_HUB_OFFLINE"] = "1"  # never wait on DNS for the hub: tests are offline by rule
os.environ.pop("ANYTUNE_DATABASE_URL", None)


@pytest.fixture(autouse=True)
def _environment_as_it_was() -> Iterator[None]:
    """Every test ends with the environment it began with. Set up first, so torn down last: an emulator's
    variables undone by its block and then set back by a monkeypatch recorded inside it (the emulator's key,
    its URL) leaked into every later test (found: TOGETHER_API_KEY, OPENAI_API_KEY, AZURE_OPENAI_*)."""
    before = dict(os.environ)
    yield
    if dict(os.environ) != before:
        os.environ.clear()
        os.environ.update(before)


@pytest.fixture(autouse=True)
def anytune_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "anytune-home"
    monkeypatch.setenv("ANYTUNE_HOME", str(home))
    monkeypatch.delenv("ANYTUNE_DATABASE_URL", raising=False)
    from anytune import plugins

    plugins.reset_plugin_manager()
    return home


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama folder built offline (tokenizer trained on the spot, random weights)."""
    from anytune_local.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def write_jsonl(path: Path, rows: Iterable[Any], newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row)) + newline)
    return path


def reversal_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        word = "".join(rng.choice("abcdefgh") for _ in range(rng.randint(3, 5)))
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": "Reverse: " + " ".join(word)},
                    {"role": "assistant", "content": "Reversed: " + " ".join(reversed(word))},
                ]
            }
        )
    return rows


def job_yaml(path: Path, **fields: Any) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(fields, sort_keys=False))
    return path


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for an `anytune` subprocess: its own home, a wide console, brisk polling."""
    defaults = {"ANYTUNE_HOME": str(tmp_path / "home"), "COLUMNS": "200", "ANYTUNE_POLL_INTERVAL": "0.3"}
    return {**os.environ, **defaults, **extra}


def run_anytune(*args: str, env: dict[str, str], timeout: float = 300, check: bool = False):  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "anytune", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


@contextmanager
def emulator_cli(provider: str, env: dict[str, str], port: int, speed: float = 40) -> Iterator[None]:
    """`anytune emulate PROVIDER` in a subprocess, for as long as the block runs."""
    import subprocess
    import sys
    import time

    server = subprocess.Popen(
        [sys.executable, "-m", "anytune", "emulate", provider, "--port", str(port), "--speed", str(speed)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first = server.stdout.readline() if server.stdout else ""
        assert "emulator on" in first, first
        time.sleep(0.3)
        yield
    finally:
        server.terminate()
        server.wait(timeout=10)


def chat_splits(folder: Path, seed: int, *, validation: bool = False) -> dict[str, str]:
    """A job's data: 30 training and 10 held-out reversal examples (the held-out ones double as validation)."""
    rows = reversal_rows(40, seed=seed)
    data = {
        "train": str(write_jsonl(folder / "train.jsonl", rows[:30])),
        "test": str(write_jsonl(folder / "test.jsonl", rows[30:])),
    }
    if validation:
        data["validation"] = str(write_jsonl(folder / "val.jsonl", rows[30:]))
    return data


def preference_rows(n: int = 12) -> list[dict[str, str]]:
    return [
        {
            "prompt": f"Say something kind about {i}",
            "chosen": f"{i} is wonderful.",
            "rejected": f"{i} is bad.",
        }
        for i in range(n)
    ]


def anytune_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """`anytune ARGS` in this process (so an in-process emulator's request log sees it): exit code and
    everything printed."""
    from anytune.cli import main

    with pytest.raises(SystemExit) as done:
        main(list(args))
    captured = capsys.readouterr()
    return int(done.value.code or 0), captured.out + captured.err


def _dated_emulator(name: str, monkeypatch: pytest.MonkeyPatch, key: str) -> Iterator[Any]:
    """An OpenAI-family emulator as of 2026-11-28 (before OpenAI's cutoff), polled without pause."""
    monkeypatch.setenv("ANYTUNE_TODAY", "2026-11-28")
    monkeypatch.setenv("ANYTUNE_POLL_INTERVAL", "0")
    with emulated(name, api_key=key, tick=3.0) as emu:
        yield emu


OPENAI_TEST_KEY = "sk-emulator-rules-0123456789abcdefghij"
# no 12-character run in common with the OpenAI key: a run that long of a key is masked as that key, so a
# Together test run first would mask the OpenAI key's tail where a test expects the whole key masked
TOGETHER_TEST_KEY = "tg-together-klmnopqrstuvwxyz9876543210"


@pytest.fixture
def openai_emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The OpenAI plugin's emulator, as of 2026-11-28 (before the fine-tuning cutoff), polled without pause."""
    yield from _dated_emulator("openai", monkeypatch, OPENAI_TEST_KEY)


@pytest.fixture
def together_emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with emulated("together", api_key=TOGETHER_TEST_KEY, tick=2.0) as emu:
        yield emu


AZURE_TEST_KEY = "az-emulator-test-0123456789abcdef"


@pytest.fixture
def azure_emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The OpenAI plugin's Azure OpenAI emulator, dated like `openai_emu`."""
    yield from _dated_emulator("azure-openai", monkeypatch, AZURE_TEST_KEY)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throwaway schema in the `test` database of the PostgreSQL that .ci/run provides (or the machine's on
    5432): its SQLAlchemy URL. Skipped where none answers, unless .ci/run said one is there."""
    psycopg = pytest.importorskip("psycopg")
    provided = os.environ.get("ANYTUNE_TEST_PG_PORT")
    port = provided or "5432"
    try:
        admin = psycopg.connect(
            f"host=127.0.0.1 port={port} dbname=test user=postgres", autocommit=True, connect_timeout=3
        )
    except psycopg.OperationalError:
        if provided:
            raise
        pytest.skip("no PostgreSQL answers on 127.0.0.1:5432")
    schema = f"anytune_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/test?options=-csearch_path%3D{schema}"
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()
