"""The GPU runs behind tests/gpu/check.sh: each one a real local-backend training run in this process."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROWS = 512


def build_model(folder: Path) -> Path:
    """A 0.5B Llama (h1536, 16 layers) with the tiny model's tokenizer, saved in bf16."""
    from anytune_local.tiny import build_scaled_model

    return build_scaled_model(
        folder / "llama-0.5b", hidden=1536, layers=16, heads=16, kv_heads=8, dtype="bfloat16"
    )


def data(folder: Path) -> tuple[Path, Path]:
    import random

    rng = random.Random(0)
    chat, pref = folder / "chat.jsonl", folder / "pref.jsonl"
    with chat.open("w") as c, pref.open("w") as p:
        for i in range(ROWS):
            letters = [rng.choice("abcdefghij") for _ in range(rng.choice([4, 16, 64, 200]))]
            c.write(
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": "Reverse: " + " ".join(letters)},
                            {"role": "assistant", "content": " ".join(reversed(letters))},
                        ]
                    }
                )
                + "\n"
            )
            p.write(
                json.dumps(
                    {
                        "prompt": f"Say something kind about {i}",
                        "chosen": f"{i} is lovely.",
                        "rejected": f"{i} is dreadful.",
                    }
                )
                + "\n"
            )
    return chat, pref


def run(name: str, model: Path, train: Path, fmt: str, method: dict, adapter: dict, options: dict) -> dict:
    import torch

    from anytune.spec import JobSpec
    from anytune_local.jobdir import JobDir
    from anytune_local.training import train as train_job

    spec = JobSpec.model_validate(
        {
            "name": name,
            "base_model": str(model),
            "provider": "local",
            "method": method,
            "adapter": adapter,
            "data": {"train": str(train)},
            "hyperparameters": {
                "max_steps": 40,
                "batch_size": 16,
                "learning_rate": 2e-4,
                "max_seq_length": 512,
            },
            "provider_options": {"local": {"checkpoint_steps": 0, "logging_steps": 10, **options}},
        }
    )
    jobdir = JobDir(Path(tempfile.mkdtemp()) / name)
    request = {"spec": spec.model_dump(mode="json"), "data": {"train": {"path": str(train), "format": fmt}}}
    jobdir.create(request)
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = train_job(jobdir, request, lambda: False)
    m = result["metrics"]
    return {
        "run": name,
        "tokens/s": round(m.get("train_tokens_per_second", 0)),
        "train s": round(m["train_runtime"], 1),
        "wall s": round(time.perf_counter() - started, 1),
        "peak GPU GiB": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "final loss": round(m.get("final_loss", m.get("train_loss", float("nan"))), 4),
    }


def main() -> None:
    import torch

    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this check is for a GPU machine")
    folder = Path(tempfile.mkdtemp())
    model = build_model(folder)
    chat, pref = data(folder)
    lora = {"type": "lora", "r": 16}
    runs = [
        run(
            "qlora-nf4-bf16",
            model,
            chat,
            "chat",
            {"type": "sft"},
            {"type": "qlora", "r": 16, "compute_dtype": "bfloat16"},
            {},
        ),
        run("lora", model, chat, "chat", {"type": "sft"}, lora, {}),
        run("lora-grouped", model, chat, "chat", {"type": "sft"}, lora, {"group_by_length": True}),
        run("dpo-lora", model, pref, "preference", {"type": "dpo", "beta": 0.1}, lora, {}),
    ]
    print(torch.cuda.get_device_name(0), f"torch {torch.__version__}")
    keys = list(runs[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in runs:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
