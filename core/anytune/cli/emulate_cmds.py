"""`anytune emulate PROVIDER`: serve a provider's API emulator on this machine, to rehearse for free."""

from __future__ import annotations

import typer

from anytune.cli.console import out
from anytune.errors import UsageError

PROVIDERS = ("openai", "together")


def emulate(
    provider: str = typer.Argument(..., help="Which API: openai or together."),
    port: int = typer.Option(8000, "--port", "-p", help="Port on 127.0.0.1."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    speed: float = typer.Option(1.0, "--speed", help="Run the emulated clock this many times faster."),
    step_seconds: float = typer.Option(0.5, "--step-seconds", help="Emulated seconds per training step."),
    api_key: str | None = typer.Option(None, "--api-key", help="Accept only this key (default: any)."),
) -> None:
    """Serve an emulator of a provider's fine-tuning API; point the provider's SDK (or anytune) at it."""
    if provider not in PROVIDERS:
        raise UsageError(f"no emulator for {provider!r}", hint=f"available: {', '.join(PROVIDERS)}")
    try:
        from anytune.testing.clock import RealClock
        from anytune.testing.server import EmulatorServer

        if provider == "openai":
            from anytune.testing.openai_emulator import OpenAIEmulator as Emulator
        else:
            from anytune.testing.together_emulator import TogetherEmulator as Emulator
    except ImportError as exc:
        raise UsageError(
            f"the emulators need extra packages ({exc.name})", hint="pip install 'anytune[emulators]'"
        ) from None
    emulator = Emulator(api_key=api_key, clock=RealClock(speed), step_seconds=step_seconds)
    server = EmulatorServer(emulator.app, port=port, host=host)
    key = api_key or "emulator-key"
    if provider == "openai":
        out.print(f"OpenAI emulator on {server.url}/v1 (Ctrl-C stops it). In another shell:")
        out.print(f"  export OPENAI_BASE_URL={server.url}/v1 OPENAI_API_KEY={key}")
        out.print("  anytune run examples/openai-sft.yaml")
    else:
        out.print(f"Together emulator on {server.url} (Ctrl-C stops it). In another shell:")
        out.print(f"  export TOGETHER_BASE_URL={server.url} TOGETHER_API_KEY={key}")
        out.print("  anytune run examples/together-sft.yaml")
    server.serve_forever()
