"""Training inside the worker process: any method of `anytune_local.methods` with any adapter of
`anytune_local.adapters`, through TRL's trainers. For SFT:

The data arrives validated by the core. Chat and instruction records become TRL's conversational
prompt/completion rows, so the loss covers the answer only (TRL masks the prompt by comparing the rendered
prompt with the rendered prompt+answer). That works with any chat template, including those without
`{% generation %}` markers. `method.train_on_inputs: true` trains on the whole conversation instead.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from anytune.plugin import DataFormat, JobSpec
from anytune_local.jobdir import JobDir, WorkerResult

# What the local backend uses when a hyperparameter is left unset. Chosen for LoRA on small models.
DEFAULTS = {
    "epochs": 1.0,
    "learning_rate": 2e-4,
    "batch_size": 8,
    "gradient_accumulation_steps": 1,
    "lr_scheduler": "linear",
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "max_seq_length": 1024,
    "seed": 42,
}


class Cancelled(Exception):
    """The user asked for the job to stop."""


# Learning rates that train each kind of adapter well from the usual starting points: few parameters take
# large steps (prompt tuning papers use 0.3), every weight takes small ones.
DEFAULT_LR = {
    "full": 2e-5,
    "ia3": 3e-3,
    "prefix": 1e-2,
    "prompt": 1e-2,
    "p_tuning": 1e-2,
    "llama_adapter": 1e-2,
    "bottleneck": 1e-3,
}


def _hp(spec: JobSpec, name: str) -> Any:
    if name == "learning_rate" and spec.hyperparameters.learning_rate is None:
        return DEFAULT_LR.get(spec.adapter.type, DEFAULTS["learning_rate"])
    value = getattr(spec.hyperparameters, name)
    return DEFAULTS.get(name) if value is None else value


def total_steps(rows: int, spec: JobSpec) -> int:
    if spec.hyperparameters.max_steps:
        return spec.hyperparameters.max_steps
    per_step = _hp(spec, "batch_size") * _hp(spec, "gradient_accumulation_steps")
    return max(1, math.ceil(_hp(spec, "epochs") * math.ceil(rows / per_step)))


def train(jobdir: JobDir, request: dict[str, Any], should_stop: Any) -> WorkerResult | None:
    """Train, save the adapter, and return what result.json should hold."""
    spec = JobSpec.model_validate(request["spec"])
    emit = jobdir.emit
    jobdir.write_status("loading")
    base_model = spec.model_for("local")
    emit(f"resolving base model {base_model}")

    from anytune_local.models import resolve_model

    resolved = resolve_model(base_model, log=emit)
    emit(f"base model: {resolved.path} ({resolved.source})")
    if should_stop():
        raise Cancelled

    emit("importing torch, transformers, peft and trl")
    from anytune_local.loading import quiet_libraries

    quiet_libraries()
    import torch
    from transformers import TrainerCallback

    from anytune_local import methods
    from anytune_local.loading import device_and_dtype, load_tokenizer

    data = request["prepared"]["data"]
    use_trl = spec.options_for("local").get("trainer", "fast") == "trl" or spec.method_type.value not in (
        "sft",
        "cpt",
    )
    train_rows = methods.rows_for(
        spec, data["train"]["path"], DataFormat(data["train"]["format"]), all_turns=not use_trl
    )
    eval_rows = None
    if data.get("validation"):
        v = data["validation"]
        eval_rows = methods.rows_for(spec, v["path"], DataFormat(v["format"]), all_turns=not use_trl)
    steps = total_steps(len(train_rows), spec)
    emit(f"{len(train_rows)} training rows, {steps} steps", rows=len(train_rows), total_steps=steps)

    tokenizer = load_tokenizer(resolved.path)
    device, dtype = device_and_dtype()
    from anytune_local import adapters

    model = methods.load_model(spec, resolved.path, device, dtype, tokenizer)
    if should_stop():
        raise Cancelled

    adapter = spec.adapter
    task = "SEQ_CLS" if spec.method_type.value == "reward" else "CAUSAL_LM"
    peft_config = adapters.peft_config(spec, model, task_type=task)
    if adapter.type == "full":
        counts = adapters.freeze(model, spec)
        emit(
            f"full fine-tuning: {counts['trainable']:,} parameters trained, {counts['frozen']:,} frozen",
            **counts,
        )
    elif adapter.type == "bottleneck":
        adapters.add_bottlenecks(model, adapter.style, adapter.reduction_factor, adapter.non_linearity)
        emit(f"{adapter.style} bottleneck adapters added (reduction {adapter.reduction_factor})")
    if adapter.type == "llama_adapter" and use_trl:
        # TRL patches a fused LM head onto the base model after wrapping it; LLaMA-Adapter's wrapper keeps the
        # forward it saw first, so the head must be patched before wrapping (TRL 1.16)
        from peft import get_peft_model
        from trl.trainer.utils import add_fused_lm_head

        add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
        model, peft_config = get_peft_model(model, peft_config), None

    hp = spec.hyperparameters
    # Dense enough for a loss curve, sparse enough that a long run does not flood the registry.
    logging_steps = int(spec.options_for("local").get("logging_steps") or max(1, min(10, steps // 100)))
    warmup: float = 0
    if hp.warmup_steps is not None:
        warmup = hp.warmup_steps
    elif hp.warmup_ratio is not None:
        warmup = hp.warmup_ratio
    eval_steps = max(1, steps // 10)
    options = spec.options_for("local")
    # A checkpoint (weights + optimizer + scheduler + step) every N steps: what `jobs resume` restarts from.
    checkpoint_steps = int(options.get("checkpoint_steps", max(10, steps // 5)))
    report_to = (
        options.get("report_to") or "none"
    )  # wandb, mlflow, tensorboard: passed through to transformers
    common = dict(
        output_dir=str(jobdir.path / "checkpoints"),
        num_train_epochs=_hp(spec, "epochs"),
        max_steps=hp.max_steps or -1,
        per_device_train_batch_size=_hp(spec, "batch_size"),
        per_device_eval_batch_size=_hp(spec, "batch_size"),
        gradient_accumulation_steps=_hp(spec, "gradient_accumulation_steps"),
        learning_rate=_hp(spec, "learning_rate"),
        lr_scheduler_type=_hp(spec, "lr_scheduler"),
        warmup_steps=warmup,
        weight_decay=_hp(spec, "weight_decay"),
        max_grad_norm=_hp(spec, "max_grad_norm"),
        seed=_hp(spec, "seed"),
        data_seed=_hp(spec, "seed"),
        logging_steps=logging_steps,
        eval_strategy="steps" if eval_rows else "no",
        eval_steps=eval_steps if eval_rows else None,
        save_strategy="steps" if checkpoint_steps else "no",
        save_steps=checkpoint_steps or None,
        save_total_limit=2 if checkpoint_steps else None,
        report_to=report_to,
        bf16=device == "cuda" and dtype == torch.bfloat16,
        fp16=device == "cuda" and dtype == torch.float16,
        use_cpu=device == "cpu",
        gradient_checkpointing=bool(options.get("gradient_checkpointing", False)),
        dataloader_pin_memory=False,
        disable_tqdm=True,
    )

    class Progress(TrainerCallback):
        """Streams progress and metrics to the job folder, stops on cancel and on early stopping."""

        def __init__(self) -> None:
            self.best: float | None = None
            self.bad_evals = 0
            self.started = time.monotonic()
            self.last_write = 0.0

        def on_step_end(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
            # the status file (and the cancel check) at most every 0.25 s: on fast steps they were a
            # measurable share of the step; the last step is always written
            now = time.monotonic()
            if now - self.last_write >= 0.25 or state.global_step >= state.max_steps:
                self.last_write = now
                if state.is_world_process_zero:
                    jobdir.write_status("training", step=state.global_step, total_steps=state.max_steps)
                if should_stop():
                    control.should_training_stop = True
            return control

        def on_log(self, args, state, control, logs=None, **kw):  # type: ignore[no-untyped-def]
            metrics = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, int | float)}
            if metrics and state.is_world_process_zero:
                emit("", kind="metric", **{"step": state.global_step, "epoch": state.epoch, **metrics})

        def on_evaluate(self, args, state, control, metrics=None, **kw):  # type: ignore[no-untyped-def]
            es = spec.hyperparameters.early_stopping
            if es is None or not metrics or es.metric not in metrics:
                return control
            value = float(metrics[es.metric])
            better = self.best is None or (
                value < self.best - es.min_delta if es.mode == "min" else value > self.best + es.min_delta
            )
            if better:
                self.best, self.bad_evals = value, 0
            else:
                self.bad_evals += 1
                if self.bad_evals >= es.patience:
                    emit(
                        f"early stopping: {es.metric} did not improve for {es.patience} evaluations",
                        best=self.best,
                        step=state.global_step,
                    )
                    control.should_training_stop = True
            return control

    progress = Progress()
    if use_trl:
        config = methods.config_for(spec, common, _hp(spec, "max_seq_length"))
        trainer = methods.trainer_for(
            spec, model, tokenizer, config, train_rows, eval_rows, peft_config, [progress]
        )
    else:
        from anytune_local.fast_sft import make_trainer

        group = bool(options.get("group_by_length", False))
        trainer = make_trainer(
            model,
            tokenizer,
            common,
            _hp(spec, "max_seq_length"),
            train_rows,
            eval_rows,
            peft_config,
            [progress],
            group,
        )
    jobdir.write_status("training", step=0, total_steps=steps)
    emit("training started", total_steps=steps)
    resume_from = options.get("resume_from")
    if resume_from:
        import json as _json

        state = _json.loads((Path(resume_from) / "trainer_state.json").read_text())
        emit(f"resuming from {resume_from} (step {state.get('global_step')})", step=state.get("global_step"))
    output = trainer.train(resume_from_checkpoint=resume_from or None)
    if should_stop():
        raise Cancelled

    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)  # before any merge
    from anytune_local.launch import distributed_options, is_main_process

    sharded = (distributed_options(spec) or {}).get("strategy") in ("fsdp", "zero3")
    if sharded:  # the weights are spread over the ranks: every rank takes part in gathering them
        trainer.save_model(str(jobdir.output / ("model" if adapter.type == "full" else "adapter")))
    if not is_main_process():  # in a distributed run rank 0 saves; the others are done
        trainer.accelerator.wait_for_everyone()
        return None
    trainer.accelerator.wait_for_everyone()
    jobdir.write_status("saving")
    saved_kind = "adapter"
    if sharded:
        adapter_dir = jobdir.output / ("model" if adapter.type == "full" else "adapter")
        saved_kind = "full" if adapter.type == "full" else "adapter"
    elif adapter.type == "full":
        adapter_dir = jobdir.output / "model"
        trainer.model.save_pretrained(str(adapter_dir))
        saved_kind = "full"
    elif adapter.type == "bottleneck":
        adapter_dir = jobdir.output / "adapter"
        adapters.save_bottlenecks(trainer.model, adapter, adapter_dir, base_model)
    else:
        adapter_dir = jobdir.output / "adapter"
        trainer.model.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    emit(f"{saved_kind} saved to {adapter_dir}")
    merged_dir = None
    if spec.options_for("local").get("merge") and saved_kind == "adapter":
        if adapters.AdapterType(adapter.type) in adapters.MERGEABLE and adapter.type != "qlora":
            merged_dir = jobdir.output / "merged"
            merged = trainer.model.merge_and_unload()
            merged.save_pretrained(str(merged_dir))
            tokenizer.save_pretrained(str(merged_dir))
            emit(f"merged weights saved to {merged_dir}")
        else:
            why = (
                "its base is quantized here: `anytune export` merges it into a full-precision base"
                if adapter.type == "qlora"
                else "it adds tokens or layers rather than changing weights"
            )
            emit(
                f"not merged: a {adapter.type} adapter cannot be merged in training ({why})", level="warning"
            )

    metrics = {k: float(v) for k, v in output.metrics.items() if isinstance(v, int | float)}
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    if losses:
        metrics["first_loss"], metrics["final_loss"] = float(losses[0]), float(losses[-1])
    if eval_rows:
        metrics.update({k: float(v) for k, v in trainer.evaluate().items() if isinstance(v, int | float)})
    hardware, trained_tokens = _record_throughput(spec, base_model, trainer, metrics, device)
    return WorkerResult(
        adapter_path=str(adapter_dir),
        merged_path=str(merged_dir) if merged_dir else None,
        base_model=base_model,
        base_model_path=str(resolved.path),
        base_model_source=resolved.source,
        adapter_type=spec.adapter.type,
        kind=saved_kind,
        method=spec.method_type.value,
        trainable_parameters=trainable,
        steps=trainer.state.global_step,
        metrics=metrics,
        hardware=hardware,
        trained_tokens=trained_tokens,
    )


def _record_throughput(
    spec: JobSpec, base_model: str, trainer: Any, metrics: dict[str, float], device: str
) -> tuple[str, int | None]:
    """Store this run's tokens/s so that later quotes for this machine use a measured rate; return the
    machine's catalog key and the tokens trained (not counting padding)."""
    from anytune.plugin import hardware_for_gpu, record_measurement

    hardware = "cpu"
    if device == "cuda":
        import torch

        hardware = hardware_for_gpu(torch.cuda.get_device_name(0), torch.cuda.device_count()) or "cuda"
    keys = ("num_tokens", "num_input_tokens_seen")  # TRL's count, Trainer's (non-padding) count
    tokens = next((h[k] for h in reversed(trainer.state.log_history) for k in keys if k in h), None)
    seconds = metrics.get("train_runtime")
    if not tokens or not seconds:
        return hardware, None
    base = trainer.model.get_base_model() if hasattr(trainer.model, "get_base_model") else trainer.model
    params = sum(p.numel() for p in base.parameters())
    metrics["train_tokens_per_second"] = float(tokens) / float(seconds)
    record_measurement(
        provider="local",
        hardware=hardware,
        model=base_model,
        adapter=spec.adapter.type,
        tokens=int(tokens),
        seconds=float(seconds),
        params_b=params / 1e9,
    )
    return hardware, int(tokens)
