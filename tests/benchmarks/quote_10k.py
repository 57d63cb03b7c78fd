"""Benchmark: `anytune quote --providers all` on a 10,000-example chat data set (the goal: under 5 s on 2 cores).

    .venv/bin/python tests/benchmarks/quote_10k.py [--examples 10000]

It writes the data set into a temporary folder, runs the real CLI in a fresh process (start-up included, as
a user would feel it) three times, and prints the wall time of each run, the rows and their token counts.
Beside it, in the same process, the same data is validated alone (`anytune validate`): the baseline the
quote's own overhead is measured against.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_data(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(5000)
    ]
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(n):
            row = {
                "messages": [
                    {"role": "system", "content": "You answer briefly."},
                    {"role": "user", "content": " ".join(rng.choices(words, k=rng.randint(5, 120)))},
                    {"role": "assistant", "content": " ".join(rng.choices(words, k=rng.randint(5, 200)))},
                ]
            }
            fh.write(json.dumps(row) + "\n")


def run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "anytune", *args], env=env, capture_output=True, text=True, check=True
    )
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_data(folder / "train.jsonl", opts.examples)
        (folder / "job.yaml").write_text(
            "name: bench\nbase_model: meta-llama/Meta-Llama-3.1-8B-Instruct-Reference\n"
            "provider_options:\n  openai: {base_model: gpt-4o-mini}\n"
            "  local: {base_model: HuggingFaceTB/SmolLM2-135M-Instruct}\n"
            "data: {train: train.jsonl}\nhyperparameters: {epochs: 2}\n"
        )
        env = dict(os.environ, ANYTUNE_HOME=str(folder / "home"), ANYTUNE_TODAY="2026-11-28", COLUMNS="200")
        size = (folder / "train.jsonl").stat().st_size
        print(f"{opts.examples:,} chat examples, {size / 1e6:.1f} MB, {os.cpu_count()} CPU cores")
        baseline = [run(["validate", str(folder / "train.jsonl")], env)[0] for _ in range(opts.repeat)]
        times, out = [], ""
        for _ in range(opts.repeat):
            seconds, out = run(["quote", str(folder / "job.yaml"), "--providers", "all", "--json"], env)
            times.append(seconds)
        rows = json.loads(out)["quotes"]
        print(f"anytune validate (baseline): {', '.join(f'{t:.2f}' for t in baseline)} s")
        median, ratio = statistics.median(times), statistics.median(times) / statistics.median(baseline)
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(f"anytune quote --providers all: {runs} s (median {median:.2f} s, {ratio:.1f}x validate)")
        for r in rows:
            label = r["provider"] + (f" ({r['hardware']})" if r["hardware"] else "")
            tokens = f"{r['billable_tokens']:,}" if r["billable_tokens"] is not None else "-"
            price = f"{r['price']:.2f}" if r["price"] is not None else "-"
            print(
                f"  {label:<20} {tokens:>12} tokens  {price:>8} USD  counted with {r['token_counter'] or '-'}"
            )
        verdict = "met" if median < 5 else "NOT met"
        print(f"goal (< 5 s): {verdict}")


if __name__ == "__main__":
    main()
