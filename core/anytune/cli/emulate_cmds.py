"""`anytune emulate NAME`: serve a provider's API emulator on this machine, to rehearse for free.

The emulators come from the installed plugins (`register_emulators`); `anytune emulate` alone lists them."""

from __future__ import annotations

import typer
from rich.markup import escape

from anytune.cli.console import out
from anytune.errors import UsageError


def emulate(
    provider: str | None = typer.Argument(None, help="Which API (leave out to list what plugins offer)."),
    port: int = typer.Option(8000, "--port", "-p", help="Port on 127.0.0.1."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    speed: float = typer.Option(1.0, "--speed", help="Run the emulated clock this many times faster."),
    step_seconds: float = typer.Option(0.5, "--step-seconds", help="Emulated seconds per training step."),
    api_key: str | None = typer.Option(None, "--api-key", help="Accept only this key (default: any)."),
) -> None:
    """Serve an emulator of a provider's fine-tuning API; point the provider's SDK (or anytune) at it."""
    from anytune.hookspecs import EmulatorOptions
    from anytune.plugins import get_plugin_manager

    offered = get_plugin_manager().emulators()
    if provider is None:
        if not offered:
            out.print("no installed plugin offers an emulator")
            return
        for name, info in offered.items():
            out.print(f"[bold]{escape(name)}[/]  {escape(info.description)}")
        out.print("[dim]anytune emulate NAME serves one on 127.0.0.1[/]")
        return
    info = offered.get(provider)
    if info is None:
        raise UsageError(
            f"no emulator for {provider!r}",
            hint=f"installed plugins offer: {', '.join(offered) or 'none'}",
        )
    try:
        from anytune.testing import EmulatorServer, RealClock, close_emulator

        emulator = info.build(
            EmulatorOptions(api_key=api_key, clock=RealClock(speed), step_seconds=step_seconds)
        )
        server = EmulatorServer(emulator.app, port=port, host=host)
    except ImportError as exc:
        raise UsageError(
            f"the emulators need extra packages ({exc.name})", hint="pip install 'anytune[emulators]'"
        ) from None
    env = info.environment(server.url, api_key or "emulator-key")
    out.print(
        f"{escape(info.description or provider)} emulator on {server.url} (Ctrl-C stops it). In another shell:"
    )
    out.print("  export " + " ".join(f"{k}={v}" for k, v in env.items()))
    if info.example:
        out.print(f"  anytune run {info.example} --provider {provider}")
    try:
        server.serve_forever()
    finally:
        close_emulator(emulator)
