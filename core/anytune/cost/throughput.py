"""How fast training runs on a given machine, and whether the model fits in it.

The model: training costs about 6 x N FLOPs per token for N parameters when every weight is trained (Kaplan
et al. 2020, "Scaling Laws for Neural Language Models", C = 6N per token), and about 4 x N with a frozen base
(LoRA and the other adapters: no weight gradients for the base). A GPU sustains a fraction of its peak (model
FLOPs utilisation, MFU; 35% here, below the 46% PaLM reports for large well-tuned runs); a CPU core about the
rate measured on this project's quick start. QLoRA pays for dequantizing weights (x0.7).

Measured runs beat the model: the local backend records the tokens/s of every finished run
(`$ANYTUNE_HOME/throughput.jsonl`), and later quotes for the same machine, model and adapter use the median
of those measurements instead.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from anytune.cost.catalog import Hardware
from anytune.cost.memory import family as adapter_family
from anytune.cost.memory import training_memory
from anytune.settings import anytune_home

GPU_MFU = 0.35
MULTI_GPU_EFFICIENCY = 0.9  # each GPU beyond the first adds this share of one GPU
QLORA_SLOWDOWN = 0.7
FLOPS_PER_TOKEN = {"full": 6.0, "peft": 4.0}


@dataclass(frozen=True)
class Throughput:
    tokens_per_s: float
    basis: str  # how the figure was arrived at, for the quote's assumptions


def modelled_tokens_per_s(hw: Hardware, params_b: float, adapter: str) -> Throughput:
    family = adapter_family(adapter)
    flops_per_token = FLOPS_PER_TOKEN["full" if family == "full" else "peft"] * params_b * 1e9
    if hw.kind == "cpu":
        cores = hw.cores or os.cpu_count() or 1
        sustained = cores * (hw.gflops_per_core or 45.0) * 1e9
        basis = f"{cores} CPU cores x {hw.gflops_per_core or 45.0:g} GFLOP/s"
    else:
        per_gpu = (hw.tflops or 0.0) * 1e12 * GPU_MFU
        sustained = per_gpu * (1 + MULTI_GPU_EFFICIENCY * (hw.gpus - 1))
        basis = f"{hw.describe()} at {GPU_MFU:.0%} of {hw.tflops:g} peak TFLOPS"
    if family == "qlora":
        sustained *= QLORA_SLOWDOWN
    rate = sustained / flops_per_token if flops_per_token else 0.0
    return Throughput(rate, f"throughput model: {basis}, {flops_per_token / (params_b * 1e9):g}N FLOPs/token")


def fits(
    hw: Hardware, params_b: float, adapter: str, *, batch: int | None = None, seq_len: int | None = None
) -> str | None:
    """Why the model does not fit on `hw` for this kind of training (the memory model's figures); None if
    it does. Several GPUs of one machine shard the model (FSDP / ZeRO-3)."""
    if hw.kind == "cpu":  # trains in fp32: the frozen base takes twice its bf16 size
        size = params_b * 2 if adapter_family(adapter) == "peft" else params_b
        need = training_memory(size, adapter, batch=batch, seq_len=seq_len)
        have = hw.memory_gb or _machine_memory_gb()
        where = f"{hw.describe()} has {have:.0f} GB"
    else:
        need = training_memory(params_b, adapter, batch=batch, seq_len=seq_len, gpus=hw.gpus)
        have = hw.memory_gb or 0.0
        where = f"{hw.describe()} has {have:.0f} GB per GPU"
    if have and need.per_gpu_gb > have:
        return f"{need.describe()}; {where}"
    return None


def _machine_memory_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        return 0.0


# ------------------------------------------------------------------------------------------- measured


def calibration_file() -> Path:
    return anytune_home() / "throughput.jsonl"


def record_measurement(
    *,
    provider: str,
    hardware: str,
    model: str,
    adapter: str,
    tokens: int,
    seconds: float,
    params_b: float | None = None,
    job_id: str | None = None,
) -> None:
    """Append one measured run. One short line per write with O_APPEND, so concurrent writers never
    interleave or truncate each other's lines."""
    if tokens <= 0 or seconds <= 0:
        return
    line = json.dumps(
        {
            "provider": provider,
            "hardware": hardware,
            "model": model,
            "adapter": adapter_family(adapter),
            "params_b": params_b,
            "tokens": tokens,
            "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds, 2),
            "job_id": job_id,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    fd = os.open(calibration_file(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def measured_tokens_per_s(provider: str, hardware: str, model: str, adapter: str) -> Throughput | None:
    """The median of the last five measured runs of this model and adapter kind on this hardware."""
    path = calibration_file()
    if not path.exists():
        return None
    family = adapter_family(adapter)
    rates: list[float] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            m: dict[str, Any] = json.loads(raw)
        except ValueError:
            continue  # a torn last line from a crash is skipped, never fatal
        if (m.get("provider"), m.get("hardware"), m.get("model"), m.get("adapter")) == (
            provider,
            hardware,
            model,
            family,
        ):
            rates.append(float(m["tokens_per_s"]))
    if not rates:
        return None
    recent = rates[-5:]
    return Throughput(
        statistics.median(recent), f"measured: median of {len(recent)} earlier run(s) here ({path.name})"
    )


# ----------------------------------------------------------------------------------- this machine

_GPU_KEYS = (
    ("h200", "h200"),
    ("h100", "h100"),
    ("a100", "a100"),
    ("l40s", "l40s"),
    ("a10g", "a10g"),
    ("a10", "a10g"),
    ("l4", "l4"),
    ("t4", "t4"),
)


def hardware_for_gpu(name: str, count: int = 1) -> str | None:
    """The catalog key for a GPU named like 'NVIDIA H200' (and 'h200x8' for eight of them)."""
    lowered = name.lower()
    key = next((k for needle, k in _GPU_KEYS if needle in lowered), None)
    if key is None:
        return None
    return f"{key}x{count}" if count > 1 else key


def detect_hardware() -> str:
    """This machine's catalog key, read from the NVIDIA driver's /proc files (no torch import): the
    GPU model times their number, or `cpu`."""
    gpus = sorted(Path("/proc/driver/nvidia/gpus").glob("*/information"))
    names = []
    for info in gpus:
        try:
            for line in info.read_text().splitlines():
                if line.startswith("Model:"):
                    names.append(line.split(":", 1)[1].strip())
        except OSError:
            continue
    if names:
        return hardware_for_gpu(names[0], len(names)) or "cpu"
    return "cpu"
