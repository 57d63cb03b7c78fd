"""`anytune run` and `anytune jobs list|show|logs|cancel`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from anytune.api import RunObserver
from anytune.cli.console import (
    StageProgress,
    duration,
    err,
    metric,
    money,
    out,
    plain_every,
    print_json,
    share,
    status_text,
    when,
)

if TYPE_CHECKING:
    from anytune.api import Preflight
    from anytune.client import Client
    from anytune.jobs import Event, Job

app = typer.Typer(help="List, inspect, follow and cancel jobs.", no_args_is_help=True)


def _client() -> Client:
    from anytune.cli.target import cli_client

    return cli_client()  # type: ignore[no-any-return]


def _event_line(ev: Event) -> str | None:
    """How an event reads in a log; metric events become one compact line."""
    if ev.kind.value == "metric":
        keys = ("loss", "eval_loss", "learning_rate", "mean_token_accuracy", "train_loss")
        parts = [f"{k}={ev.data[k]:.4g}" for k in keys if isinstance(ev.data.get(k), int | float)]
        if not parts:
            return None
        return f"[dim]step {ev.data.get('step', '?')}[/] " + "  ".join(parts)
    colour = {"warning": "yellow", "error": "red"}.get(ev.level, "")
    text = escape(ev.message)
    return f"[{colour}]{text}[/]" if colour else text


def _preflight_panel(pre: Preflight) -> Panel:
    """What is about to run, on a grid whose values wrap at the terminal's width (never cut off)."""
    spec, q = pre.spec, pre.quote
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("job", f"{escape(spec.display_name())} on [bold]{escape(spec.provider)}[/]")
    grid.add_row("base model", escape(spec.model_for(spec.provider)))
    grid.add_row("method", f"{spec.method.type} with {spec.adapter.type}")
    for name, ref in (
        ("train", pre.data.train),
        ("validation", pre.data.validation),
        ("test", pre.data.test),
    ):
        if ref is not None:
            tokens = (
                f", {ref.tokens:,} tokens{' (est.)' if ref.tokens_estimated else ''}"
                if ref.tokens is not None
                else ""
            )
            grid.add_row(
                name, f"{ref.rows:,} {ref.format.value} rows{tokens}  [dim]{ref.fingerprint[:19]}[/]"
            )
    if q.price is not None:
        tokens = ""
        if q.billable_tokens is not None:
            tokens = f" for {'~' if q.tokens_estimated else ''}{q.billable_tokens:,} billed tokens"
        eta = f", about {duration(q.eta_seconds)}" if q.eta_seconds is not None else ""
        grid.add_row("quote", f"{money(q.price, q.currency)}{tokens}{eta}")
        if q.price_date:
            grid.add_row("", f"[dim]prices seen {q.price_date}[/]")
        for assumption in q.assumptions[:2]:
            grid.add_row("", f"[dim]{escape(assumption)}[/]")
    return Panel(grid, title="job", title_align="left", expand=False)


class _JobDisplay:
    """Draws a followed job: a live bar on a terminal; without one (a log file, CI), its log lines and a
    progress line every so often, so that minutes of training never pass in silence."""

    def __init__(self) -> None:
        self.live = out.is_terminal
        self.every = plain_every()
        self.total: int | None = None
        self.step: int | None = None
        self.started = time.monotonic()
        self._last_line = 0.0
        self._last_status: str | None = None
        self.shown: set[str] = set()  # messages already printed (the preflight's warnings)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[steps]}"),
            TextColumn("{task.fields[loss]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=out,
            transient=False,
            disable=not self.live,
        )
        self.task = self.progress.add_task("", total=None, steps="", loss="")

    def __enter__(self) -> _JobDisplay:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def update(self, j: Job, events: list[Event]) -> None:
        for ev in events:
            line = _event_line(ev)
            if line and ev.kind.value != "metric" and ev.message not in self.shown:
                self.progress.console.print(f"  {line}")
        self.step = next((int(ev.data["step"]) for ev in reversed(events) if "step" in ev.data), self.step)
        total = next((ev.data.get("total_steps") for ev in events if "total_steps" in ev.data), None)
        if total:
            self.total = int(total)
            self.progress.update(self.task, total=self.total)
        loss = j.metrics.get("loss")
        steps = f"{self.step}/{self.total}" if self.step is not None and self.total else ""
        fields: dict[str, Any] = {"steps": steps, "loss": f"loss {loss:.4f}" if loss is not None else ""}
        if self.step is not None and self.total:
            self.progress.update(self.task, completed=self.step)
        if j.status.terminal and j.progress == 1.0 and self.total:
            self.progress.update(self.task, completed=self.total)
        self.progress.update(self.task, description=status_text(j.status.value, j.provider_status), **fields)
        if not self.live:
            self._plain_line(j, steps, fields["loss"])

    def _plain_line(self, j: Job, steps: str, loss: str) -> None:
        now = time.monotonic()
        changed = j.status.value != self._last_status
        if not changed and now - self._last_line < self.every:
            return
        self._last_line, self._last_status = now, j.status.value
        parts = [j.status.value, steps, loss, duration(now - self.started)]
        out.print("  " + "  ".join(p for p in parts if p))


def _follow(client: Client, job: Job) -> Job:
    """Follow a job with a progress display and its log; Ctrl-C detaches (the job keeps running)."""
    try:
        with _JobDisplay() as display:
            return client.follow(job.id, on_update=display.update)
    except KeyboardInterrupt:
        _detached(job.id)
        raise typer.Exit(130) from None


def _detached(job_id: str) -> None:
    err.print(
        f"\n[yellow]detached[/]: job {job_id} keeps running. "
        f"Follow it with `anytune jobs logs -f {job_id}`, stop it with `anytune jobs cancel {job_id}`."
    )


def run(
    job_file: Path = typer.Argument(..., help="A YAML job file."),
    provider: str | None = typer.Option(
        None, "--provider", "-p", help="Run on this provider instead of the file's."
    ),
    overrides: list[str] = typer.Option(
        [], "--set", "-s", help="Override a field: --set hyperparameters.learning_rate=1e-4"
    ),
    detach: bool = typer.Option(False, "--detach", "-d", help="Submit and return without following."),
    evaluate: bool = typer.Option(
        True, "--eval/--no-eval", help="Run the job's evaluation section after success."
    ),
) -> None:
    """Check, submit and follow a fine-tuning job; then evaluate it against its base model.

    Everything is checked before anything starts: the spec against the provider's capabilities, every data
    file line by line, the provider's own data rules, and the quote against budget_usd.
    """
    from anytune.cli.eval_cmds import print_eval
    from anytune.jobfile import load_job_file

    spec = load_job_file(job_file, overrides=overrides, provider=provider)
    client = _client()
    shown = _RunDisplay(client, detach)
    try:
        result = client.run(spec, evaluate=evaluate, detach=detach, observer=shown)
    except KeyboardInterrupt:
        shown.display.__exit__(None, None, None)
        if shown.job is None:
            raise
        _detached(shown.job.id)
        raise typer.Exit(130) from None
    finally:
        shown.close()
    if detach:
        return
    if result.job.status.value != "succeeded":
        raise typer.Exit(1)
    if result.evaluation is not None:
        print_eval(result.evaluation)


class _RunDisplay(RunObserver):
    """`anytune run` drawn stage by stage: the preflight's panel and warnings, the submitted job, a live
    display while it runs, its outcome, then the evaluation's progress (a spinner, or a line every 30 s in a log)."""

    def __init__(self, client: Client, detach: bool) -> None:
        self.client, self.detach = client, detach
        self.display = _JobDisplay()
        self.job: Job | None = None
        self._evaluation: StageProgress | None = None

    def preflight(self, pre: Preflight) -> None:
        out.print(_preflight_panel(pre))
        for warning in pre.warnings:
            err.print(f"[yellow]warning:[/] {escape(warning)}")
        self.display.shown.update(pre.warnings)

    def submitted(self, job: Job) -> None:
        self.job = job
        out.print(f"submitted [bold]{job.id}[/] to {escape(job.provider)}")
        if self.detach:
            out.print(f"follow it with `anytune jobs logs -f {job.id}`")
        else:
            self.display.__enter__()

    def progress(self, job: Job, events: list[Event]) -> None:
        self.display.update(job, events)
        if job.status.terminal:
            self.display.__exit__(None, None, None)
            _print_outcome(self.client, job)

    def evaluating(self, stage: str) -> None:
        if self._evaluation is None:
            self._evaluation = StageProgress("evaluating").__enter__()
        self._evaluation(stage)

    def close(self) -> None:
        if self._evaluation is not None:
            self._evaluation.__exit__(None, None, None)


def _print_outcome(client: Client, job: Job) -> None:
    if job.status.value != "succeeded":
        err.print(
            f"[red]✗[/] job {job.id} {job.status.value}" + (f": {escape(job.error)}" if job.error else "")
        )
        return
    models = client.models_for_job(job.id)
    first = job.artifact.metrics.get("first_loss") if job.artifact else None
    last = job.metrics.get("loss")
    loss = f" (loss {first:.3f} → {last:.3f})" if first is not None and last is not None else ""
    out.print(f"[green]✓[/] job {job.id} succeeded in {duration(job.duration_s)}{loss}")
    if models:
        out.print(f"  model registered as [bold]{escape(models[-1].ref)}[/]: {escape(models[-1].model_id)}")


# ------------------------------------------------------------------------------------------- jobs ...


JOB_COLUMNS = ("id", "name", "provider", "status", "progress", "created", "duration")
NARROW = 110  # below this many columns the table leaves out `progress` and `created`


def _job_row(j: Job) -> dict[str, str]:
    return {
        "id": j.id,
        "name": escape(j.name),
        "provider": escape(j.provider),
        "status": status_text(j.status.value, j.provider_status),
        "progress": share(j.progress),
        "created": when(j.created_at),
        "duration": duration(j.duration_s),
    }


@app.command("list")
def list_jobs(
    status: str | None = typer.Option(None, "--status", help="Only jobs with this neutral status."),
    provider: str | None = typer.Option(None, "--provider", "-p", help="Only jobs on this provider."),
    limit: int = typer.Option(50, "--limit", "-n", help="At most this many jobs, newest first."),
    refresh: bool = typer.Option(
        True, "--refresh/--no-refresh", help="Ask backends about active jobs first."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Jobs of every provider in one table."""
    client = _client()
    if refresh:
        for j in client.list_jobs(active=True, limit=None):
            try:
                client.refresh(j.id)
            except Exception as exc:  # one unreachable backend must not hide the others' jobs
                err.print(
                    f"[yellow]warning:[/] could not refresh {j.id} on {escape(j.provider)}: {escape(str(exc))}"
                )
    jobs = client.list_jobs(status=status, provider=provider, limit=limit)
    if as_json:
        print_json([j.model_dump(mode="json", exclude={"spec"}) for j in jobs])
        return
    if not jobs:
        out.print("no jobs yet: `anytune run JOB.yaml` starts one")
        return
    t = Table(title="jobs", title_justify="left")
    # ids are never cut: jobs made in the same second share all but their last characters, so a cut id is
    # not one `jobs show` can take. A narrow terminal leaves columns out instead (`jobs show` has them all).
    columns = [c for c in JOB_COLUMNS if out.width >= NARROW or c not in ("progress", "created")]
    for col in columns:
        t.add_column(
            col, no_wrap=col in ("id", "provider"), min_width=len(jobs[0].id) if col == "id" else None
        )
    for j in jobs:
        row = _job_row(j)
        t.add_row(*(row[c] for c in columns))
    out.print(t)


@app.command("show")
def show(
    job_id: str = typer.Argument(..., help="Job id (or a unique prefix), or a job's name (its newest job)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Everything about one job: status, metrics, artifact, cost, models and evaluations."""
    client = _client()
    job = client.refresh(job_id)
    if not job.id.startswith(job_id):
        err.print(f"[dim]{escape(job_id)}: the newest job of that name, {job.id}[/]")
    models = client.models_for_job(job.id)
    evals = client.evaluations(job_id=job.id)
    if as_json:
        print_json(
            {
                **job.model_dump(mode="json"),
                "models": [m.ref for m in models],
                "evaluations": [e.model_dump(mode="json") for e in evals],
            }
        )
        return
    t = Table(show_header=False, title=f"job {job.id}", title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("name", escape(job.name))
    t.add_row(
        "provider",
        escape(job.provider) + (f" [dim]({escape(job.provider_job_id)})[/]" if job.provider_job_id else ""),
    )
    t.add_row("status", status_text(job.status.value, job.provider_status))
    if job.progress is not None:
        t.add_row("progress", share(job.progress))
    t.add_row("base model", escape(job.spec.base_model))
    t.add_row("method", f"{job.spec.method.type} with {job.spec.adapter.type}")
    t.add_row(
        "data",
        escape(job.spec.data.train)
        + (f" [dim]{job.dataset_fingerprint[:19]}[/]" if job.dataset_fingerprint else ""),
    )
    t.add_row("created", when(job.created_at))
    t.add_row("duration", duration(job.duration_s))
    for key in ("loss", "train_loss", "eval_loss", "mean_token_accuracy"):
        if key in job.metrics:
            t.add_row(key, f"{job.metrics[key]:.4f}")
    if job.cost and (job.cost.quoted is not None or job.cost.actual is not None):
        c = job.cost
        parts = [f"quoted {money(c.quoted, c.currency)}"]
        if c.actual is not None:
            diff = c.difference
            parts.append(
                f"actual {money(c.actual, c.currency)}" + (f" ({diff:+.4f})" if diff is not None else "")
            )
        if c.provider_actual is not None:
            parts.append(f"billed by {escape(job.provider)} {money(c.provider_actual, c.currency)}")
        if c.provider_quote is not None:
            parts.append(f"{escape(job.provider)}'s estimate {money(c.provider_quote, c.currency)}")
        if c.trained_tokens is not None:
            parts.append(f"{c.trained_tokens:,} trained tokens")
        t.add_row("cost", ", ".join(parts))
        for r in c.recurring:
            t.add_row("then", f"{escape(r.what)}: {money(r.price, r.currency)} per {r.unit}")
    if job.artifact:
        t.add_row("artifact", f"{job.artifact.kind}: {escape(job.artifact.model_id)}")
    for m in models:
        t.add_row("model", escape(m.ref) + (f" [dim]({', '.join(m.aliases)})[/]" if m.aliases else ""))
    for e in evals:
        scores = "  ".join(f"{k} {metric(k, v)}" for k, v in e.metrics.items())
        t.add_row(f"eval: {e.subject}", f"{scores} [dim](n={e.n})[/]")
    if job.error:
        t.add_row("error", f"[red]{escape(job.error)}[/]")
    out.print(t)


@app.command("logs")
def logs(
    job_id: str = typer.Argument(..., help="Job id (or a unique prefix)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the job ends."),
    metrics: bool = typer.Option(True, "--metrics/--no-metrics", help="Include metric lines (loss...)."),
) -> None:
    """The job's events: status changes, log lines and metrics."""
    client = _client()
    job = client.refresh(job_id)
    last = 0

    def emit(events: list[Event]) -> None:
        for ev in events:
            if ev.kind.value == "metric" and not metrics:
                continue
            line = _event_line(ev)
            if line:
                out.print(f"[dim]{when(ev.time)}[/] {line}")

    while True:
        events = client.events(job.id, after=last)
        emit(events)
        if events:
            last = events[-1].seq
        if not follow or job.status.terminal:
            break
        time.sleep(0.5)
        job = client.refresh(job.id)
    if follow:
        out.print(f"job {job.id}: {status_text(job.status.value, job.provider_status)}")


@app.command("cancel")
def cancel(job_id: str = typer.Argument(..., help="Job id (or a unique prefix).")) -> None:
    """Stop a job. A local job stops at its next training step."""
    client = _client()
    before = client.get_job(job_id)
    if before.status.terminal:
        out.print(f"job {before.id} already {before.status.value}; nothing to cancel")
        return
    with out.status(f"cancelling {before.id}..."):
        job = client.cancel(before.id)
        deadline = time.monotonic() + 60
        while not job.status.terminal and time.monotonic() < deadline:
            time.sleep(0.5)
            job = client.refresh(job.id)
    out.print(f"job {job.id}: {status_text(job.status.value, job.provider_status)}")


@app.command("continue")
def continue_(
    job_id: str = typer.Argument(..., help="A succeeded job (id or unique prefix)."),
    step: int | None = typer.Option(
        None, "--step", help="Start from this checkpoint step (default: the last)."
    ),
    overrides: list[str] = typer.Option(
        [], "--set", "-s", help="Change the new job, e.g. --set data.train=more.jsonl"
    ),
    follow: bool = typer.Option(True, "--follow/--detach", help="Follow the new job."),
) -> None:
    """Train further from a finished job's checkpoint, as a new job (Together: from_checkpoint)."""
    client = _client()
    job = client.continue_job(job_id, step=step, overrides=overrides)
    out.print(f"submitted [bold]{job.id}[/] to {escape(job.provider)}, continuing {job_id}")
    if follow:
        job = _follow(client, job)
        if job.status.value != "succeeded":
            raise typer.Exit(1)


@app.command("migrate")
def migrate(
    job_id: str = typer.Argument(..., help="A finished or failed job (id or unique prefix)."),
    to: str = typer.Option(..., "--to", help="The provider to run it on, e.g. azure-openai."),
    overrides: list[str] = typer.Option(
        [],
        "--set",
        "-s",
        help="Change the new job, e.g. --set provider_options.azure-openai.training_type=developer",
    ),
    follow: bool = typer.Option(True, "--follow/--detach", help="Follow the new job."),
) -> None:
    """Send a job to another provider with its data and evaluation settings, as a new job linked to it
    (e.g. OpenAI to Azure OpenAI, where OpenAI-model fine-tuning goes on after 2027-01-06)."""
    client = _client()
    job = client.migrate(job_id, to, overrides=overrides)
    out.print(f"submitted [bold]{job.id}[/] to {escape(job.provider)}, migrated from {job_id}")
    if follow:
        job = _follow(client, job)
        if job.status.value != "succeeded":
            raise typer.Exit(1)


@app.command("pause")
def pause(job_id: str = typer.Argument(..., help="Job id (or a unique prefix).")) -> None:
    """Pause a running job (on providers that can: OpenAI). `anytune jobs resume` continues it."""
    job = _client().pause(job_id)
    out.print(f"job {job.id}: {status_text(job.status.value, job.provider_status)}")


@app.command("resume")
def resume(
    job_id: str = typer.Argument(..., help="Job id (or a unique prefix)."),
    follow: bool = typer.Option(True, "--follow/--detach", help="Follow the job once it runs again."),
) -> None:
    """Make a job go again: resume a paused job, or finish submitting one recorded before a crash.

    After a crash the backend first looks for the job it may already have created, so this never starts a
    second one.
    """
    client = _client()
    job = client.resume(job_id)
    out.print(f"job {job.id} on {escape(job.provider)}: {status_text(job.status.value, job.provider_status)}")
    if follow and job.status.active:
        job = _follow(client, job)
        if job.status.value != "succeeded":
            raise typer.Exit(1)
