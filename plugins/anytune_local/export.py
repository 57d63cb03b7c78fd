"""Merging a trained adapter into its base model: full weights any inference stack loads without peft."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from anytune.plugin import ModelArtifact, UsageError

DTYPES = ("float32", "bfloat16", "float16")


def merge_adapter(artifact: ModelArtifact, out_dir: str | Path, dtype: str = "float32") -> Path:
    """Write base + adapter, merged, as a safetensors model folder with the tokenizer; return the folder.

    Written under a temporary name and renamed, so a crash never leaves a half-written model behind."""
    if dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype}: use one of {', '.join(DTYPES)}")
    if artifact.kind not in ("adapter", "merged", "full"):
        raise UsageError(f"{artifact.model_id} is a {artifact.kind}, not local weights")
    from anytune_local.adapters import MERGEABLE, AdapterType

    if artifact.kind == "adapter" and AdapterType(artifact.adapter_type or "lora") not in MERGEABLE:
        raise UsageError(
            f"a {artifact.adapter_type} adapter cannot be merged into the weights: it adds tokens or layers",
            hint="serve it as it is (anytune serve), or train lora, dora, qlora or ia3 to get mergeable weights",
        )
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} exists and is not empty", hint="choose a new folder")
    from anytune_local.loading import load_tokenizer, quiet_libraries
    from anytune_local.models import resolve_model

    quiet_libraries()
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = getattr(torch, dtype)
    if artifact.kind == "adapter":
        base = artifact.metadata.get("base_model_path")
        if not base or not Path(base).exists():
            base = str(resolve_model(artifact.base_model).path)
        from peft import PeftModel

        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype)
        model = PeftModel.from_pretrained(model, str(artifact.path or artifact.model_id)).merge_and_unload()
        tokenizer = load_tokenizer(str(artifact.path or artifact.model_id))
    else:
        source = artifact.merged_path or artifact.path or artifact.model_id
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype)
        tokenizer = load_tokenizer(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
