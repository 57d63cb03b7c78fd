"""Which provider gives me this fine-tune for the least money, and how soon? One data set, every provider and
every GPU type, as a table and a plot. Nothing is uploaded or started, and no API key is needed.

    python examples/compare_costs.py [JOB.yaml] [--plot cost.png]

By default it prices the quick start's job (examples/quickstart.yaml) with the model each provider would
train: SmolLM2-135M locally and on rented GPUs, gpt-4o-mini on OpenAI, Qwen2.5-7B on Together, Llama 3.1 8B
on Bedrock (whose Nova models take no learning rate as high as the quick start's). After the quick start has
run once, the local rows use the speed measured on this machine instead of the model. With ANYTUNE_SERVER
set, as for the CLI, the server prices it with its plugins and catalog.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console

import anytune

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", nargs="?", default=str(HERE / "quickstart.yaml"))
    parser.add_argument(
        "--plot", default="compare_costs.png", help="where to draw price and ETA per provider"
    )
    parser.add_argument(
        "--epochs", type=int, help="passes over the data, the same everywhere (default: the job's)"
    )
    args = parser.parse_args()

    spec = anytune.load_job_file(
        args.job,
        overrides=[
            "provider_options.openai.base_model=gpt-4o-mini",
            "provider_options.azure-openai.base_model=gpt-4o-mini",
            "provider_options.together.base_model=Qwen/Qwen2.5-7B-Instruct",
            "provider_options.bedrock.base_model=meta.llama3-1-8b-instruct-v1:0:128k",
            *([f"hyperparameters.epochs={args.epochs}"] if args.epochs else []),
        ],
    )
    server = os.environ.get("ANYTUNE_SERVER", "").strip()  # as the CLI: priced by that server when set
    client = anytune.Client(url=server) if server else None
    table = anytune.quote(spec, providers="all", hardware="all", client=client)
    console = Console()
    console.print(table.rich_table())
    best = table.cheapest()
    if best is not None:
        console.print(f"cheapest: [bold]{best.label}[/] at {best.price:.4f} {best.currency} ({best.model})")
    try:
        console.print(f"plot: {table.plot(args.plot)}")
    except anytune.AnytuneError as exc:  # matplotlib missing: the table is still there
        console.print(f"[yellow]no plot:[/] {exc.message} ({exc.hint})")


if __name__ == "__main__":
    main()
