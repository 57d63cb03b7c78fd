"""`anytune server` (the REST API over this registry) and `anytune tokens` (its API tokens)."""

from __future__ import annotations

import threading

import typer
from rich.markup import escape

from anytune.cli.console import err, out
from anytune.cli.serve_cmds import is_loopback
from anytune.errors import UsageError

app = typer.Typer(help="API tokens of the service: create (shown once), list, revoke.", no_args_is_help=True)


def server(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", "-p", help="Port."),
    no_auth: bool = typer.Option(
        False, "--no-auth", help="Serve without API tokens (only on 127.0.0.1; anything else is refused)."
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        "-w",
        min=0,
        help="Workers in this process that follow every job to its end (0: API only; more than 1 needs "
        "PostgreSQL; `anytune worker` runs more on other machines).",
    ),
    submit_in_workers: bool = typer.Option(
        False,
        "--submit-in-workers",
        help="Record checked jobs and leave their submit to the workers (local jobs then train on the "
        "machine of the worker that takes them; needs a shared ANYTUNE_STORAGE_URL and database).",
    ),
    openapi: bool = typer.Option(False, "--openapi", help="Print the API's OpenAPI document and exit."),
) -> None:
    """Serve anytune's REST API (/v1: jobs, quotes, plugins, prices, health) over this machine's registry,
    with workers that follow every job, evaluate it after success and finish interrupted submits."""
    try:
        import uvicorn

        from anytune.service.app import create_app
    except ImportError as exc:
        raise UsageError(
            f"the service needs extra packages ({exc.name})", hint="pip install 'anytune[server]'"
        ) from None
    if openapi:
        import json

        print(json.dumps(create_app().openapi(), indent=2, sort_keys=True))
        return
    if no_auth and not is_loopback(host):
        raise UsageError(
            f"--no-auth on {host}: anyone who reaches that address could submit paid jobs",
            hint="serve on 127.0.0.1, or create a token with `anytune tokens create` and keep auth on",
        )
    if not is_loopback(host):
        err.print(f"[yellow]warning[/]: serving on {escape(host)}; put TLS in front of it (docs/service.md)")
    stop, threads = _start_workers(workers)
    out.print(
        f"anytune API on http://{host}:{port}/v1 (OpenAPI at /docs), {workers} worker(s); Ctrl-C stops it"
    )
    try:
        app = create_app(auth=not no_auth)
        app.state.client.pipeline.defer_submit = submit_in_workers
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def worker(
    count: int = typer.Option(1, "--count", "-n", min=1, help="Workers in this process."),
    lease: float = typer.Option(
        120.0,
        "--lease",
        envvar="ANYTUNE_LEASE_S",
        help="Seconds a claim on a job holds; a killed worker's jobs wait this long.",
    ),
) -> None:
    """Follow every job of this registry to its end, beside `anytune server` (on PostgreSQL, any number of
    these, on any machine, share the jobs through leases)."""
    stop, threads = _start_workers(count, lease_s=lease)
    out.print(f"{count} worker(s) following the jobs of this registry; Ctrl-C stops them")
    try:
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def _start_workers(count: int, **options: float) -> tuple[threading.Event, list[threading.Thread]]:
    """`count` workers on threads, each with its own Client; several only on a database with row locks."""
    from anytune.client.inprocess import InProcessClient
    from anytune.registry import Registry
    from anytune.service.worker import Worker

    stop = threading.Event()
    if count == 0:
        return stop, []
    if count > 1 and Registry().dialect == "sqlite":
        raise UsageError(
            f"{count} workers on SQLite: SQLite has one writer at a time and no row locks, so workers would "
            "wait on each other and gain nothing",
            hint="run one worker, or set ANYTUNE_DATABASE_URL to a PostgreSQL database (docs/service.md)",
        )
    threads = []
    for _ in range(count):
        w = Worker(InProcessClient(), **options)
        thread = threading.Thread(target=w.run, args=(stop,), name=f"anytune-worker-{w.name}", daemon=True)
        thread.start()
        threads.append(thread)
    return stop, threads


PROJECT = typer.Option(None, "--project", help="The token's project (default: $ANYTUNE_PROJECT or default).")


@app.command("create")
def create(
    name: str = typer.Option("token", "--name", help="What the token is for (shown in `tokens list`)."),
    scope: str = typer.Option(
        "read", "--scope", help="read, submit (also read) or admin (everything in its project)."
    ),
    project: str | None = PROJECT,
) -> None:
    """Make an API token for the service running on this registry; it is printed once and stored hashed.
    It sees and acts in its project only."""
    from anytune.registry import Registry
    from anytune.registry.access import create_token

    token, info = create_token(Registry(project=project), name, scope)
    err.print(
        f"token {info.id} ({info.scope}, project {escape(info.project)}) for {escape(info.name)}; "
        "it is shown only now:"
    )
    out.print(token)


@app.command("list")
def list_cmd(
    project: str | None = typer.Option(None, "--project", help="Only this project's (default: every one)."),
) -> None:
    """The tokens (never their values): id, project, name, scope, last use, revoked."""
    from anytune.registry import Registry
    from anytune.registry.access import list_tokens

    registry = Registry(project=project) if project else Registry().everywhere()
    for t in list_tokens(registry):
        used = t.last_used_at.isoformat(timespec="seconds") if t.last_used_at else "never"
        out.print(
            f"{t.id}  {escape(t.project)}  {escape(t.name)}  {t.scope}  last used {used}"
            f"{'  revoked' if t.revoked else ''}"
        )


@app.command("revoke")
def revoke(token_id: str = typer.Argument(..., help="The token's id, from `tokens list`.")) -> None:
    """Revoke a token (of any project): requests with it are refused from now on."""
    from anytune.registry import Registry
    from anytune.registry.access import revoke_token

    revoke_token(Registry().everywhere(), token_id)
    out.print(f"revoked {token_id}")
