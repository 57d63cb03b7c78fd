"""`anytune serve` and `anytune export`: use a registered model outside anytune."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from anytune.cli.console import err, out
from anytune.errors import UsageError

if TYPE_CHECKING:
    from anytune.api import EvalTarget


def serve(
    ref: str = typer.Argument(..., help="A model (NAME, NAME@VERSION, NAME@ALIAS) or a job id."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port", "-p"),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="ANYTUNE_SERVE_API_KEY", help="Require this Bearer key (default: none)."
    ),
    name: str | None = typer.Option(None, "--name", help="The model name clients ask for (default: REF)."),
    warm: bool = typer.Option(True, "--warm/--no-warm", help="Load the model before taking requests."),
    insecure: bool = typer.Option(
        False, "--insecure", help="Serve on a non-loopback address without --api-key (anyone may call it)."
    ),
) -> None:
    """Serve a model behind an OpenAI-compatible /v1/chat/completions endpoint.

    Point any OpenAI client at it: OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused").
    """
    if not api_key and not is_loopback(host) and not insecure:
        raise UsageError(
            f"serving on {host} without --api-key would let anyone who reaches this machine call the model "
            "(with your provider key behind it, for a hosted model)",
            hint="set --api-key (or ANYTUNE_SERVE_API_KEY), bind to 127.0.0.1, or pass --insecure on purpose",
        )
    try:
        import uvicorn
    except ImportError:
        raise UsageError("serving needs uvicorn and starlette", hint="pip install 'anytune[serve]'") from None
    from anytune.client.inprocess import InProcessClient
    from anytune.hookspecs import GenerationParams
    from anytune.workflows.serving import build_app

    target = _pulled_target(ref) if _through_server() else InProcessClient().resolve_target(ref)
    backend = InProcessClient().backend(target.provider)
    caps = backend.capabilities()
    if not caps.supports_generate:
        raise UsageError(f"the {target.provider} backend cannot generate text, so it cannot serve")
    if warm:
        with out.status(f"loading {escape(target.label)}..."):
            backend.generate(
                target.artifact, [[{"role": "user", "content": "hi"}]], GenerationParams(max_new_tokens=1)
            )
    app = build_app(target, backend, api_key=api_key, name=name)
    served = name or target.label
    out.print(
        f"serving [bold]{escape(served)}[/] ({escape(target.provider)}: {escape(target.artifact.model_id)})"
    )
    out.print(
        f"  base_url http://{host}:{port}/v1  model {escape(served)}"
        + ("  (Bearer key required)" if api_key else "")
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _through_server() -> bool:
    from anytune.cli.target import server_url

    return server_url() is not None


def _pulled_target(ref: str) -> EvalTarget:
    """A server's model, its files pulled here first (not fetched again when they are here already)."""
    from anytune.api import EvalTarget
    from anytune.cli.console import TransferBar
    from anytune.cli.target import cli_client

    bar = TransferBar("pulling")
    model = cli_client().pull(ref, on_progress=lambda done, total: bar(ref, done, total))
    return EvalTarget(model.ref, model.provider, model.artifact, model.base_model, None, model)


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def export(
    ref: str = typer.Argument(..., help="A model (NAME, NAME@VERSION, NAME@ALIAS) or a job id."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder to write the merged model into."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16."),
    register: bool = typer.Option(
        True, "--register/--no-register", help="Register the merged model as a new version."
    ),
) -> None:
    """Merge a local adapter into its base model and save full weights (safetensors) with the tokenizer: a
    folder any transformers / vLLM / TGI setup loads without peft."""
    from anytune.cli.target import cli_client

    if _through_server():  # merged here from the pulled files; the server's registry is not written
        _pulled_target(ref)
        register = False
    client = cli_client()
    with out.status(f"merging {escape(ref)} into its base model..."):
        artifact, version = client.export(ref, out_dir, dtype=dtype, register=register)
    out.print(f"[green]✓[/] merged weights in {escape(artifact.model_id)}")
    if version is not None:
        out.print(f"  registered as [bold]{escape(version.ref)}[/]")
    else:
        err.print("[dim]not registered[/]")
