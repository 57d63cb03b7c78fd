"""`anytune eval` and `anytune report`: score any models on the same data, and draw the picture."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from anytune.cli.console import StageProgress, err, out, print_json
from anytune.formatting import is_fraction
from anytune.formatting import metric as show
from anytune.paths import resolved

if TYPE_CHECKING:
    from anytune.client import Client
    from anytune.evaluation.runner import EvalResult


def eval_table(result: EvalResult) -> Table:
    """Each subject's score with its 95% interval; against the first subject, the paired change."""
    t = Table(
        title=f"held-out evaluation ({result.n} examples, {Path(result.dataset_path).name})",
        title_justify="left",
    )
    t.add_column("metric")
    for s in result.subjects:
        t.add_column(escape(s.subject), justify="right")
    others = result.subjects[1:]
    for o in others:
        t.add_column(f"change ({escape(o.subject)})" if len(others) > 1 else "change", justify="right")
    for metric in result.subjects[0].metrics:
        row = [metric]
        for s in result.subjects:
            low, high = s.ci.get(metric, (s.metrics[metric], s.metrics[metric]))
            row.append(
                f"{show(metric, s.metrics[metric])} [dim]\\[{show(metric, low)}, {show(metric, high)}][/]"
            )
        for o in others:
            c = next((c for c in result.comparisons if c.metric == metric and c.b == o.subject), None)
            if c is None:
                row.append("-")
                continue
            better = c.delta > 0 if is_fraction(metric) else c.delta < 0
            color = "dim" if c.delta == 0 else "green" if better else "red"
            mark = " *" if c.significant else ""
            wins = f" [dim]won {c.win_rate:.0%}[/]" if c.win_rate is not None else ""
            interval = f"\\[{show(metric, c.low, True)}, {show(metric, c.high, True)}]"
            row.append(f"[{color}]{show(metric, c.delta, True)}{mark}[/] [dim]{interval}[/]{wins}")
        t.add_row(*row)
    for c in (c for c in result.comparisons if c.metric == "judge"):
        cells = ["judge"] + ["" for _ in result.subjects]
        for o in others:
            cells.append(
                f"{c.delta:+.2f} [dim]\\[{c.low:+.2f}, {c.high:+.2f}] {c.wins}/{c.ties}/{c.losses}[/]"
                if c.b == o.subject
                else ""
            )
        t.add_row(*cells)
    if others:
        t.caption = (
            "[dim]\\[low, high]: 95% bootstrap interval; change: paired bootstrap, * = interval excludes 0; "
            "won: share of decided examples[/]"
        )
    return t


def print_eval(result: EvalResult, examples: int = 3) -> None:
    out.print(eval_table(result))
    for ex in result.examples[:examples]:
        preds = "  ".join(
            f"[dim]{escape(s.subject)}:[/] {escape(repr(ex.get(s.subject, '')))}" for s in result.subjects
        )
        out.print(
            f"  [dim]prompt:[/] {escape(repr(ex['prompt']))}  [dim]want:[/] {escape(repr(ex['reference']))}  {preds}"
        )


def evaluate_job(client: Client, job_id: str) -> EvalResult:
    with StageProgress("evaluating") as progress:
        result = client.evaluate(job_id, on_progress=progress)
    print_eval(result)
    return result


def eval_command(
    targets: list[str] = typer.Argument(
        ..., help="Jobs (job-...) or models (NAME, NAME@VERSION, NAME@ALIAS)."
    ),
    data: Path | None = typer.Option(
        None, "--data", "-d", help="Evaluation file (default: the job's test data)."
    ),
    metrics: str | None = typer.Option(
        None, "--metrics", "-m", help="Comma-separated metrics (default: the job's)."
    ),
    base: bool = typer.Option(True, "--base/--no-base", help="Also score the first model's base model."),
    limit: int | None = typer.Option(None, "--limit", help="Score only the first N examples."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens"),
    against: str | None = typer.Option(
        None, "--against", help="Drift check: compare with a stored evaluation ('baseline' = the first one)."
    ),
    alpha: float = typer.Option(0.05, "--alpha", help="Drift check: significance level."),
    tolerance: float = typer.Option(
        0.0, "--tolerance", help="Drift check: drops smaller than this are not drift."
    ),
    fail_on_drift: bool = typer.Option(False, "--fail-on-drift", help="Exit 1 when drift is found (for CI)."),
    judge: str | None = typer.Option(
        None,
        "--judge",
        help="A model that judges each pair of answers: NAME@VERSION, a job id, or provider:model.",
    ),
    graders: list[Path] = typer.Option(
        [],
        "--grader",
        "-g",
        help="A grader file (or a job file with one) scored as a metric named after the file; repeatable. "
        "With no --metrics, the graders are the only metrics.",
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Score models from any provider on the same held-out data, each through its own backend.

    Scores come with 95% bootstrap intervals; against the base model (or the first model), a paired
    difference and a win rate. Everything is stored with the data's fingerprint for reports and drift checks.
    """
    from anytune.cli.target import cli_client

    client = cli_client()
    changes: dict[str, object] = {"compare_base": base and against is None}
    if data is not None:
        changes["data"] = str(resolved(data))
    if metrics:
        changes["metrics"] = [m.strip() for m in metrics.split(",") if m.strip()]
    if graders:
        changes.update(_grader_metrics(graders, list(changes.get("metrics") or [])))  # type: ignore[call-overload]
    if limit is not None:
        changes["limit"] = limit
    if max_new_tokens is not None:
        changes["max_new_tokens"] = max_new_tokens
    if judge is not None:
        changes["judge"] = judge
    with StageProgress("evaluating") as progress:
        result = client.evaluate_targets(targets, changes=changes, on_progress=progress)
    if against is not None:
        _drift(client, targets[0], result, against, alpha, tolerance, fail_on_drift, as_json)
        return
    if as_json:
        print_json(result.model_dump(mode="json", exclude={"references"}))
        return
    print_eval(result)
    out.print(f"[dim]stored; `anytune report {' '.join(targets)}` draws it[/]")


def _grader_metrics(files: list[Path], metrics: list[str]) -> dict[str, object]:
    """`--grader FILE ...` as EvalSpec changes: each grader under its file's name (`grader_` before it where
    that is a built-in metric's name)."""
    from anytune.evaluation.metrics import BUILTIN_METRICS
    from anytune.graders.files import load_grader_file
    from anytune.graders.spec import inline_sources

    graders: dict[str, object] = {}
    for path in files:
        name = path.stem if path.stem not in BUILTIN_METRICS else f"grader_{path.stem}"
        if name in graders or name in metrics:
            raise typer.BadParameter(f"two metrics would be named {name!r}: rename one grader file")
        grader = inline_sources(load_grader_file(path))  # a server may score it: its Python goes as source
        graders[name] = grader.model_dump(mode="json", exclude_none=True)
        metrics.append(name)
    return {"metrics": metrics, "graders": graders}


def _drift(
    client: Client,
    target: str,
    result: EvalResult,
    against: str,
    alpha: float,
    tolerance: float,
    fail_on_drift: bool,
    as_json: bool,
) -> None:
    from anytune.workflows.drift import drift_check

    report = drift_check(client, client.resolve_target(target), result, against, alpha, tolerance)
    if as_json:
        print_json(report.model_dump(mode="json"))
    else:
        test, name = report.test, report.metric
        color = "red" if test.drifted else "green"
        out.print(
            f"[bold]{escape(name)}[/]: baseline {show(name, test.baseline_mean)} (n={test.baseline_n}, "
            f"{escape(report.baseline_data)}) → new {show(name, test.new_mean)} (n={test.new_n}, "
            f"{escape(report.new_data)}), change {show(name, test.delta, signed=True)}"
        )
        out.print(f"[dim]{escape(report.statement)}[/]")
        out.print(f"[bold {color}]{escape(report.verdict)}[/]")
    if fail_on_drift and report.test.drifted:
        raise typer.Exit(1)


def report_command(
    targets: list[str] = typer.Argument(
        ..., help="Jobs or models; with several, they are compared side by side."
    ),
    out_dir: Path | None = typer.Option(
        None, "--out", "-o", help="Folder for report.html, report.md and plots."
    ),
) -> None:
    """Write an HTML and a Markdown report with plots: loss curves, scores with intervals against the base
    model, cost against quality across providers, and a per-example diff table."""
    from anytune.cli.target import cli_client

    written = cli_client().report(targets, out_dir)
    out.print(f"report: {written.html}")
    out.print(f"        {written.markdown}")
    for image in written.images:
        out.print(f"        [dim]{image}[/]")
    for warning in written.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}")
