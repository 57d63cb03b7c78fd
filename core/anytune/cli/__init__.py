"""The `anytune` command line (typer + rich).

Commands import what they need when they run, so `anytune --help` loads neither torch nor any provider SDK.
Errors print as one message (with details and a hint) and exit 2 for bad input, 1 for failures;
`--debug` adds the traceback.
"""

from __future__ import annotations

import os
import sys
import traceback

import click
import typer
from rich.markup import escape

from anytune import __version__
from anytune.cli import (
    cost_cmds,
    data_cmds,
    dataset_cmds,
    emulate_cmds,
    eval_cmds,
    grade_cmds,
    job_cmds,
    model_cmds,
    plugin_cmds,
    project_cmds,
    serve_cmds,
    server_cmds,
)
from anytune.cli.console import err, print_error
from anytune.errors import AnytuneError

app = typer.Typer(
    name="anytune",
    help="Fine-tune language models on any provider (or locally) with one job file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        print(f"anytune {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
    server: str | None = typer.Option(
        None,
        "--server",
        help="Talk to `anytune server` at this URL (token from ANYTUNE_TOKEN); default $ANYTUNE_SERVER; "
        "'' means in this process.",
    ),
) -> None:
    """anytune: one provider-neutral API and CLI for fine-tuning language models."""
    if server is not None:
        os.environ["ANYTUNE_SERVER"] = server


app.command("validate")(data_cmds.validate)
app.add_typer(data_cmds.app, name="data")
app.command("run")(job_cmds.run)
app.command("quote")(cost_cmds.quote)
app.command("eval")(eval_cmds.eval_command)
app.command("grade")(grade_cmds.grade)
app.command("report")(eval_cmds.report_command)
app.command("serve")(serve_cmds.serve)
app.command("export")(serve_cmds.export)
app.command("prices")(cost_cmds.prices)
app.add_typer(job_cmds.app, name="jobs")
app.add_typer(model_cmds.app, name="models")
app.add_typer(dataset_cmds.app, name="datasets")
app.add_typer(plugin_cmds.app, name="plugins")
app.command("emulate")(emulate_cmds.emulate)
app.command("server")(server_cmds.server)
app.command("worker")(server_cmds.worker)
app.add_typer(server_cmds.app, name="tokens")
app.add_typer(project_cmds.app, name="projects")


BUILT_IN = frozenset(
    {c.name for c in app.registered_commands if c.name} | {g.name for g in app.registered_groups if g.name}
)


def _with_plugin_commands(args: list[str]) -> None:
    """Let plugins add their own verbs (`register_commands`), unless a built-in command was asked for: then
    no plugin needs loading and the command starts as fast as it can."""
    first = next((a for a in args if not a.startswith("-")), None)
    if first in BUILT_IN:
        return
    from anytune.plugins import get_plugin_manager

    get_plugin_manager().add_commands(app)


def _print_traceback() -> None:
    """The traceback for `--debug`, with every known secret masked like everything else printed (an
    exception's message may carry a provider's echo of a key)."""
    from anytune.secrets import redact

    sys.stderr.write(redact(traceback.format_exc()))


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        _with_plugin_commands(args)
        code = app(args=args, prog_name="anytune", standalone_mode=False)
    except (click.exceptions.Exit, typer.Exit) as exc:
        code = exc.exit_code
    except (click.exceptions.Abort, typer.Abort):
        err.print("[yellow]aborted[/]")
        code = 130
    except (click.ClickException, typer.TyperException) as exc:  # typer raises its own copy of click's
        if type(exc).__name__ == "NoArgsIsHelpError":
            code = 0  # `anytune` alone: the help was printed
        else:
            exc.show()  # type: ignore[attr-defined]
            code = getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        code = 130
    except AnytuneError as exc:
        if debug:
            _print_traceback()
        print_error(exc)
        code = exc.exit_code
    except Exception as exc:
        if debug:
            _print_traceback()
        err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}")
        err.print("[dim]hint: run again with --debug for the traceback, and report it if it is a bug[/]")
        code = 1
    sys.exit(code if isinstance(code, int) else 0)
