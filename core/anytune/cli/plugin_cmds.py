"""`anytune plugins list` and `anytune plugins new`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from anytune.cli.console import out, print_json

app = typer.Typer(help="Installed plugins and the backends they provide.", no_args_is_help=True)


@app.command("list")
def list_plugins(
    as_json: bool = typer.Option(False, "--json"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the traceback of broken plugins."),
) -> None:
    """Every plugin found through the `anytune` entry-point group, with its backends or its error."""
    from anytune.plugins import get_plugin_manager

    infos = get_plugin_manager().plugins()
    if as_json:
        print_json([{k: v for k, v in vars(i).items() if k != "error_detail"} | {"ok": i.ok} for i in infos])
        return
    t = Table(title="plugins", title_justify="left")
    for col in ("plugin", "module", "package", "offers", "status"):
        t.add_column(
            col,
            overflow="fold",
            no_wrap=col in ("plugin", "module"),
            max_width=22 if col == "offers" else None,
        )
    for i in infos:
        package = f"{i.distribution} {i.version}" if i.distribution else "-"
        status = (
            "[red]error[/] (below)"
            if not i.ok
            else "[yellow]conflict[/] (below)"
            if i.conflicts
            else "[green]loaded[/]"
        )
        offers = [f"backend {b}" for b in i.backends] + [f"emulator {e}" for e in i.emulators]
        offers += [f"metric {m}" for m in i.metrics] + (["prices"] if i.prices else [])
        t.add_row(escape(i.name), escape(i.module), escape(package), escape(", ".join(offers) or "-"), status)
    out.print(t)
    for i in infos:
        if not i.ok:
            out.print(f"[red]{escape(i.name)}:[/] {escape(i.error or '')}")
        for conflict in i.conflicts:
            out.print(f"[yellow]{escape(i.name)}:[/] {escape(conflict)}")
    if any(i.conflicts for i in infos):
        out.print("[dim]ANYTUNE_PREFER=name=plugin chooses which plugin serves a name several offer[/]")
    if verbose:
        for i in infos:
            if not i.ok and i.error_detail:
                out.print(f"[bold]{escape(i.name)}[/]\n{escape(i.error_detail)}")


@app.command("new")
def new(
    name: str = typer.Argument(
        ..., help="The backend's name (lowercase, e.g. acme); the package is anytune-NAME."
    ),
    directory: Path | None = typer.Option(
        None, "--dir", help="Where to write the package (default: ./anytune-NAME)."
    ),
    label: str | None = typer.Option(None, "--label", help="The provider's name as people write it."),
) -> None:
    """Start a backend plugin: a package with the entry point, a backend whose every method says what to
    write, an emulator, prices and the conformance suite."""
    from anytune.scaffold import new_plugin

    made = new_plugin(name, directory, label)
    out.print(f"wrote {escape(str(made.folder))}:")
    for path in made.files:
        out.print(f"  {escape(str(path.relative_to(made.folder)))}")
    out.print(
        escape(
            "next:\n"
            f"  cd {made.folder} && pip install -e '.[test]'\n"
            f"  anytune plugins list      # shows {name}\n"
            "  pytest                    # the conformance suite: each failure names what to write next"
        )
    )
