"""`anytune server` (the REST API over this registry) and `anytune tokens` (its API tokens)."""

from __future__ import annotations

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
) -> None:
    """Serve anytune's REST API (/v1: jobs, quotes, plugins, prices, health) over this machine's registry."""
    try:
        import uvicorn

        from anytune.service.app import create_app
    except ImportError as exc:
        raise UsageError(
            f"the service needs extra packages ({exc.name})", hint="pip install 'anytune[server]'"
        ) from None
    if no_auth and not is_loopback(host):
        raise UsageError(
            f"--no-auth on {host}: anyone who reaches that address could submit paid jobs",
            hint="serve on 127.0.0.1, or create a token with `anytune tokens create` and keep auth on",
        )
    if not is_loopback(host):
        err.print(f"[yellow]warning[/]: serving on {escape(host)}; put TLS in front of it (docs/service.md)")
    out.print(f"anytune API on http://{host}:{port}/v1 (OpenAPI at /docs); Ctrl-C stops it")
    uvicorn.run(create_app(auth=not no_auth), host=host, port=port, log_level="warning")


@app.command("create")
def create(
    name: str = typer.Option("token", "--name", help="What the token is for (shown in `tokens list`)."),
    scope: str = typer.Option("read", "--scope", help="read, submit (also read) or admin (everything)."),
) -> None:
    """Make an API token for the service running on this registry; it is printed once and stored hashed."""
    from anytune.registry import Registry
    from anytune.registry.access import create_token

    token, info = create_token(Registry(), name, scope)
    err.print(f"token {info.id} ({info.scope}) for {escape(info.name)}; it is shown only now:")
    out.print(token)


@app.command("list")
def list_cmd() -> None:
    """The tokens (never their values): id, name, scope, last use, revoked."""
    from anytune.registry import Registry
    from anytune.registry.access import list_tokens

    for t in list_tokens(Registry()):
        used = t.last_used_at.isoformat(timespec="seconds") if t.last_used_at else "never"
        out.print(f"{t.id}  {escape(t.name)}  {t.scope}  last used {used}{'  revoked' if t.revoked else ''}")


@app.command("revoke")
def revoke(token_id: str = typer.Argument(..., help="The token's id, from `tokens list`.")) -> None:
    """Revoke a token: requests with it are refused from now on."""
    from anytune.registry import Registry
    from anytune.registry.access import revoke_token

    revoke_token(Registry(), token_id)
    out.print(f"revoked {token_id}")
