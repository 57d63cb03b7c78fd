"""Every adapter of the job spec, on a transformers model: PEFT configs, QLoRA loading, layer freezing for full
fine-tuning, and bottleneck adapter layers (Houlsby / Pfeiffer), which peft does not have.

Each kind is saved, reloaded and (where the mathematics allows) merged the same way for training and for
generation, so an adapter scores after reloading exactly as it did at the end of training.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from anytune.plugin import AdapterType, CapabilityError, JobSpec

PEFT_KINDS = {
    AdapterType.LORA,
    AdapterType.DORA,
    AdapterType.QLORA,
    AdapterType.PREFIX,
    AdapterType.PROMPT,
    AdapterType.PTUNING,
    AdapterType.IA3,
    AdapterType.LLAMA_ADAPTER,
}
# Merging folds the adapter into the weights: possible where it is a change of the weights (LoRA family,
# IA3), not where it adds tokens or layers (prompt, prefix, p-tuning, LLaMA-Adapter, bottleneck layers).
MERGEABLE = {AdapterType.LORA, AdapterType.DORA, AdapterType.QLORA, AdapterType.IA3, AdapterType.FULL}

BOTTLENECK_CONFIG = "bottleneck_config.json"
BOTTLENECK_WEIGHTS = "bottleneck_model.safetensors"


def peft_config(spec: JobSpec, model: Any, task_type: str = "CAUSAL_LM") -> Any | None:
    """The peft config for the spec's adapter; None for full fine-tuning and bottleneck layers."""
    a = spec.adapter
    kind = AdapterType(a.type)
    if kind not in PEFT_KINDS:
        return None
    import peft

    if kind in (AdapterType.LORA, AdapterType.DORA, AdapterType.QLORA):
        init = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora", "loftq": True}
        return peft.LoraConfig(
            r=a.r,
            lora_alpha=a.effective_alpha,
            lora_dropout=a.dropout,
            target_modules=a.target_modules,
            modules_to_save=a.modules_to_save or None,
            use_rslora=a.use_rslora,
            use_dora=kind is AdapterType.DORA,
            init_lora_weights=init.get(a.init, True),
            task_type=task_type,
        )
    if kind is AdapterType.PREFIX:
        return peft.PrefixTuningConfig(
            num_virtual_tokens=a.num_virtual_tokens, prefix_projection=a.projection, task_type=task_type
        )
    if kind is AdapterType.PROMPT:
        if a.init_text:
            return peft.PromptTuningConfig(
                num_virtual_tokens=a.num_virtual_tokens,
                prompt_tuning_init=peft.PromptTuningInit.TEXT,
                prompt_tuning_init_text=a.init_text,
                tokenizer_name_or_path=getattr(model.config, "_name_or_path", None),
                task_type=task_type,
            )
        return peft.PromptTuningConfig(num_virtual_tokens=a.num_virtual_tokens, task_type=task_type)
    if kind is AdapterType.PTUNING:
        return peft.PromptEncoderConfig(
            num_virtual_tokens=a.num_virtual_tokens,
            encoder_hidden_size=a.encoder_hidden_size,
            task_type=task_type,
        )
    if kind is AdapterType.IA3:
        return peft.IA3Config(
            target_modules=a.target_modules, feedforward_modules=a.feedforward_modules, task_type=task_type
        )
    # LLaMA-Adapter: learned prompts gated into the top layers; peft supports Llama-family models only
    model_type = getattr(model.config, "model_type", "")
    if model_type not in ("llama", "mistral", "gpt2"):
        raise CapabilityError(
            f"llama_adapter works on Llama-family models; this one is {model_type!r}",
            hint="use lora or ia3 for this architecture",
        )
    layers = getattr(model.config, "num_hidden_layers", a.adapter_layers)
    return peft.AdaptionPromptConfig(
        adapter_len=a.adapter_len, adapter_layers=min(a.adapter_layers, layers), task_type=task_type
    )


def quantization_config(spec: JobSpec, device: str) -> Any | None:
    """bitsandbytes settings for QLoRA: nf4 (or fp4, or 8-bit), compute in fp32 on CPU and bf16 on a GPU."""
    a = spec.adapter
    if a.type != "qlora":
        return None
    import torch
    from transformers import BitsAndBytesConfig

    compute = a.compute_dtype
    if compute == "auto":
        compute = "bfloat16" if device == "cuda" else "float32"
    if a.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=a.quant_type,
        bnb_4bit_use_double_quant=a.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, compute),
    )


def load_for_training(path: str | Path, spec: JobSpec, device: str, dtype: Any) -> Any:
    from transformers import AutoModelForCausalLM

    qc = quantization_config(spec, device)
    if qc is None:
        return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    from peft import prepare_model_for_kbit_training

    model = AutoModelForCausalLM.from_pretrained(
        str(path), quantization_config=qc, device_map=device, dtype=dtype
    )
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


# ---------------------------------------------------------------------------------------- full training


_LAYER = re.compile(r"\blayers\.(\d+)\.")


def freeze(model: Any, spec: JobSpec) -> dict[str, int]:
    """Apply `hyperparameters.freeze` for full fine-tuning; return counts of trainable / frozen parameters."""
    rules = spec.hyperparameters.freeze
    patterns = [re.compile(p) for p in (rules.patterns if rules else [])]
    first_n = rules.first_n_layers if rules and rules.first_n_layers else 0
    embeddings = bool(rules and rules.embeddings)
    tied = getattr(model.config, "tie_word_embeddings", False)
    counts = {"trainable": 0, "frozen": 0}
    for name, param in model.named_parameters():
        layer = _LAYER.search(name)
        frozen = (
            (layer is not None and int(layer.group(1)) < first_n)
            or any(p.search(name) for p in patterns)
            or (embeddings and ("embed_tokens" in name or "wte" in name or (tied and "lm_head" in name)))
        )
        param.requires_grad = not frozen
        counts["frozen" if frozen else "trainable"] += param.numel()
    return counts


# -------------------------------------------------------------------------------------- bottleneck layers


def _activation(name: str) -> Any:
    import torch

    return {"relu": torch.nn.ReLU, "gelu": torch.nn.GELU, "swish": torch.nn.SiLU}[name]()


def bottleneck_module(hidden: int, reduction: int, non_linearity: str) -> Any:
    """down-project, non-linearity, up-project (zero-initialised, so training starts from the base model)."""
    import torch

    class Bottleneck(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            inner = max(1, hidden // reduction)
            self.down = torch.nn.Linear(hidden, inner)
            self.act = _activation(non_linearity)
            self.up = torch.nn.Linear(inner, hidden)
            torch.nn.init.zeros_(self.up.weight)
            torch.nn.init.zeros_(self.up.bias)

        def forward(self, h: Any) -> Any:
            return h + self.up(self.act(self.down(h)))

    return Bottleneck()


def _wrap(module: Any, adapter: Any) -> Any:
    """Run `module`, then the adapter on its output (the first element where the module returns a tuple)."""
    import torch

    class WithAdapter(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module
            self.adapter = adapter

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            out = self.inner(*args, **kwargs)
            if isinstance(out, tuple):
                return (self.adapter(out[0]), *out[1:])
            return self.adapter(out)

    return WithAdapter()


def _sites(model: Any, style: str) -> list[tuple[Any, str]]:
    """(parent module, attribute) of every place an adapter goes: after each block's MLP (Pfeiffer), and
    after its attention too (Houlsby)."""
    wanted = ("mlp",) if style == "pfeiffer" else ("self_attn", "mlp")
    sites = []
    for name, module in model.named_modules():
        if re.search(r"layers\.\d+$", name) or re.search(r"\bh\.\d+$", name):
            for attr in wanted:
                if hasattr(module, attr):
                    sites.append((module, attr))
    if not sites:
        raise CapabilityError(
            "bottleneck adapters need a decoder with `layers.N.mlp` blocks; this architecture has none"
        )
    return sites


def add_bottlenecks(model: Any, style: str, reduction: int, non_linearity: str) -> Any:
    """Insert adapter layers in place, freeze everything else, and return the model."""
    for p in model.parameters():
        p.requires_grad = False
    hidden = model.config.hidden_size
    for parent, attr in _sites(model, style):
        adapter = bottleneck_module(hidden, reduction, non_linearity).to(
            next(model.parameters()).device, dtype=next(model.parameters()).dtype
        )
        setattr(parent, attr, _wrap(getattr(parent, attr), adapter))
    return model


def bottleneck_state(model: Any) -> dict[str, Any]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if ".adapter." in k}


def save_bottlenecks(model: Any, spec_adapter: Any, folder: Path, base_model: str) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(bottleneck_state(model), str(folder / BOTTLENECK_WEIGHTS))
    (folder / BOTTLENECK_CONFIG).write_text(
        json.dumps(
            {
                "style": spec_adapter.style,
                "reduction_factor": spec_adapter.reduction_factor,
                "non_linearity": spec_adapter.non_linearity,
                "base_model": base_model,
            },
            indent=2,
        )
    )


def is_bottleneck(folder: str | Path) -> bool:
    return (Path(folder) / BOTTLENECK_CONFIG).exists()


def load_bottlenecks(model: Any, folder: str | Path) -> Any:
    from safetensors.torch import load_file

    cfg = json.loads((Path(folder) / BOTTLENECK_CONFIG).read_text())
    add_bottlenecks(model, cfg["style"], cfg["reduction_factor"], cfg["non_linearity"])
    missing, unexpected = model.load_state_dict(
        load_file(str(Path(folder) / BOTTLENECK_WEIGHTS)), strict=False
    )
    if unexpected or any(".adapter." in k for k in missing):
        raise CapabilityError(f"{folder}: the adapter weights do not fit this base model")
    return model
