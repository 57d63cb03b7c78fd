from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from anytune.errors import InvalidTransitionError, NotFoundError, UsageError
from anytune.jobs import Cost, Event, EventKind, JobStatus, ModelArtifact
from anytune.registry import Registry
from anytune.registry.db import HEAD_REVISION, MIGRATIONS, current_revision, upgrade
from anytune.registry.tables import metadata
from anytune.spec import JobSpec


def spec(**extra) -> JobSpec:
    return JobSpec.model_validate({"base_model": "tiny", "data": {"train": "t.jsonl"}, **extra})


def artifact(path: str = "/models/a") -> ModelArtifact:
    return ModelArtifact(provider="local", model_id=path, kind="adapter", base_model="tiny", path=path)


def test_default_database_is_sqlite_under_anytune_home(anytune_home: Path):
    reg = Registry()
    assert reg.url == f"sqlite:///{anytune_home / 'registry.db'}"
    assert (anytune_home / "registry.db").exists()
    assert current_revision(reg.engine) == HEAD_REVISION


def test_database_url_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    url = f"sqlite:///{tmp_path / 'elsewhere' / 'reg.db'}"
    monkeypatch.setenv("ANYTUNE_DATABASE_URL", url)
    assert Registry().url == url
    assert (tmp_path / "elsewhere" / "reg.db").exists()


def test_head_revision_constant_matches_alembic():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION


def test_migrations_build_exactly_the_orm_schema(tmp_path: Path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diffs == []
    names = set(inspect(engine).get_table_names())
    assert {"jobs", "events", "datasets", "models", "model_aliases", "evaluations"} <= names


def test_eight_threads_opening_one_fresh_registry_all_get_it_in_wal_mode(tmp_path: Path):
    """Six submits started together once failed with "database is locked": SQLite may refuse a journal
    mode change at once, without the busy timeout, while others open the same new file. Before the fix
    this loop failed in two runs of three."""
    import threading

    from sqlalchemy import text

    from anytune.registry.db import open_engine

    failures: list[str] = []

    def open_it(url: str, start: threading.Barrier) -> None:
        try:
            start.wait()
            with open_engine(url).connect() as conn:
                mode = conn.execute(text("PRAGMA journal_mode")).scalar()
                assert mode == "wal", mode
                assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except Exception as exc:
            failures.append(f"{url}: {exc}")

    for round_ in range(120):
        url, start = f"sqlite:///{tmp_path / f'r{round_}.db'}", threading.Barrier(8)
        threads = [threading.Thread(target=open_it, args=(url, start)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert failures == []


def test_jobs_are_created_pending_and_found_by_prefix():
    reg = Registry()
    job = reg.create_job(spec(name="one"), cost=Cost(quoted=1.5))
    assert job.status is JobStatus.PENDING and job.name == "one"
    again = reg.get_job(job.id[:14])
    assert again.id == job.id and again.cost.quoted == 1.5
    assert again.spec == job.spec
    with pytest.raises(NotFoundError):
        reg.get_job("job-nope")


def test_ambiguous_prefix_is_a_usage_error():
    reg = Registry()
    reg.create_job(spec(), job_id="job-abc1")
    reg.create_job(spec(), job_id="job-abc2")
    with pytest.raises(UsageError, match="ambiguous"):
        reg.get_job("job-abc")


def test_status_updates_follow_the_machine_and_stamp_times():
    reg = Registry()
    job = reg.create_job(spec())
    running = reg.update_job(job.id, status=JobStatus.RUNNING, provider_status="training")
    assert running.started_at is not None and running.finished_at is None
    done = reg.update_job(job.id, status=JobStatus.SUCCEEDED, artifact=artifact())
    assert done.finished_at is not None and done.artifact.model_id == "/models/a"
    with pytest.raises(InvalidTransitionError):
        reg.update_job(job.id, status=JobStatus.RUNNING, provider_status="oops")
    assert reg.get_job(job.id).provider_status == "training"  # the refused update changed nothing


def test_events_are_numbered_in_order_and_filtered():
    reg = Registry()
    job = reg.create_job(spec())
    reg.add_events(job.id, [Event(message="a"), Event(kind=EventKind.METRIC, data={"loss": 1.0})])
    reg.add_events(job.id, [Event(message="c")])
    events = reg.events(job.id)
    assert [e.seq for e in events] == [1, 2, 3]
    assert [e.message for e in reg.events(job.id, after=2)] == ["c"]
    assert reg.events(job.id, kind="metric")[0].data == {"loss": 1.0}


def test_list_jobs_filters_and_orders_newest_first():
    reg = Registry()
    a = reg.create_job(spec(name="a"))
    b = reg.create_job(spec(name="b", provider="other"))
    reg.update_job(a.id, status=JobStatus.FAILED)
    assert [j.name for j in reg.list_jobs()] == ["b", "a"]
    assert [j.id for j in reg.list_jobs(provider="other")] == [b.id]
    assert [j.id for j in reg.list_jobs(active=True)] == [b.id]
    assert [j.id for j in reg.list_jobs(status="failed")] == [a.id]


def test_model_versions_are_immutable_and_numbered():
    reg = Registry()
    v1 = reg.register_model("m", artifact("/a"), metrics={"loss": 1.0})
    v2 = reg.register_model("m", artifact("/b"))
    assert (v1.version, v2.version) == (1, 2)
    assert reg.get_model("m@1").model_id == "/a"  # registering again made a new version, v1 is untouched
    assert reg.get_model("m").version == 2
    assert reg.get_model("m@latest").version == 2
    with pytest.raises(NotFoundError):
        reg.get_model("m@3")


def test_aliases_move_between_versions():
    reg = Registry()
    reg.register_model("m", artifact("/a"))
    reg.register_model("m", artifact("/b"))
    reg.set_alias("m", "production", 1)
    assert reg.get_model("m@production").version == 1
    reg.set_alias("m", "production", 2)
    assert reg.get_model("m@production").version == 2
    assert reg.get_model("m@2").aliases == ["production"]
    assert reg.get_model("m@1").aliases == []
    with pytest.raises(UsageError):
        reg.set_alias("m", "7", 1)
    with pytest.raises(NotFoundError):
        reg.set_alias("m", "production", 9)
    reg.remove_alias("m", "production")
    with pytest.raises(NotFoundError):
        reg.get_model("m@production")


def test_alias_set_in_one_process_is_seen_by_another(anytune_home: Path):
    reg = Registry()
    reg.register_model("m", artifact("/a"))
    reg.register_model("m", artifact("/b"))
    code = "from anytune.registry import Registry; Registry().set_alias('m', 'production', 1)"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert reg.get_model("m@production").version == 1


def test_datasets_and_evaluations_are_recorded():
    reg = Registry()
    job = reg.create_job(spec())
    reg.record_dataset(fingerprint="sha256:x", format="chat", rows=3, path="/d.jsonl", tokens=9)
    reg.record_dataset(fingerprint="sha256:x", format="chat", rows=3, path="/moved.jsonl")
    assert reg.get_dataset("sha256:x").path == "/moved.jsonl"
    ev = reg.add_evaluation(
        subject="base",
        provider="local",
        model_id="tiny",
        dataset_path="/t.jsonl",
        dataset_fingerprint="sha256:y",
        metrics={"exact_match": 0.5},
        n=2,
        job_id=job.id,
    )
    assert reg.evaluations(job_id=job.id)[0].id == ev.id


def test_record_poll_stores_a_poll_once_and_register_result_registers_one_model():
    reg = Registry()
    job = reg.create_job(spec(name="m"))
    ok = reg.record_poll(
        job.id,
        cursor_before=None,
        cursor_after="1",
        events=[Event(message="a")],
        status=JobStatus.RUNNING,
        provider_status="training",
    )
    # a second process polled from the same cursor and found the same event: dropped
    dup = Registry().record_poll(job.id, cursor_before=None, cursor_after="1", events=[Event(message="a")])
    assert ok is not None and dup is None
    assert [e.message for e in reg.events(job.id)] == ["a"]
    done, _ = reg.record_poll(
        job.id,
        cursor_before="1",
        cursor_after="2",
        events=[],
        status=JobStatus.SUCCEEDED,
        artifact=artifact("/a"),
        metrics={"loss": 0.5},
    )
    again, _ = reg.record_poll(
        job.id, cursor_before="2", cursor_after="2", events=[], artifact=artifact("/b")
    )
    assert done.status is JobStatus.SUCCEEDED and again.artifact.model_id == "/a"
    assert reg.models_for_job(job.id) == []  # registering is a stage of its own
    first = reg.register_result(job.id, "m")
    assert Registry().register_result(job.id, "m") == first  # asked again (another process): the same one
    [model] = reg.models_for_job(job.id)
    assert model.ref == "m@1" and model.model_id == "/a" and model.metrics == {"loss": 0.5}
    assert model.spec["name"] == "m"


def test_a_refused_poll_changes_nothing():
    reg = Registry()
    job = reg.create_job(spec())
    reg.update_job(job.id, status=JobStatus.SUCCEEDED)
    with pytest.raises(InvalidTransitionError):
        reg.record_poll(
            job.id,
            cursor_before=None,
            cursor_after="9",
            events=[Event(message="x")],
            status=JobStatus.RUNNING,
        )
    after = reg.get_job(job.id)
    assert after.event_cursor is None and reg.events(job.id) == []
