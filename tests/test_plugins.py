"""Plugins load through the `anytune` entry-point group; a broken one is reported, never fatal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from anytune.errors import PluginError
from anytune.plugins import PluginManager
from tests.conftest import reversal_rows, write_jsonl

THIRD_PARTY = """
from anytune.hookspecs import Backend, hookimpl

class EchoBackend(Backend):
    name = "echo"
    def capabilities(self): raise NotImplementedError
    def quote(self, spec, data): raise NotImplementedError
    def submit(self, request): raise NotImplementedError
    def poll(self, ref, cursor=None): raise NotImplementedError
    def cancel(self, ref): raise NotImplementedError
    def result(self, ref): raise NotImplementedError
    def generate(self, model, prompts, params): return [p[-1]["content"] for p in prompts]

@hookimpl
def register_backends(register):
    register(EchoBackend())

@hookimpl
def register_metrics(register):
    register("length_match", lambda p, r: float(len(p) == len(r)))
"""


def install_plugins(site: Path) -> Path:
    """Install three plugins the way pip would: modules plus a dist-info with entry points."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "thirdparty_anytune_plugin.py").write_text(THIRD_PARTY)
    (site / "broken_anytune_plugin.py").write_text("import a_module_that_does_not_exist\n")
    (site / "raising_anytune_plugin.py").write_text(
        "from anytune.hookspecs import hookimpl\n"
        "@hookimpl\n"
        "def register_backends(register):\n"
        "    raise RuntimeError('misconfigured: set FOO_API_KEY')\n"
    )
    info = site / "anytune_test_plugins-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: anytune-test-plugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[anytune]\n"
        "echo = thirdparty_anytune_plugin\n"
        "broken = broken_anytune_plugin\n"
        "raising = raising_anytune_plugin\n"
    )
    return site


def test_builtin_local_backend_loads_through_its_entry_point():
    pm = PluginManager()
    local = next(p for p in pm.plugins() if p.name == "local")
    assert local.ok and local.backends == ["local"]
    assert local.module == "anytune_local.plugin" and local.distribution == "anytune"
    assert type(pm.get_backend("local")).__name__ == "LocalBackend"


def test_broken_plugins_are_reported_and_the_rest_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(install_plugins(tmp_path / "site")))
    pm = PluginManager()
    infos = {p.name: p for p in pm.plugins()}
    assert infos["local"].ok and infos["echo"].ok
    assert infos["echo"].backends == ["echo"] and infos["echo"].metrics == ["length_match"]
    assert "a_module_that_does_not_exist" in infos["broken"].error
    assert "misconfigured: set FOO_API_KEY" in infos["raising"].error
    names = pm.backend_names()
    assert {"azure-openai", "echo", "local", "openai", "together"} <= set(names) and names == sorted(names)
    assert "broken" not in names and "raising" not in names  # the third-party fireworks plugin may be there
    assert "length_match" in pm.metrics()
    with pytest.raises(PluginError, match="failed to load") as info:
        pm.get_backend("broken")
    assert "a_module_that_does_not_exist" in str(info.value)


def test_unknown_backend_suggests_a_close_name():
    with pytest.raises(PluginError, match="did you mean 'local'"):
        PluginManager().get_backend("locl")


def test_duplicate_backend_name_is_refused():
    class Dup:
        from anytune.hookspecs import hookimpl

        @hookimpl
        def register_backends(self, register):
            from anytune_local.backend import LocalBackend

            register(LocalBackend())

    pm = PluginManager()
    info = pm.register(Dup(), name="dup")
    # neither the built-in nor the newcomer silently wins: both are told, and the name serves nobody
    assert any("backend 'local' is also offered by local" in c for c in info.conflicts)
    assert any(
        "also offered by dup" in c for c in next(p for p in pm.plugins() if p.name == "local").conflicts
    )
    with pytest.raises(PluginError, match="offered by several plugins"):
        pm.get_backend("local")


def test_cli_lists_broken_plugins_and_keeps_working(tmp_path: Path):
    site = install_plugins(tmp_path / "site")
    env = dict(os.environ, PYTHONPATH=str(site), COLUMNS="200")
    listing = subprocess.run(
        [sys.executable, "-m", "anytune", "plugins", "list"], env=env, capture_output=True, text=True
    )
    assert listing.returncode == 0, listing.stderr
    lines = {line.split("│")[1].strip(): line for line in listing.stdout.splitlines() if line.count("│") > 3}
    assert "loaded" in lines["local"] and "loaded" in lines["echo"]
    assert "error" in lines["broken"]
    assert "broken: failed to import broken_anytune_plugin" in listing.stdout
    assert "a_module_that_does_not_exist" in listing.stdout
    assert "error" in lines["raising"] and "misconfigured" in listing.stdout
    data = write_jsonl(tmp_path / "d.jsonl", reversal_rows(3))
    check = subprocess.run(
        [sys.executable, "-m", "anytune", "validate", str(data)], env=env, capture_output=True, text=True
    )
    assert check.returncode == 0 and "3 valid chat records" in check.stdout
