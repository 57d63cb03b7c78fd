"""Stored job specs outlive the code that wrote them. tests/fixtures/registry/v1.db was written by main at
cac6c7c (specs without `spec_version`, version 1): today's code reads every job, model and evaluation in it,
and so would code in which a spec field has been renamed, through one more upgrade step."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field, model_validator

from anytune import spec_upgrades
from anytune.client import Client
from anytune.errors import SpecError
from anytune.jobfile import spec_from_dict
from anytune.spec import SPEC_VERSION, JobSpec
from tests.conftest import anytune_in_process, cli_env, run_anytune

FIXTURE = Path(__file__).parent / "fixtures" / "registry" / "v1.db"
JOB_NAMES = {"reverse-openai", "doomed", "stopped", "crashed", "reverse-together", "reverse-local"}


@pytest.fixture
def old_registry(anytune_home: Path) -> Path:
    """A copy of the fixture as this test's registry (opening it migrates the copy, never the fixture)."""
    anytune_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURE, anytune_home / "registry.db")
    return anytune_home


def stored_specs(home: Path) -> list[dict[str, Any]]:
    import sqlite3

    with sqlite3.connect(home / "registry.db") as db:
        return [json.loads(raw) for (raw,) in db.execute("SELECT spec FROM jobs")]


def test_the_steps_lead_to_the_version_specs_are_written_in():
    assert spec_upgrades.current_version() == SPEC_VERSION
    assert (
        JobSpec.model_validate({"base_model": "m", "data": {"train": "t.jsonl"}}).spec_version == SPEC_VERSION
    )


def test_step_1_to_2_on_the_specs_version_1_wrote(old_registry: Path):
    raw = stored_specs(old_registry)
    assert len(raw) == 7 and all("spec_version" not in r for r in raw)  # as version 1 wrote them
    upgraded = [spec_upgrades.UPGRADES[1](dict(r)) for r in raw]
    assert [spec_upgrades.read_spec(r).model_dump(exclude={"spec_version"}) for r in raw] == [
        JobSpec.model_validate(u).model_dump(exclude={"spec_version"}) for u in upgraded
    ]
    assert {spec_upgrades.read_spec(r).spec_version for r in raw} == {2}


def test_a_spec_from_a_newer_anytune_or_with_a_broken_version_is_refused_clearly():
    newer = {"spec_version": SPEC_VERSION + 1, "base_model": "m", "data": {"train": "t.jsonl"}}
    with pytest.raises(SpecError) as refused:
        spec_from_dict(newer)
    assert f"spec_version {SPEC_VERSION + 1}" in refused.value.message and "upgrade anytune" in str(
        refused.value.hint
    )
    for broken in ("2", 0, True, 1.5):
        with pytest.raises(SpecError, match="not a version number"):
            spec_from_dict({**newer, "spec_version": broken})


def test_todays_cli_reads_the_registry_main_wrote(old_registry: Path, tmp_path: Path):
    env = cli_env(tmp_path, ANYTUNE_HOME=str(old_registry), COLUMNS="80")
    listed = run_anytune("jobs", "list", "--no-refresh", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    jobs = json.loads(listed.stdout)
    assert len(jobs) == 7 and {j["name"] for j in jobs} == JOB_NAMES
    table = run_anytune("jobs", "list", "--no-refresh", env=cli_env(tmp_path, ANYTUNE_HOME=str(old_registry)))
    assert table.returncode == 0 and all(j["id"] in table.stdout for j in jobs)
    local = next(j for j in jobs if j["name"] == "reverse-local")
    shown = run_anytune("jobs", "show", local["id"], env=env)
    assert shown.returncode == 0 and "succeeded" in shown.stdout and "reverse-local@1" in shown.stdout
    model = run_anytune("models", "show", "reverse-openai@production", env=env)
    assert model.returncode == 0 and "reverse-openai@1" in model.stdout and "exact_match" in model.stdout
    report = run_anytune("report", "reverse-openai@1", "--out", str(tmp_path / "report"), env=env)
    assert report.returncode == 0, report.stderr
    assert "exact_match" in (tmp_path / "report" / "report.md").read_text()


class SpecV3(JobSpec):
    """JobSpec as it would be if version 3 renamed `tags` to `labels` (a test-only version)."""

    spec_version: int = Field(3, ge=1, le=3)
    labels: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _no_tags(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and "tags" in raw:
            raise ValueError("tags: renamed to labels in spec_version 3")
        return raw


def _tags_to_labels(raw: dict[str, Any]) -> dict[str, Any]:
    raw = dict(raw)
    raw["labels"] = raw.pop("tags", [])
    return raw


def test_the_registry_main_wrote_is_read_after_a_field_is_renamed(
    old_registry: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setitem(spec_upgrades.UPGRADES, 2, _tags_to_labels)
    monkeypatch.setattr(spec_upgrades, "JobSpec", SpecV3)
    with pytest.raises(ValueError, match="renamed to labels"):  # the renamed field is gone from version 3
        SpecV3.model_validate({"base_model": "m", "data": {"train": "t.jsonl"}, "tags": ["x"]})

    code, out = anytune_in_process(capsys, "jobs", "list", "--no-refresh", "--json")
    assert code == 0, out
    jobs = json.loads(out)
    assert {j["name"] for j in jobs} == JOB_NAMES
    first = next(
        j
        for j in jobs
        if j["name"] == "reverse-openai"
        and j["id"] == min(x["id"] for x in jobs if x["name"] == "reverse-openai")
    )
    code, out = anytune_in_process(capsys, "jobs", "show", first["id"])
    assert code == 0 and "reverse-openai@1" in out, out
    spec = Client().get_job(first["id"]).spec  # as version 3's JobSpec, the old value under its new name
    assert isinstance(spec, SpecV3) and spec.spec_version == 3 and spec.labels == ["fixture", "openai"]
    code, out = anytune_in_process(capsys, "models", "show", "reverse-openai@production", "--json")
    assert code == 0 and json.loads(out)["spec"]["labels"] == ["fixture", "openai"]
    code, out = anytune_in_process(capsys, "report", "reverse-openai@1", "--out", str(old_registry / "r"))
    assert code == 0, out
    assert (old_registry / "r" / "report.html").exists()
