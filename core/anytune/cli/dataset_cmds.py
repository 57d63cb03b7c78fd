"""`anytune datasets upload|list|show|delete`: data files kept by the server (or by this machine's own
registry), named in job files as `dataset:sha256:<hex>`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from anytune.cli.console import TransferBar, megabytes, out, print_json, when

app = typer.Typer(
    help="Uploaded datasets: kept by the SHA-256 of their bytes, named in jobs as dataset:sha256:<hex>.",
    no_args_is_help=True,
)


@app.command("upload")
def upload(
    files: list[Path] = typer.Argument(..., help="JSONL data files."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Validate and keep each file (with ANYTUNE_SERVER set: on the server, resuming a dropped upload); a
    file kept already is not sent again. Prints the name to use in a job's data fields."""
    from anytune.cli.target import cli_client

    client = cli_client()
    bar = TransferBar("uploading")
    kept = [client.upload(f, on_progress=lambda d, t, n=f.name: bar(n, d, t)) for f in files]
    if as_json:
        print_json([{**d.model_dump(mode="json"), "ref": d.ref} for d in kept])
        return
    for d in kept:
        out.print(f"[green]✓[/] {escape(d.name)}: {d.rows:,} {d.format} rows, {megabytes(d.size)}")
        out.print(f"  data: {{train: {d.ref}}}")


@app.command("list")
def list_datasets(as_json: bool = typer.Option(False, "--json")) -> None:
    """The datasets kept, newest first."""
    from anytune.cli.target import cli_client

    found = cli_client().datasets()
    if as_json:
        print_json([{**d.model_dump(mode="json"), "ref": d.ref} for d in found])
        return
    if not found:
        out.print("no datasets yet: `anytune datasets upload FILE`, or run a job through a server")
        return
    t = Table(title="datasets", title_justify="left")
    for col in ("dataset", "name", "format", "rows", "tokens", "size", "uploaded"):
        t.add_column(col, no_wrap=col == "dataset")
    for d in found:
        t.add_row(
            d.ref,
            escape(d.name),
            d.format,
            f"{d.rows:,}",
            f"{d.tokens:,}" if d.tokens is not None else "-",
            megabytes(d.size),
            when(d.created_at),
        )
    out.print(t)


@app.command("show")
def show(dataset: str = typer.Argument(..., help="dataset:sha256:<hex> or sha256:<hex>.")) -> None:
    from anytune.cli.target import cli_client

    d = cli_client().dataset(dataset)
    print_json({**d.model_dump(mode="json"), "ref": d.ref})


@app.command("delete")
def delete(dataset: str = typer.Argument(..., help="dataset:sha256:<hex> or sha256:<hex>.")) -> None:
    """Forget a dataset (refused while a job that has not ended reads it)."""
    from anytune.cli.target import cli_client

    cli_client().delete_dataset(dataset)
    out.print(f"deleted {escape(dataset)}")
