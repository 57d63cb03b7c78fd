"""Scale-out through `accelerate launch`, with its config generated from the job spec.

`provider_options.local.distributed` picks the strategy; the worker is then started by accelerate (one process
per GPU, or per CPU slot with `cpu: true`) instead of directly, and only rank 0 writes the job folder:

    provider_options:
      local:
        distributed: {strategy: fsdp, num_processes: 8}                 # one machine, 8 GPUs
        distributed: {strategy: zero3, num_processes: 8, num_machines: 2, machine_rank: 0,
                      main_process_ip: 10.0.0.1, main_process_port: 29500}  # run on each node, with its rank

Strategies: `ddp` (data parallel), `fsdp` (fully sharded, transformer-block wrapping), `zero2` / `zero3`
(DeepSpeed ZeRO stage 2 / 3; needs `pip install deepspeed`). The generated file is kept in the job folder
(`accelerate.yaml`), so the exact launch can be repeated by hand. With `cpu: true` on one machine (DDP over
gloo, for trying a distributed setup without GPUs) the processes are started by PyTorch's torchrun instead,
because accelerate starts multi-CPU runs only under MPI.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from anytune.plugin import JobSpec, UsageError

STRATEGIES = ("ddp", "fsdp", "zero2", "zero3")


def distributed_options(spec: JobSpec) -> dict[str, Any] | None:
    value = spec.options_for("local").get("distributed")
    if not value:
        return None
    if isinstance(value, str):
        value = {"strategy": value}
    if not isinstance(value, dict) or value.get("strategy", "ddp") not in STRATEGIES:
        raise UsageError(
            f"provider_options.local.distributed: {value!r}",
            hint=f"give {{strategy: one of {', '.join(STRATEGIES)}, num_processes: N, ...}}",
        )
    return value


def accelerate_config(spec: JobSpec) -> dict[str, Any] | None:
    """The accelerate config for the spec's `distributed` options, or None for a single process."""
    opts = distributed_options(spec)
    if opts is None:
        return None
    strategy = opts.get("strategy", "ddp")
    cpu = bool(opts.get("cpu", False))
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "num_processes": int(opts.get("num_processes", 2)),
        "num_machines": int(opts.get("num_machines", 1)),
        "machine_rank": int(opts.get("machine_rank", 0)),
        "main_training_function": "main",
        "mixed_precision": "no" if cpu else str(opts.get("mixed_precision", "bf16")),
        "use_cpu": cpu,
        "rdzv_backend": "static",
        "same_network": True,
    }
    if config["num_machines"] > 1:
        if not opts.get("main_process_ip"):
            raise UsageError("a multi-node run needs provider_options.local.distributed.main_process_ip")
        config["main_process_ip"] = str(opts["main_process_ip"])
        config["main_process_port"] = int(opts.get("main_process_port", 29500))
    if strategy == "ddp":
        config["distributed_type"] = "MULTI_CPU" if cpu else "MULTI_GPU"
    elif strategy == "fsdp":
        config["distributed_type"] = "FSDP"
        config["fsdp_config"] = {
            "fsdp_version": 2,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_reshard_after_forward": True,
            "fsdp_state_dict_type": "FULL_STATE_DICT",
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_offload_params": bool(opts.get("offload", False)),
        }
    else:
        config["distributed_type"] = "DEEPSPEED"
        config["deepspeed_config"] = {
            "zero_stage": 2 if strategy == "zero2" else 3,
            "gradient_accumulation_steps": spec.hyperparameters.gradient_accumulation_steps or 1,
            "offload_optimizer_device": "cpu" if opts.get("offload") else "none",
            "offload_param_device": "cpu" if opts.get("offload") and strategy == "zero3" else "none",
            "zero3_init_flag": strategy == "zero3",
            "zero3_save_16bit_model": strategy == "zero3",
        }
    return config


def worker_command(spec: JobSpec, jobdir: Path) -> list[str]:
    """How to start the worker: directly, or under `accelerate launch` with the generated config."""
    config = accelerate_config(spec)
    if config is None:
        return [sys.executable, "-m", "anytune_local.worker", str(jobdir)]
    path = jobdir / "accelerate.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    if config["use_cpu"] and config["num_machines"] == 1:
        # accelerate runs multi-CPU jobs only under an external MPI launcher; PyTorch's own launcher (torchrun)
        # starts the CPU processes (gloo) on one machine. The config is still written, for reference.
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={config['num_processes']}",
            "-m",
            "anytune_local.worker",
            str(jobdir),
        ]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(path),
        "-m",
        "anytune_local.worker",
        str(jobdir),
    ]


def is_main_process() -> bool:
    """Rank 0 of a distributed run, or the only process."""
    import os

    return int(os.environ.get("RANK", "0")) == 0
