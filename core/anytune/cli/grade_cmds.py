"""`anytune grade`: score answers with a grader here, as every provider's RFT job would score them."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from anytune.cli.console import err, out, print_json


def grade(
    grader_file: Path = typer.Argument(..., help="A grader file, or a job file whose grader is read."),
    data: Path = typer.Option(
        ..., "--data", help="The data items, one per line (JSONL, CSV, Parquet): the fields the grader reads."
    ),
    samples: Path | None = typer.Option(
        None,
        "--samples",
        help="The answers, one per line in the data's order: a JSON string or {output_text: ...}. "
        "Default: each data line's own answer (its last assistant message), which should score 1.",
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Grade only the first N lines."),
    show: int = typer.Option(10, "--show", min=0, help="How many lines to print."),
    as_json: bool = typer.Option(False, "--json", help="Print every line's scores as JSON."),
) -> None:
    """Score answers with a grader, line by line, with the mean and its 95% interval.

    Exits 2 when the grader is invalid, reads a field a line does not have, or fails on a line (the line is
    named): the same checks a job with this grader passes before anything is uploaded.
    """
    from anytune.graders.batch import grade_file
    from anytune.graders.files import load_grader_file
    from anytune.graders.scoring import Grader

    spec = load_grader_file(grader_file)
    with Grader(spec, base_dir=grader_file.resolve().parent) as grader:
        result = grade_file(
            grader,
            data,
            samples,
            limit=limit,
            on_progress=lambda n, mean: err.print(f"[dim]graded {n} lines, mean {mean:.3f} so far[/]"),
        )
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    names = list(result.parts)
    t = Table(title=f"graded {result.n} lines of {escape(data.name)}", title_justify="left")
    t.add_column("line", justify="right")
    t.add_column("score", justify="right")
    for name in names:
        t.add_column(escape(name), justify="right")
    t.add_column("answer", overflow="ellipsis", max_width=60, no_wrap=True)
    for g in result.lines[:show]:
        t.add_row(str(g.line), f"{g.score:.3f}", *(f"{g.parts[n]:.3f}" for n in names), escape(g.answer))
    out.print(t)
    low, high = result.ci
    parts = "".join(f", {escape(n)} {v:.3f}" for n, v in result.parts.items())
    out.print(f"mean score {result.mean:.3f} [dim]\\[{low:.3f}, {high:.3f}] over {result.n} lines{parts}[/]")
