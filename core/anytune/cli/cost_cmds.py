"""`anytune quote` and `anytune prices`: what a job costs where, and what the catalog says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from anytune.cli.console import err, out, print_plain


def quote(
    job_file: Path = typer.Argument(..., help="A YAML job file."),
    providers: str = typer.Option(
        "all",
        "--providers",
        "-p",
        help="Comma-separated providers, or all (installed backends and quote-only ones).",
    ),
    hardware: str | None = typer.Option(
        None,
        "--hardware",
        help="For hour-priced providers: comma-separated machines (e.g. a100,h200), or all.",
    ),
    overrides: list[str] = typer.Option(
        [], "--set", "-s", help="Override a field: --set hyperparameters.epochs=2"
    ),
    prices: list[Path] = typer.Option([], "--prices", help="A prices override file (several allowed)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (for scripts)."),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV (for spreadsheets)."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Also draw price and ETA per provider into this PNG."
    ),
    details: bool = typer.Option(False, "--details", help="Show every assumption behind each figure."),
) -> None:
    """What the job would cost, and how long it would take, on every provider: nothing is uploaded.

    Tokens are counted with each provider's tokenizer over the text it bills (marked ~ where only an
    estimate is possible); prices come from the dated, sourced catalog (`anytune prices`). Exits 2 when a
    provider would refuse the data (its lines are listed), after the table. With ANYTUNE_SERVER set, the
    server quotes with its plugins and catalog (the data paths are read there).
    """
    from anytune.cli.target import cli_client
    from anytune.jobfile import load_job_file

    spec = load_job_file(job_file, overrides=overrides)
    table = cli_client().quote(spec, providers, hardware=hardware, prices=prices)
    if plot is not None:
        table.plot(plot)
    refusals = table.refusals()
    if as_json:
        print_plain(table.to_json())
    elif as_csv:
        print_plain(table.to_csv(), end="")
    else:
        _print_table(table, details, plot)
    if refusals:
        for label, problems in refusals.items():
            err.print(
                f"[bold red]error:[/] {escape(label)} would refuse the data ({len(problems)} problem(s))"
            )
            for problem in problems[:20]:
                err.print(f"  [red]•[/] {escape(problem)}")
            if len(problems) > 20:
                err.print(f"  [dim]... and {len(problems) - 20} more[/]")
        err.print("[dim]hint:[/] fix the lines named, or leave those providers out with --providers")
        raise typer.Exit(2)


def _print_table(table: Any, details: bool, plot: Path | None) -> None:
    out.print(table.rich_table())
    if any(q.tokens_estimated for q in table.quotes if q.available):
        out.print("[dim]~ token count is an estimate (about 4 characters a token): no tokenizer offline[/]")
    if details:
        for q in table.quotes:
            out.print(
                f"[bold]{escape(q.label)}[/]"
                + (f"  [dim]{escape(q.price_source or '')}[/]" if q.price_source else "")
            )
            for a in q.assumptions:
                out.print(f"  [dim]•[/] {escape(a)}")
    else:
        out.print("[dim]--details shows the assumptions and sources behind each figure[/]")
    for w in table.warnings:
        err.print(f"[yellow]warning:[/] {escape(w)}")
    if plot is not None:
        out.print(f"plot written to {plot}")
    out.print(f"[dim]quoted in {table.seconds:.1f}s[/]")


def prices(
    provider: str | None = typer.Option(None, "--provider", "-p", help="Only this provider."),
    extra: list[Path] = typer.Option([], "--prices", help="A prices override file (several allowed)."),
    markdown: bool = typer.Option(False, "--markdown", help="Print a Markdown table (docs/pricing.md)."),
) -> None:
    """Every price in the catalog, with its source and the date it was seen; override files included."""
    from anytune.cost.catalog import load_catalog
    from anytune.plugins import get_plugin_manager

    get_plugin_manager()  # the plugins' catalogs (and their errors) before the table is drawn
    catalog = load_catalog(extra)
    entries = [e for e in catalog.entries if provider is None or e.provider == provider]
    if not entries:
        err.print(f"no prices for {provider!r}")
        raise typer.Exit(1)
    rows = []
    for e in sorted(entries, key=lambda e: (e.provider, e.origin != "built-in", e.unit, e.price)):
        applies = (
            e.model or (f"{e.params_b[0]:g}-{e.params_b[1]:g}B" if e.params_b else "") or e.hardware or "*"
        )
        if e.hardware and e.flavor:
            applies += f" ({e.flavor})"
        if e.tier:
            applies += f" [{e.tier}]"
        kind = "/".join(x for x in (",".join(e.method), ",".join(e.adapter)) if x != "*")
        unit = {"1m_tokens": "per 1M tokens", "hour": "per hour", "month": "per month"}[e.unit]
        source, seen = catalog.source_of(e)
        rows.append(
            [
                e.provider,
                applies,
                kind or "any",
                f"{e.price:,.2f} {e.currency} {unit}",
                str(e.retires or ""),
                seen.isoformat() if seen else "",
                source if e.notes == "" else f"{source}; {e.notes}",
            ]
        )
    headers = ["provider", "applies to", "method/adapter", "price", "retires", "seen", "source"]
    if markdown:
        print("| " + " | ".join(headers) + " |")
        print("|" + "---|" * len(headers))
        for r in rows:
            print("| " + " | ".join(c.replace("|", "/") for c in r) + " |")
        return
    t = Table(title="pricing catalog", title_justify="left")
    for h in headers:
        t.add_column(h)
    for r in rows:
        t.add_row(*(escape(c) for c in r))
    out.print(t)
    out.print(
        f"[dim]files: {', '.join(catalog.files)}; override with $ANYTUNE_HOME/prices.yaml or $ANYTUNE_PRICES[/]"
    )
