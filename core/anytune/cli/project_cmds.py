"""`anytune projects create|list|show|set`: the teams of a server and their caps. The operator's commands,
run where the registry's database is reachable (the server's machine): no token can make a project."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from anytune.cli.console import out, print_json

if TYPE_CHECKING:
    from anytune.registry.projects import ProjectInfo


def _here() -> None:
    """Projects are made where the database is: a laptop pointed at a server has no business here (and would
    only see a registry of its own)."""
    import os

    from anytune.errors import UsageError

    if os.environ.get("ANYTUNE_SERVER"):
        raise UsageError(
            "projects are the server operator's, managed on the server's machine against its database",
            hint="run it there (`anytune --server '' projects ...` if ANYTUNE_SERVER is set there too)",
        )


app = typer.Typer(
    help="Projects of the service (the operator's): each team's jobs, models, datasets and tokens, with caps.",
    no_args_is_help=True,
    callback=_here,
)

BUDGET = typer.Option(None, "--monthly-budget-usd", min=0, help="Spend cap per calendar month (UTC), in USD.")
CONCURRENT = typer.Option(None, "--max-concurrent-jobs", min=0, help="Jobs that may be unfinished at once.")


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def _print(infos: list[ProjectInfo], as_json: bool) -> None:
    if as_json:
        print_json([dataclasses.asdict(i) | {"created_at": i.created_at.isoformat()} for i in infos])
        return
    table = Table(box=None)
    for col in ("project", "monthly cap", "spent this month", "left", "jobs running", "max at once"):
        table.add_column(col)
    for i in infos:
        left = None if i.monthly_budget_usd is None else max(i.monthly_budget_usd - i.spent_usd, 0.0)
        table.add_row(
            escape(i.name),
            _money(i.monthly_budget_usd),
            _money(i.spent_usd),
            _money(left),
            str(i.active_jobs),
            "-" if i.max_concurrent_jobs is None else str(i.max_concurrent_jobs),
        )
    out.print(table)


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Lower-case letters, digits, '.', '_' and '-'."),
    budget: float | None = BUDGET,
    concurrent: int | None = CONCURRENT,
) -> None:
    """Make a project; then `anytune tokens create --project NAME --scope admin` gives its team a token."""
    from anytune.registry import Registry
    from anytune.registry.projects import create_project

    info = create_project(
        Registry().everywhere(), name, monthly_budget_usd=budget, max_concurrent_jobs=concurrent
    )
    out.print(f"project {escape(info.name)} created")
    out.print(f"  next: anytune tokens create --project {escape(info.name)} --scope admin --name lead")


@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every project with its caps, what it has spent this month and its jobs that have not ended."""
    from anytune.registry import Registry
    from anytune.registry.projects import list_projects

    _print(list_projects(Registry().everywhere()), as_json)


@app.command("show")
def show(name: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """One project's caps and use."""
    from anytune.registry import Registry
    from anytune.registry.projects import get_project

    _print([get_project(Registry().everywhere(), name)], as_json)


@app.command("set")
def set_caps_cmd(
    name: str = typer.Argument(...),
    budget: float | None = BUDGET,
    concurrent: int | None = CONCURRENT,
    no_budget: bool = typer.Option(False, "--no-monthly-budget", help="Remove the spend cap."),
    no_concurrent: bool = typer.Option(False, "--no-max-concurrent-jobs", help="Remove the jobs cap."),
) -> None:
    """Change a project's caps (those not given stay as they are). Jobs already running are not stopped."""
    from anytune.registry import Registry
    from anytune.registry.projects import get_project, set_caps

    registry = Registry().everywhere()
    now = get_project(registry, name)
    info = set_caps(
        registry,
        name,
        monthly_budget_usd=None if no_budget else (budget if budget is not None else now.monthly_budget_usd),
        max_concurrent_jobs=None
        if no_concurrent
        else (concurrent if concurrent is not None else now.max_concurrent_jobs),
    )
    _print([info], False)
