"""`anytune plugins new`: the package it writes installs, registers through its entry point, and its
conformance run fails naming what is still to write, without a traceback from anytune."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import anytune_in_process, cli_env, run_anytune


def test_a_new_plugin_installs_and_its_conformance_run_names_what_is_missing(tmp_path, capsys):
    code, output = anytune_in_process(capsys, "plugins", "new", "acme", "--dir", str(tmp_path / "acme"))
    assert code == 0, output
    assert "pip install -e '.[test]'" in output
    package = tmp_path / "acme"
    assert (package / "anytune_acme" / "backend.py").is_file()
    site = tmp_path / "site"  # installed beside anytune, not into the test run's own environment
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(package)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = cli_env(tmp_path, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    listed = json.loads(run_anytune("plugins", "list", "--json", env=env, check=True).stdout)
    acme = next(p for p in listed if p["name"] == "acme")
    assert acme["ok"] and acme["backends"] == ["acme"] and acme["emulators"] == ["acme"]

    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 1, report
    assert "AcmeBackend.quote() is not written yet: price the job with token_priced()" in report
    assert "the emulator AcmeEmulator declares no statuses" in report
    assert "the emulator AcmeEmulator does not say which request creates a job" in report
    assert "Traceback" not in report and "anytune/testing/conformance.py" not in report
    assert "passed" in report  # what the core guarantees by itself already holds (refusals)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["Acme Cloud"], "is not a plugin name anytune can use"),
        (["acme", "--dir", "{full}"], "exists and is not empty"),
    ],
)
def test_plugins_new_refuses_clearly(tmp_path: Path, capsys, args, said):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    args = [a.format(full=tmp_path / "full") for a in args]
    code, output = anytune_in_process(capsys, "plugins", "new", *args)
    assert code == 2 and said in output and "Traceback" not in output
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
