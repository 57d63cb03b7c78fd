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
        (["a" * 300], "is not a plugin name anytune can use"),
        (["acme", "--dir", "{full}"], "exists and is not empty"),
        (["acme", "--dir", "{file}"], "exists and is not a folder"),
        (["acme", "--dir", "/dev/null"], "exists and is not a folder"),
        (["acme", "--dir", "/proc/x"], "cannot write the package to /proc/x"),
        (["acme", "--dir", "{dangling}"], "is a symbolic link to nothing"),
        (["acme", "--dir", "d" * 5000], "File name too long"),
        (["acme", "--dir", "d/" * 2500], "File name too long"),
        # the built-in plugin's module (anytune_openai) and a name another plugin serves
        (["openai"], "'openai' is taken"),
        (["azure-openai"], "'azure-openai' is taken"),
        (["acme", "--label", 'Acme "Cloud"'], "a label may hold"),
        (["acme", "--label", "Acme\\Cloud"], "a label may hold"),
        (["acme", "--label", 'x"""y'], "a label may hold"),
        (["acme", "--label", 'a: "b'], "a label may hold"),
        (["acme", "--label", "x" * 81], "a label may hold"),
    ],
)
def test_plugins_new_refuses_clearly(tmp_path: Path, capsys, monkeypatch, args, said):
    """Each was an internal error, or wrote a package that does not parse, or one that shadows a plugin."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    (tmp_path / "file").write_text("mine")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    args = [
        a.format(full=tmp_path / "full", file=tmp_path / "file", dangling=tmp_path / "dangling") for a in args
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, output = anytune_in_process(capsys, "plugins", "new", *args)
    assert code == 2 and said in " ".join(output.split()) and "internal error" not in output, output
    assert max(len(line) for line in output.splitlines()) < 400
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine" and (
        tmp_path / "file"
    ).read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_every_label_it_takes_writes_files_that_parse(tmp_path: Path):
    """The label is written into Python, TOML, YAML and Markdown as it is."""
    import ast
    import tomllib

    import yaml

    from anytune.scaffold import new_plugin

    for i, label in enumerate(["O'Reilly (EU)", "Ünïcode AI", "A & B, Inc.", "x+y/z - 2"]):
        made = new_plugin("acme", tmp_path / str(i), label)
        for path in made.files:
            text = path.read_text()
            if path.suffix == ".py":
                ast.parse(text, str(path))
            elif path.suffix == ".toml":
                assert label in tomllib.loads(text)["project"]["description"]
            elif path.suffix == ".yaml":
                yaml.safe_load(text)


def test_a_write_that_fails_half_way_leaves_nothing(tmp_path: Path, monkeypatch):
    from anytune import scaffold

    real = Path.write_text
    calls = []

    def failing(self, *args, **kwargs):  # the disk fills on the fourth file
        calls.append(self)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", failing)
    with pytest.raises(scaffold.UsageError, match="No space left on device"):
        scaffold.new_plugin("acme", tmp_path / "acme")
    assert not (tmp_path / "acme").exists()
