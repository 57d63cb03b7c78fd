"""`anytune models list|show|promote|pull`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from anytune.cli.console import metric, out, print_json, when
from anytune.errors import NotFoundError

if TYPE_CHECKING:
    from anytune.client import Client

app = typer.Typer(help="Registered models: versions, aliases and lineage.", no_args_is_help=True)


def _client() -> Client:
    from anytune.cli.target import cli_client

    return cli_client()


@app.command("list")
def list_models(
    name: str | None = typer.Argument(None, help="Only versions of this model."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Every registered model version, newest first within each name."""
    models = _client().list_models(name)
    if as_json:
        print_json([m.model_dump(mode="json") for m in models])
        return
    if not models:
        out.print("no models registered yet: a succeeded job registers its model")
        return
    t = Table(title="models", title_justify="left")
    for col in ("model", "aliases", "provider", "kind", "base model", "job", "created"):
        t.add_column(col)
    for m in models:
        t.add_row(
            escape(m.ref),
            ", ".join(m.aliases) or "-",
            escape(m.provider),
            m.kind,
            escape(m.base_model),
            m.job_id or "-",
            when(m.created_at),
        )
    out.print(t)


@app.command("show")
def show(
    ref: str = typer.Argument(..., help="NAME, NAME@VERSION or NAME@ALIAS."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """One model version: how to call it, where it came from, how it scored."""
    client = _client()
    m = client.get_model(ref)
    evals = client.evaluations(model_name=m.name, model_version=m.version)
    if as_json:
        print_json({**m.model_dump(mode="json"), "evaluations": [e.model_dump(mode="json") for e in evals]})
        return
    t = Table(show_header=False, title=f"model {m.ref}", title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("aliases", ", ".join(m.aliases) or "-")
    t.add_row("call with", f"provider {escape(m.provider)}, model {escape(m.model_id)}")
    t.add_row("kind", m.kind + (f" ({m.adapter_type})" if m.adapter_type else ""))
    t.add_row("base model", escape(m.base_model))
    if m.base_model_retires:
        t.add_row("base retires", when(m.base_model_retires))
    t.add_row("job", m.job_id or "-")
    t.add_row("data", m.dataset_fingerprint or "-")
    t.add_row("created", when(m.created_at))
    for key in ("first_loss", "final_loss", "train_loss", "eval_loss"):
        if key in m.metrics:
            t.add_row(key, f"{m.metrics[key]:.4f}")
    for e in evals:
        scores = "  ".join(f"{k} {metric(k, v)}" for k, v in e.metrics.items())
        t.add_row("evaluation", f"{scores} [dim](n={e.n}, {e.dataset_fingerprint[:19]})[/]")
    out.print(t)


@app.command("promote")
def promote(
    ref: str = typer.Argument(..., help="NAME@VERSION (or NAME@ALIAS) to point the alias at."),
    alias: str = typer.Option(..., "--alias", "-a", help="e.g. production, candidate."),
) -> None:
    """Point an alias at a version. Versions never change; aliases move (and every process sees the move)."""
    client = _client()
    model = client.get_model(ref)
    before = None
    try:
        before = client.get_model(f"{model.name}@{alias}")
    except NotFoundError:  # the alias is new
        before = None
    client.set_alias(model.name, alias, model.version)
    moved = f" (was {before.ref})" if before is not None and before.version != model.version else ""
    out.print(f"{model.name}@{alias} → {model.ref}{moved}")


@app.command("demote")
def demote(
    name: str = typer.Argument(..., help="Model name."),
    alias: str = typer.Option(..., "--alias", "-a"),
) -> None:
    """Remove an alias (the version it pointed at stays)."""
    _client().remove_alias(name, alias)
    out.print(f"removed {name}@{alias}")


@app.command("pull")
def pull(
    ref: str = typer.Argument(..., help="NAME, NAME@VERSION or NAME@ALIAS."),
    out_dir: Path | None = typer.Option(
        None, "--out", "-o", help="Folder to unpack into (default: $ANYTUNE_HOME/models/NAME/VERSION)."
    ),
) -> None:
    """The model's files (adapter, merged weights, tokenizer) on this machine, from the server (a dropped
    download resumes; the archive's SHA-256 is checked), ready for `anytune serve` or any loader."""
    from anytune.cli.console import TransferBar

    bar = TransferBar("pulling")
    model = _client().pull(ref, out_dir, on_progress=lambda done, total: bar(ref, done, total))
    folder = model.artifact.merged_path or model.artifact.path
    out.print(f"[green]✓[/] {escape(model.ref)} in {escape(str(Path(folder).parent if folder else '-'))}")
    if model.artifact.merged_path:
        out.print(f"  merged weights: {escape(model.artifact.merged_path)}")
    if model.artifact.path and model.artifact.path != model.artifact.merged_path:
        out.print(f"  adapter ({model.artifact.adapter_type or model.kind}): {escape(model.artifact.path)}")
    out.print(f"  serve it: anytune serve {escape(model.ref)}")


@app.command("export-mlflow")
def export_mlflow(
    ref: str = typer.Argument(..., help="NAME, NAME@VERSION or NAME@ALIAS."),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI (default: MLflow's own, e.g. $MLFLOW_TRACKING_URI)."
    ),
    artifacts: str | None = typer.Option(
        None, "--artifacts", help="Where a new experiment keeps its artifacts (MLflow's default: ./mlruns)."
    ),
    experiment: str = typer.Option("anytune", "--experiment"),
) -> None:
    """Log a model version to MLflow (lineage as tags, weights or how to call it as artifacts) and register it
    there with the same aliases."""
    from anytune.cli.target import in_process_only
    from anytune.registry import Registry
    from anytune.registry.mlflow_export import export_to_mlflow

    in_process_only("`anytune models export-mlflow`")
    done = export_to_mlflow(
        Registry(), ref, tracking_uri=tracking_uri, experiment=experiment, artifact_location=artifacts
    )
    out.print(
        f"MLflow: run {done['run_id']}, registered model {escape(done['name'])} version {done['mlflow_version']}"
    )
