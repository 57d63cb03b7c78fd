"""`anytune validate` and `anytune data convert|split|stats`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from anytune.cli.console import err, out, print_json

if TYPE_CHECKING:
    from anytune.data.stats import DataStats
    from anytune.data.validate import Issue, ValidationReport

app = typer.Typer(help="Inspect, convert and split data sets.", no_args_is_help=True)

FORMAT_HELP = "chat, instruction, completion, text, preference or openai_preference (default: detect)"
TOKENIZER_HELP = (
    "Count tokens with a tokenizer folder/tokenizer.json or tiktoken:<encoding> (default: estimate)"
)


def _format(value: str | None):  # type: ignore[no-untyped-def]
    if value is None:
        return None
    from anytune.data.formats import parse_format
    from anytune.errors import UsageError

    try:
        return parse_format(value)
    except ValueError:
        raise UsageError(f"unknown format {value!r}", hint=f"use one of: {FORMAT_HELP}") from None


def _run_validation(
    file: Path, fmt: str | None, tokenizer: str | None, max_length: int | None, max_errors: int, show: bool
) -> ValidationReport:
    from anytune.data.tokens import get_token_counter
    from anytune.data.validate import validate_file

    shown = {"n": 0}

    def on_issue(issue: Issue) -> None:
        if not show:
            return
        if max_errors and shown["n"] >= max_errors:
            return
        shown["n"] += 1
        colour = "red" if issue.severity == "error" else "yellow"
        where = f"{issue.path}:{issue.line}" if issue.line is not None else issue.path
        field = f" [bold]{escape(issue.field)}[/]:" if issue.field else ""
        hint = f" [dim]— {escape(issue.hint)}[/]" if issue.hint else ""
        err.print(f"[{colour}]{issue.severity}[/] {escape(where)}:{field} {escape(issue.message)}{hint}")

    report = validate_file(
        file,
        format=_format(fmt),
        token_counter=get_token_counter(tokenizer),
        max_seq_length=max_length,
        on_issue=on_issue,
    )
    hidden = report.errors + report.warnings - shown["n"]
    if show and hidden > 0:
        err.print(f"[dim]... {hidden} more issue(s) not shown (use --max-errors 0 to show all)[/]")
    return report


def stats_table(stats: DataStats) -> Table:
    t = Table(title=f"{stats.format.value} data", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("rows", f"{stats.rows:,}")
    estimate = " (estimate)" if stats.tokens_estimated else ""
    t.add_row("tokens", f"{stats.tokens_total:,}{estimate} [dim]{escape(stats.tokenizer)}[/]")
    if stats.lengths:
        ln = stats.lengths
        t.add_row(
            "tokens per row",
            f"min {ln.min}  mean {ln.mean:g}  p50 {ln.p50}  p90 {ln.p90}  p99 {ln.p99}  max {ln.max}",
        )
    if stats.max_seq_length is not None:
        lines = ", ".join(map(str, stats.over_max_lines[:5]))
        t.add_row(
            f"over {stats.max_seq_length} tokens",
            f"{stats.rows_over_max:,}" + (f" (lines {lines})" if lines else ""),
        )
    dup = ", ".join(f"{a}={b}" for a, b in stats.duplicate_lines[:5])
    t.add_row("duplicates", f"{stats.duplicates:,}" + (f" (line=first copy: {dup})" if dup else ""))
    if stats.roles:
        t.add_row("messages by role", "  ".join(f"{r} {n:,}" for r, n in sorted(stats.roles.items())))
    if stats.turns:
        t.add_row(
            "messages per row", f"min {stats.turns.min}  mean {stats.turns.mean:g}  max {stats.turns.max}"
        )
        t.add_row("with system prompt", f"{stats.with_system_prompt:,}")
    if stats.labels:
        top = "  ".join(f"{escape(k)!s}: {v:,}" for k, v in list(stats.labels.items())[:8])
        t.add_row("labels", top)
        t.add_row("label imbalance", f"{stats.label_imbalance:g}x (most / least common)")
    return t


def validate(
    file: Path = typer.Argument(..., help="A JSONL, CSV or Parquet data file."),
    format: str | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
    tokenizer: str | None = typer.Option(None, "--tokenizer", "-t", help=TOKENIZER_HELP),
    max_length: int | None = typer.Option(
        None, "--max-length", help="Flag rows longer than this many tokens."
    ),
    max_errors: int = typer.Option(200, "--max-errors", help="Show at most this many issues (0: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check a data file line by line; print every problem with its line and field, then statistics.

    Exits 0 when the file is valid, 1 when any record is broken.
    """
    report = _run_validation(file, format, tokenizer, max_length, max_errors, show=not as_json)
    if as_json:
        print_json(report.model_dump(mode="json"))
    else:
        if report.stats and report.valid:
            out.print(stats_table(report.stats))
        fmt = report.format.value if report.format else "unknown-format"
        if report.ok:
            warn = f", {report.warnings:,} warning(s)" if report.warnings else ""
            out.print(f"[green]✓[/] {escape(str(file))}: {report.valid:,} valid {fmt} records{warn}")
            if report.fingerprint:
                out.print(f"[dim]fingerprint {report.fingerprint}[/]")
        else:
            err.print(
                f"[red]✗[/] {escape(str(file))}: {report.errors:,} error(s) in {report.records:,} {fmt} records "
                f"({report.valid:,} valid)"
            )
    if not report.ok:
        raise typer.Exit(1)


@app.command("stats")
def stats(
    file: Path = typer.Argument(..., help="A JSONL, CSV or Parquet data file."),
    format: str | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
    tokenizer: str | None = typer.Option(None, "--tokenizer", "-t", help=TOKENIZER_HELP),
    max_length: int | None = typer.Option(
        None, "--max-length", help="Count rows longer than this many tokens."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Rows, tokens, length percentiles, duplicates, role and label balance of the valid records."""
    report = _run_validation(file, format, tokenizer, max_length, 0, show=False)
    if report.stats is None or not report.valid:
        from anytune.data.validate import require_valid

        require_valid(report)
    assert report.stats is not None
    if as_json:
        print_json({**report.stats.model_dump(mode="json"), "invalid_records": report.records - report.valid})
        return
    out.print(stats_table(report.stats))
    if report.errors:
        err.print(
            f"[yellow]{report.errors:,} broken record(s) left out; `anytune validate {escape(str(file))}` lists them[/]"
        )


@app.command("convert")
def convert(
    file: Path = typer.Argument(..., help="The data file to convert."),
    to: str = typer.Option(
        ..., "--to", help="Target format: chat, instruction, completion, text, preference, openai_preference."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Output JSONL (default: <file>.<format>.jsonl)."
    ),
    format: str | None = typer.Option(None, "--format", "-f", help="Source format: " + FORMAT_HELP),
) -> None:
    """Convert a data file to another format (all or nothing: a record that cannot convert stops it)."""
    from anytune.data.convert import convert_file

    target_fmt = _format(to)
    output = output or file.with_name(f"{file.stem}.{target_fmt.value}.jsonl")
    report = convert_file(file, output, target_fmt, source_format=_format(format))
    out.print(
        f"[green]✓[/] {report.rows:,} records converted from {report.source_format.value} to "
        f"{report.target_format.value}: {escape(str(output))}"
    )


@app.command("split")
def split(
    file: Path = typer.Argument(..., help="The data file to split."),
    out_dir: Path = typer.Option(
        ..., "--out", "-o", help="Folder for train.jsonl, validation.jsonl, test.jsonl."
    ),
    validation: float = typer.Option(
        0.1, "--validation", min=0.0, max=0.9, help="Share of rows for validation."
    ),
    test: float = typer.Option(0.1, "--test", min=0.0, max=0.9, help="Share of rows for test."),
    seed: int = typer.Option(42, "--seed", help="Same file and seed, same split."),
    format: str | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
) -> None:
    """Split deterministically, keeping each prompt on one side (no leakage), and check the result."""
    from anytune.data.split import split_file
    from anytune.errors import UsageError

    if validation + test >= 1:
        raise UsageError("--validation and --test must leave some rows for training")
    ratios = {"train": 1 - validation - test, "validation": validation, "test": test}
    report = split_file(file, out_dir, ratios, seed=seed, format=_format(format))
    t = Table(
        title=f"split of {file.name} (seed {seed}, {report.groups:,} distinct prompts)", title_justify="left"
    )
    t.add_column("split")
    t.add_column("rows", justify="right")
    t.add_column("file")
    for name, count in report.counts.items():
        t.add_row(name, f"{count:,}", escape(report.paths[name]))
    out.print(t)
    for leak in report.leakage:
        mark = "[red]✗ leak[/]" if leak.leaked else "[green]✓ no leakage[/]"
        out.print(
            f"{mark}: {leak.shared_prompts} of {leak.other_rows} rows of {Path(leak.other).name} share a prompt with train"
        )
    if any(leak.leaked for leak in report.leakage):
        raise typer.Exit(1)
