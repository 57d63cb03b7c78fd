"""Projects keep teams apart on one server: each token sees and acts in its own project only, and another
project's objects answer 404 (not 403: a name does not leak). The walk over the OpenAPI document tries every
route with a second project's token and the first project's ids, so a route added later cannot forget it.
Spend and concurrency caps refuse the job that would cross them before anything reaches the provider."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from anytune.client import Client
from anytune.registry.access import create_token
from anytune.registry.projects import create_project, get_project, set_caps
from tests.conftest import chat_splits

pytest.importorskip("fastapi")


@dataclass
class Team:
    name: str
    headers: dict[str, str]


@dataclass
class World:
    http: Any
    client: Client
    alpha: Team
    beta: Team
    ids: dict[str, str]  # alpha's objects, by the path parameter that names them
    refs: dict[str, str]  # alpha's datasets, by split


def team(client: Client, name: str, **caps: Any) -> Team:
    create_project(client.registry.everywhere(), name, **caps)
    token, info = create_token(client.registry.in_project(name), f"{name} lead", "admin")
    assert info.project == name
    return Team(name, {"Authorization": f"Bearer {token}"})


def spec_body(data: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "name": "alpha-bot",
        "base_model": "gpt-4o-mini",
        "provider": "openai",
        "data": data,
        "hyperparameters": {"epochs": 1},
        **extra,
    }


@pytest.fixture
def world(openai_emu: Any, tmp_path: Path) -> Iterator[World]:
    """Two projects; alpha has one of everything (a dataset, a job that succeeded, a model version with an
    alias, an evaluation, a webhook, an upload half way); beta has nothing."""
    from fastapi.testclient import TestClient

    from anytune.service.app import create_app

    client = Client()
    alpha, beta = team(client, "alpha"), team(client, "beta")
    with TestClient(create_app(client)) as http:
        files = chat_splits(tmp_path / "data", seed=3)
        refs = {}
        for split, path in files.items():
            up = http.post(
                f"/v1/datasets?name={split}.jsonl", content=Path(path).read_bytes(), headers=alpha.headers
            )
            assert up.status_code == 201, up.text
            refs[split] = up.json()["ref"]
        made = http.post("/v1/jobs", json=spec_body(refs), headers=alpha.headers)
        assert made.status_code == 201, made.text
        job = client.in_project("alpha").follow(made.json()["id"])
        assert job.status.value == "succeeded", job.error
        [model] = client.in_project("alpha").models_for_job(job.id)
        promoted = http.put(
            f"/v1/models/{model.name}/aliases/production", json={"version": 1}, headers=alpha.headers
        )
        assert promoted.status_code == 200, promoted.text
        scored = http.post("/v1/evaluations", json={"targets": [job.id], "limit": 2}, headers=alpha.headers)
        assert scored.status_code == 201, scored.text
        hook = http.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h"}, headers=alpha.headers)
        upload = http.post(
            "/v1/datasets/uploads", json={"name": "big.jsonl", "length": 10}, headers=alpha.headers
        )
        ids = {
            "job_id": job.id,
            "ref": f"{model.name}@production",
            "name": model.name,
            "alias": "production",
            "dataset": refs["train"].removeprefix("dataset:"),
            "upload_id": upload.json()["id"],
            "webhook_id": hook.json()["id"],
        }
        yield World(http, client, alpha, beta, ids, refs)


# what each route that names no object in its path is sent to reach alpha's objects (a query or a body)
def reaching(world: World, method: str, path: str) -> dict[str, Any] | None:
    ids, ref = world.ids, f"dataset:sha256:{world.ids['dataset'].removeprefix('sha256:')}"
    return {
        ("post", "/v1/jobs"): {"json": spec_body({"train": ref})},
        ("get", "/v1/jobs"): {"params": {"cursor": ids["job_id"]}},  # refused as any unknown cursor is
        ("post", "/v1/quotes"): {"json": spec_body({"train": ref})},
        ("post", "/v1/data/validate"): {"json": {"path": ref}},
        ("post", "/v1/evaluations"): {"json": {"targets": [ids["job_id"]]}},
        ("get", "/v1/reports"): {"params": {"target": ids["job_id"]}},
        ("get", "/v1/models"): {"params": {"job_id": ids["job_id"]}},
    }.get((method, path))


# routes that name nothing of a project's (their answers are the same for every token)
SHARED = {
    ("get", "/v1/health/live"),
    ("get", "/v1/health/ready"),
    ("get", "/v1/plugins"),
    ("get", "/v1/prices"),
}
# routes that list a project's objects: beta's answer holds none of alpha's
LISTS = {
    ("get", "/v1/datasets"),
    ("get", "/v1/evaluations"),
    ("get", "/v1/webhooks"),
    ("get", "/metrics"),
}
# routes that make a new object of the caller's own project from what the body brings (no id of anyone's)
MAKERS = {("post", "/v1/datasets"), ("post", "/v1/datasets/uploads"), ("post", "/v1/webhooks")}


# valid bodies of the routes that name the object in their path (so that only the object is wrong)
BODIES = {
    ("put", "/v1/models/{name}/aliases/{alias}"): {"version": 1},
    ("post", "/v1/jobs/{job_id}/migrate"): {"to": "together"},
    ("post", "/v1/jobs/{job_id}/continue"): {},
}


def sending(kwargs: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """A request's extras with the token's headers added (a fresh dict: a request is sent twice)."""
    return {**kwargs, "headers": {**headers, **kwargs.get("headers", {})}}


def routes(world: World) -> list[tuple[str, str]]:
    document = world.http.get("/openapi.json").json()
    return [(m, p) for p, ops in document["paths"].items() for m in ops]


def test_every_route_answers_404_to_another_projects_ids(world: World):
    """Each route of the OpenAPI document is tried with beta's token and alpha's ids (in the path, the query
    or the body): 404 wherever an id of alpha's is named; lists show none of alpha's objects. A route this
    test does not know fails it, so a new route has to say how it keeps projects apart."""
    http, beta, ids = world.http, world.beta, world.ids
    secrets_of_alpha = [ids["job_id"], ids["dataset"], ids["upload_id"], ids["webhook_id"], ids["name"]]
    tried = []
    for method, path in routes(world):
        if (method, path) in SHARED | MAKERS:
            continue
        url = path.format(**ids)
        extra = reaching(world, method, path)
        if "{" not in path and extra is None and (method, path) not in LISTS:
            pytest.fail(f"{method.upper()} {path}: the projects walk does not know this route; add it")
        if (method, path) in LISTS:
            answer = http.request(method.upper(), url, headers=beta.headers)
            assert answer.status_code == 200, (method, path, answer.text)
            assert not any(s in answer.text for s in secrets_of_alpha), (method, path, answer.text)
            if path == "/metrics":  # beta has no jobs: no job counts at all
                assert "anytune_jobs{" not in answer.text
            tried.append((method, path))
            continue
        body = BODIES.get((method, path))
        kwargs = extra or ({"json": body} if body is not None else {})
        if method == "patch":
            kwargs = {"content": b"x", "headers": {"Upload-Offset": "0"}}
        answer = http.request(method.upper(), url, **sending(kwargs, beta.headers))
        expected = 400 if path == "/v1/jobs" and method == "get" else 404
        assert answer.status_code == expected, (method, path, answer.status_code, answer.text)
        # and it says no more than it says of an id that exists nowhere
        if "{" in path:
            made_up = http.request(
                method.upper(),
                path.format(**{k: f"{v[:-4]}0000" for k, v in ids.items()}),
                **sending(kwargs, beta.headers),
            )
            assert made_up.status_code == answer.status_code, (method, path, made_up.text)
            if method != "head":  # (a HEAD answer has no body)
                assert made_up.json()["error"]["type"] == answer.json()["error"]["type"]
        tried.append((method, path))
    assert len(tried) >= 22
    # alpha still has everything (nothing above touched it), and sees it
    for path in (
        "/v1/jobs/{job_id}",
        "/v1/models/{ref}",
        "/v1/datasets/{dataset}",
        "/v1/datasets/uploads/{upload_id}",
    ):
        assert http.get(path.format(**ids), headers=world.alpha.headers).status_code == 200, path
    hooks = http.get("/v1/webhooks", headers=world.alpha.headers).json()
    assert [h["id"] for h in hooks] == [ids["webhook_id"]]


def test_each_list_shows_its_own_project_only_and_names_may_repeat(world: World, tmp_path: Path):
    http, alpha, beta = world.http, world.alpha, world.beta
    files = chat_splits(tmp_path / "b", seed=5)
    up = http.post(
        "/v1/datasets?name=train.jsonl", content=Path(files["train"]).read_bytes(), headers=beta.headers
    )
    made = http.post("/v1/jobs", json=spec_body({"train": up.json()["ref"]}), headers=beta.headers)
    assert made.status_code == 201, made.text
    job = world.client.in_project("beta").follow(made.json()["id"])
    [mine] = world.client.in_project("beta").models_for_job(job.id)
    assert (mine.name, mine.version) == ("alpha-bot", 1)  # the same name, its own version 1 in beta
    for team_, other in ((alpha, beta), (beta, alpha)):
        jobs = http.get("/v1/jobs", headers=team_.headers).json()["jobs"]
        assert len(jobs) == 1 and {j["project"] for j in jobs} == {team_.name}
        models = http.get("/v1/models", headers=team_.headers).json()
        assert [(m["project"], m["version"]) for m in models] == [(team_.name, 1)]
        kept = {d["ref"] for d in http.get("/v1/datasets", headers=team_.headers).json()}
        assert kept == (set(world.refs.values()) if team_ is alpha else {up.json()["ref"]})
        assert http.get(f"/v1/jobs/{jobs[0]['id']}", headers=other.headers).status_code == 404
    # the id prefix and the name resolve within the project only
    assert http.get(f"/v1/jobs/{job.id[:-2]}", headers=alpha.headers).status_code == 404
    assert http.get(f"/v1/jobs/{job.id[:-2]}", headers=beta.headers).json()["id"] == job.id
    assert http.get("/v1/jobs/alpha-bot", headers=beta.headers).json()["id"] == job.id


def test_a_spend_cap_refuses_the_job_that_would_cross_it_before_the_provider_sees_it(
    world: World, openai_emu
):
    http, client, alpha = world.http, world.client, world.alpha
    data = {"train": f"dataset:{world.ids['dataset']}"}
    quoted = http.post("/v1/quotes", json=spec_body(data), headers=alpha.headers).json()
    price = next(q for q in quoted["quotes"] if q["provider"] == "openai")["price"]
    spent = get_project(client.registry, "alpha").spent_usd
    assert spent > 0  # the first job's cost counts
    set_caps(client.registry, "alpha", monthly_budget_usd=spent + price / 2, max_concurrent_jobs=None)
    provider_jobs, before = len(openai_emu.jobs), len(client.in_project("alpha").list_jobs())
    refused = http.post("/v1/jobs", json=spec_body(data), headers=alpha.headers)
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["type"] == "QuotaExceeded" and "monthly spend cap" in error["message"]
    assert f"${spent:.2f} is committed" in error["message"] and f"${price:.2f}" in error["message"]
    assert f"${price / 2:.2f} is left" in error["message"]
    assert len(openai_emu.jobs) == provider_jobs  # nothing reached the provider
    assert len(client.in_project("alpha").list_jobs()) == before  # nothing recorded
    # beta's caps are beta's: its job goes through
    up = http.post("/v1/datasets?name=t.jsonl", content=b"", headers=world.beta.headers)
    assert up.status_code == 422  # (an empty file is refused as data, not for alpha's cap)
    set_caps(client.registry, "alpha", monthly_budget_usd=spent + price * 2, max_concurrent_jobs=None)
    assert http.post("/v1/jobs", json=spec_body(data), headers=alpha.headers).status_code == 201


def test_a_concurrency_cap_counts_the_jobs_that_have_not_ended(world: World, openai_emu):
    http, client, alpha = world.http, world.client, world.alpha
    data = {"train": f"dataset:{world.ids['dataset']}"}
    set_caps(client.registry, "alpha", monthly_budget_usd=None, max_concurrent_jobs=1)
    first = http.post("/v1/jobs", json=spec_body(data), headers=alpha.headers)
    assert first.status_code == 201, first.text
    second = http.post("/v1/jobs", json=spec_body(data), headers=alpha.headers)
    assert (
        second.status_code == 429 and "may run 1 jobs at once and has 1" in second.json()["error"]["message"]
    )
    client.in_project("alpha").follow(first.json()["id"])
    assert http.post("/v1/jobs", json=spec_body(data), headers=alpha.headers).status_code == 201


FIXTURE = Path(__file__).parent / "fixtures" / "registry" / "v6.db"  # main at ed9f8ef, before projects


def copy_into(url: str) -> None:
    """The fixture's rows into a database at the fixture's revision (0006), as the same main would have
    written them to PostgreSQL."""
    from sqlalchemy import MetaData, create_engine, text

    from anytune.registry.db import upgrade

    target = create_engine(url)
    upgrade(target, "0006")
    source = create_engine(f"sqlite:///{FIXTURE}")
    old, new = MetaData(), MetaData()
    old.reflect(source)
    new.reflect(target)
    with source.connect() as read, target.begin() as write:
        for table in old.sorted_tables:
            if table.name == "alembic_version":
                continue
            rows = [dict(r._mapping) for r in read.execute(table.select())]
            if rows:
                write.execute(new.tables[table.name].insert(), rows)
        for table, column in (("events", "id"), ("models", "id"), ("evaluations", "id")):
            write.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), (SELECT max({column}) FROM {table}))"
                )
            )
    target.dispose()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_registry_written_before_projects_is_migrated_into_default_with_nothing_lost(
    database: str, anytune_home: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
):
    import shutil

    from sqlalchemy import create_engine, func, select, text

    from anytune.registry import Registry
    from anytune.registry.access import claim_key, list_tokens
    from anytune.registry.datasets import get_upload, list_stored
    from anytune.registry.outbox import list_webhooks
    from anytune.registry.tables import metadata

    if database == "sqlite":
        anytune_home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FIXTURE, anytune_home / "old.db")
        url = f"sqlite:///{anytune_home / 'old.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        copy_into(url)
    with create_engine(url).connect() as conn:
        counted = {
            t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
            for t in metadata.tables
            if t != "projects"
        }
    assert counted["jobs"] == 5 and counted["models"] == 2 and counted["api_tokens"] == 4

    registry = Registry(url)  # opening it migrates it
    assert registry.project == "default"
    with registry.session() as s:
        after = {t: s.scalar(select(func.count()).select_from(metadata.tables[t])) for t in counted}
    assert after == counted  # every row is still there
    jobs = registry.list_jobs()
    assert len(jobs) == 5 and {j.project for j in jobs} == {"default"}
    assert {j.name for j in jobs} == {"reverse", "doomed", "running", "crashed"}
    models = registry.list_models()
    assert [(m.project, m.name, m.version, m.aliases) for m in models] == [
        ("default", "reverse", 2, ["candidate"]),
        ("default", "reverse", 1, ["production"]),
    ]
    assert registry.get_model("reverse@production").version == 1
    assert [e.metrics["exact_match"] for e in registry.evaluations(model_name="reverse")] == [0.5, 0.75]
    tokens = list_tokens(registry)
    assert {(t.project, t.scope, t.revoked) for t in tokens} == {
        ("default", "read", False),
        ("default", "submit", False),
        ("default", "admin", False),
        ("default", "submit", True),
    }
    assert [w.url for w in list_webhooks(registry)] == ["http://127.0.0.1:9/hook"]
    second = next(j for j in jobs if j.name == "reverse" and j.cost.actual == 1.0)
    assert claim_key(registry, "key-done", b"{}", "job-new") == second.id  # the key still stands for its job
    assert [d.name for d in list_stored(registry)] == ["train.jsonl"]
    assert get_upload(registry, "upl-halfway").length == 1000

    # a second project starts empty, and may reuse every name
    create_project(registry.everywhere(), "other")
    other = registry.in_project("other")
    assert other.list_jobs() == [] and other.list_models() == [] and list_tokens(other) == []
    assert list_stored(other) == [] and list_webhooks(other) == []
    assert other.register_model("reverse", models[0].artifact).version == 1
    assert registry.get_model("reverse").version == 2
    # December's spend: what the two that succeeded cost, and the quotes of the two that have not ended
    monkeypatch.setenv("ANYTUNE_TODAY", "2026-12-31")
    assert get_project(registry, "default").spent_usd == pytest.approx(1.5 + 1.0 + 2.0 + 0.75)
    monkeypatch.setenv("ANYTUNE_TODAY", "2027-01-01")  # a new month
    assert get_project(registry, "default").spent_usd == 0


def test_a_worker_follows_every_projects_jobs_and_keeps_each_result_in_its_project(
    world: World, tmp_path: Path
):
    """The service's workers see every project (they follow every team's jobs); what a job makes (its model
    version, its evaluation, its events) goes into the job's own project."""
    import time

    from anytune.service.worker import Worker

    http, beta = world.http, world.beta
    theirs = http.post("/v1/jobs", json=spec_body(world.refs), headers=beta.headers)
    assert theirs.status_code == 404  # alpha's datasets are not beta's to name
    refs = {}
    for split, path in chat_splits(tmp_path / "b", seed=3).items():
        sent = http.post(
            f"/v1/datasets?name={split}.jsonl", content=Path(path).read_bytes(), headers=beta.headers
        )
        refs[split] = sent.json()["ref"]
    body = spec_body(refs, name="beta-bot", evaluation={"metrics": ["exact_match"], "limit": 2})
    made = http.post("/v1/jobs", json=body, headers=beta.headers).json()
    worker = Worker(Client(), name="w1", evaluate=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        report = worker.tick()
        if made["id"] in report.finished:
            break
    else:
        pytest.fail(f"the worker did not finish {made['id']}")
    models = http.get("/v1/models", headers=beta.headers).json()
    assert [(m["name"], m["project"]) for m in models] == [("beta-bot", "beta")]
    scores = http.get("/v1/evaluations", params={"job_id": made["id"]}, headers=beta.headers).json()
    assert {e["subject"] for e in scores} == {"base", "fine-tuned"}
    assert (
        http.get("/v1/evaluations", params={"job_id": made["id"]}, headers=world.alpha.headers).json() == []
    )
    assert [m["name"] for m in http.get("/v1/models", headers=world.alpha.headers).json()] == ["alpha-bot"]


def test_two_projects_versions_of_one_name_keep_their_archives_apart():
    import hashlib

    from anytune.jobs import ModelArtifact, utcnow
    from anytune.pipeline.archive import archive_key
    from anytune.registry.records import ModelVersion

    artifact = ModelArtifact(provider="local", model_id="/m", kind="adapter", base_model="tiny", path="/m")

    def version(project: str) -> ModelVersion:
        return ModelVersion(
            project=project,
            name="bot",
            version=1,
            provider="local",
            model_id="/m",
            kind="adapter",
            base_model="tiny",
            artifact=artifact,
            created_at=utcnow(),
        )

    keys = {archive_key(version(p)) for p in ("default", "alpha", "beta")}
    assert len(keys) == 3
    assert archive_key(version("default")) == "models/" + hashlib.sha256(b"bot@1").hexdigest()[:32] + ".tar"


def test_the_operator_makes_projects_and_their_tokens_from_the_cli(capsys: pytest.CaptureFixture[str]):
    from tests.conftest import anytune_in_process

    code, out = anytune_in_process(
        capsys, "projects", "create", "team-a", "--monthly-budget-usd", "25", "--max-concurrent-jobs", "2"
    )
    assert code == 0 and "project team-a created" in out
    assert anytune_in_process(capsys, "projects", "create", "team-a")[0] == 2  # exists
    assert anytune_in_process(capsys, "projects", "create", "Team A")[0] == 2  # not a name
    code, out = anytune_in_process(
        capsys, "tokens", "create", "--project", "team-a", "--scope", "admin", "--name", "lead"
    )
    assert code == 0 and out.strip().startswith("at_")
    assert anytune_in_process(capsys, "tokens", "create", "--project", "nobody")[0] == 2
    code, out = anytune_in_process(capsys, "tokens", "list", "--project", "team-a")
    assert code == 0 and "team-a" in out and "lead" in out and "admin" in out
    code, out = anytune_in_process(capsys, "projects", "set", "team-a", "--no-monthly-budget")
    assert code == 0
    code, out = anytune_in_process(capsys, "projects", "list", "--json")
    listed = {p["name"]: p for p in json.loads(out)}
    assert set(listed) == {"default", "team-a"}
    assert listed["team-a"]["monthly_budget_usd"] is None and listed["team-a"]["max_concurrent_jobs"] == 2
    code, out = anytune_in_process(capsys, "--server", "http://127.0.0.1:9", "projects", "list")
    assert code == 2 and "server operator's" in out  # a laptop pointed at a server is refused, not misled


def test_each_projects_webhooks_are_given_its_own_events_only():
    from anytune.jobs import Event
    from anytune.registry import Registry
    from anytune.registry.outbox import Outbox, add_webhook
    from anytune.spec import JobSpec

    everywhere = Registry().everywhere()
    hooks, jobs = {}, {}
    for name in ("alpha", "beta"):
        create_project(everywhere, name)
        mine = everywhere.in_project(name)
        hooks[name] = add_webhook(mine, f"http://127.0.0.1:9/{name}", from_start=True)[0].id
        spec = JobSpec.model_validate({"name": name, "base_model": "m", "data": {"train": "t.jsonl"}})
        jobs[name] = mine.create_job(spec).id
        mine.add_events(jobs[name], [Event(message=f"{name} {i}") for i in range(3)])
    outbox = Outbox(everywhere, owner="w")
    assert set(outbox.claim()) == set(hooks.values())  # the deliverer serves every project's receivers
    for name, hook in hooks.items():
        pending = outbox.pending(hook, settle_s=0, batch=100)
        assert pending is not None and {e.job_id for e in pending.events} == {jobs[name]}
        assert [e.message for e in pending.events] == [f"{name} {i}" for i in range(3)]
