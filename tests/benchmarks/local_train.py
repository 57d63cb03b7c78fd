"""Benchmark: the same model, data (mixed lengths) and LoRA config trained three ways, in one run.

    .venv/bin/python tests/benchmarks/local_train.py [--steps 30] [--size mid|tiny]

1. a plain TRL SFTTrainer script, as a user would write it;
2. a plain transformers Trainer + peft script (own tokenization and padding collator);
3. anytune's local backend (`anytune run` path: a worker process), and the same with length-grouped batches.

Each runs in its own fresh process. Printed per run: tokens/s (non-padding tokens trained / training time),
peak RSS of the training process, final loss, and the largest per-step loss difference from the TRL run (same
data order, same seed: the curves should coincide). Ratios are against the plain scripts, run in the same
invocation on the same machine. The table goes into docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LORA = {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"}


def make_rows(n: int, seed: int = 0) -> list[dict]:
    """Reverse the letters of made-up words of 2 to 60 letters: prompt and answer lengths vary ~30x."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        k = rng.choice([2, 3, 4, 6, 8, 12, 20, 30, 45, 60])
        letters = [rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(k)]
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": "Reverse: " + " ".join(letters)},
                    {"role": "assistant", "content": "Reversed: " + " ".join(reversed(letters))},
                ]
            }
        )
    return rows


def build_model(folder: Path, size: str) -> Path:
    """The tiny test model, or a mid-size one (h512, 8 layers, 32M parameters) with the same tokenizer."""
    from anytune_local.tiny import build_scaled_model, build_tiny_model

    tiny = build_tiny_model(folder / "tiny")
    if size == "tiny":
        return tiny
    return build_scaled_model(folder / "mid", hidden=512, layers=8, heads=8, kv_heads=4, tokenizer_from=tiny)


def _rows_prompt_completion(rows: list[dict]) -> list[dict]:
    return [{"prompt": r["messages"][:1], "completion": r["messages"][1:]} for r in rows]


def run_trl(model_dir: str, data: str, steps: int, batch: int) -> dict:
    """What the TRL docs show: SFTTrainer with a LoraConfig, CPU-safe flags."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    rows = _rows_prompt_completion([json.loads(x) for x in Path(data).read_text().splitlines()])
    cfg = SFTConfig(
        output_dir=tempfile.mkdtemp(),
        max_steps=steps,
        per_device_train_batch_size=batch,
        learning_rate=3e-3,
        lr_scheduler_type="linear",
        max_length=256,
        bf16=False,
        use_cpu=True,
        gradient_checkpointing=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=42,
        data_seed=42,
        dataloader_pin_memory=False,
        disable_tqdm=True,
    )
    peft = LoraConfig(
        r=LORA["r"],
        lora_alpha=LORA["alpha"],
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    trainer = SFTTrainer(
        model=model, args=cfg, train_dataset=Dataset.from_list(rows), processing_class=tok, peft_config=peft
    )
    out = trainer.train()
    hist = trainer.state.log_history
    tokens = next(h["num_tokens"] for h in reversed(hist) if "num_tokens" in h)
    return {
        "runtime": out.metrics["train_runtime"],
        "tokens": tokens,
        "losses": [h["loss"] for h in hist if "loss" in h],
    }


def run_trainer(model_dir: str, data: str, steps: int, batch: int) -> dict:
    """A plain transformers Trainer + peft script: the user tokenizes with the chat template and masks the prompt."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, set_seed

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    set_seed(42)
    model = get_peft_model(
        model,
        LoraConfig(
            r=LORA["r"],
            lora_alpha=LORA["alpha"],
            lora_dropout=0.0,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        ),
    )
    feats = []
    for r in _rows_prompt_completion([json.loads(x) for x in Path(data).read_text().splitlines()]):
        p = tok(
            tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True),
            add_special_tokens=False,
        )["input_ids"]
        f = tok(
            tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=False), add_special_tokens=False
        )["input_ids"]
        feats.append({"input_ids": f[:256], "labels": ([-100] * len(p) + f[len(p) :])[:256]})

    def collate(batch_rows: list[dict]) -> dict:
        n = max(len(b["input_ids"]) for b in batch_rows)
        return {
            "input_ids": torch.tensor(
                [b["input_ids"] + [tok.pad_token_id] * (n - len(b["input_ids"])) for b in batch_rows]
            ),
            "labels": torch.tensor([b["labels"] + [-100] * (n - len(b["labels"])) for b in batch_rows]),
            "attention_mask": torch.tensor(
                [[1] * len(b["input_ids"]) + [0] * (n - len(b["input_ids"])) for b in batch_rows]
            ),
        }

    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        max_steps=steps,
        per_device_train_batch_size=batch,
        learning_rate=3e-3,
        lr_scheduler_type="linear",
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=42,
        data_seed=42,
        remove_unused_columns=False,
        dataloader_pin_memory=False,
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
    )
    trainer = Trainer(model=model, args=args, train_dataset=feats, data_collator=collate)
    out = trainer.train()
    tokens = next(
        h["num_input_tokens_seen"]
        for h in reversed(trainer.state.log_history)
        if "num_input_tokens_seen" in h
    )
    return {
        "runtime": out.metrics["train_runtime"],
        "tokens": tokens,
        "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
    }


def run_anytune(model_dir: str, data: str, steps: int, batch: int, group: bool) -> dict:
    from anytune.client import Client
    from anytune.spec import JobSpec

    spec = JobSpec.model_validate(
        {
            "name": "bench",
            "base_model": model_dir,
            "provider": "local",
            "adapter": {"type": "lora", **LORA},
            "data": {"train": data},
            "hyperparameters": {
                "max_steps": steps,
                "batch_size": batch,
                "learning_rate": 3e-3,
                "lr_scheduler": "linear",
                "max_seq_length": 256,
                "seed": 42,
            },
            "provider_options": {
                "local": {"logging_steps": 1, "checkpoint_steps": 0, "group_by_length": group}
            },
        }
    )
    client = Client()
    job = client.follow(client.submit(spec).id, interval=0.5, timeout=3600)
    assert job.status.value == "succeeded", job.error
    metrics = job.artifact.metrics
    losses = [e.data["loss"] for e in client.registry.events(job.id, kind="metric") if "loss" in e.data]
    runtime = metrics["train_runtime"]
    return {
        "runtime": runtime,
        "tokens": metrics["train_tokens_per_second"] * runtime,
        "losses": losses,
        "rss_mb": job.artifact.metadata.get("peak_rss_mb"),
    }


def child(mode: str, model_dir: str, data: str, steps: int, batch: int) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if mode == "trl":
        out = run_trl(model_dir, data, steps, batch)
    elif mode == "trainer":
        out = run_trainer(model_dir, data, steps, batch)
    else:
        out = run_anytune(model_dir, data, steps, batch, group=mode == "anytune-grouped")
    out.setdefault("rss_mb", round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
    print("RESULT " + json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", choices=["tiny", "mid"], default="mid")
    parser.add_argument(
        "--model", help="a model folder to use instead (e.g. SmolLM2's, cached by the quick start)"
    )
    parser.add_argument("--mode")
    parser.add_argument("--model-dir")
    parser.add_argument("--data")
    opts = parser.parse_args()
    if opts.mode:
        child(opts.mode, opts.model_dir, opts.data, opts.steps, opts.batch)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = dict(
            os.environ, ANYTUNE_HOME=str(folder / "home"), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false"
        )
        os.environ.update(env)
        model_dir = Path(opts.model) if opts.model else build_model(folder, opts.size)
        data = folder / "train.jsonl"
        data.write_text("\n".join(json.dumps(r) for r in make_rows(400)) + "\n")
        results = {}
        for mode in ("trl", "trainer", "anytune", "anytune-grouped"):
            started = time.perf_counter()
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--mode",
                    mode,
                    "--model-dir",
                    str(model_dir),
                    "--data",
                    str(data),
                    "--steps",
                    str(opts.steps),
                    "--batch",
                    str(opts.batch),
                ],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"{mode} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            results[mode] = {**json.loads(line[7:]), "wall": time.perf_counter() - started}
        base = results["trl"]["losses"]
        if os.environ.get("BENCH_DEBUG"):
            for mode, r in results.items():
                print(mode, [round(x, 4) for x in r["losses"][:6]], r.get("rss_mb"), r["tokens"])
        print(
            f"{opts.model or opts.size} model, {opts.steps} steps of batch {opts.batch}, "
            f"LoRA r={LORA['r']} all-linear, "
            f"400 chat rows of mixed length, {os.cpu_count()} CPU cores"
        )
        heads = [
            "run",
            "tokens/s",
            "vs TRL",
            "vs Trainer",
            "train time",
            "process wall",
            "peak RSS",
            "final loss",
        ]
        print("| " + " | ".join([*heads, "max loss diff vs TRL"]) + " |")
        print("|---|---|---|---|---|---|---|---|---|")
        tps = {m: r["tokens"] / r["runtime"] for m, r in results.items()}
        for mode, r in results.items():
            diff = max((abs(a - b) for a, b in zip(r["losses"], base, strict=False)), default=0.0)
            print(
                f"| {mode} | {tps[mode]:,.0f} | {tps[mode] / tps['trl']:.2f}x | {tps[mode] / tps['trainer']:.2f}x | "
                f"{r['runtime']:.1f} s | {r['wall']:.1f} s | {r['rss_mb'] or 0:.0f} MB | {r['losses'][-1]:.4f} | "
                f"{diff:.4f} |"
            )


if __name__ == "__main__":
    main()
