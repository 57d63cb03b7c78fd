"""Loading tokenizers and models the same way for training and for generation.

Both sides must see the same tokenizer setup (chat template, pad token), or a model is scored with
prompts rendered differently from the ones it learned on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anytune_local.tiny import CHATML_TEMPLATE


def prepare_tokenizer(tok: Any) -> Any:
    """Give the tokenizer a chat template and a pad token distinct from EOS where it lacks them.

    A pad token equal to EOS makes padding indistinguishable from the end of an answer; where the vocabulary
    has another special token for padding, use it.
    """
    if not getattr(tok, "chat_template", None):
        tok.chat_template = CHATML_TEMPLATE
    if tok.pad_token is None or tok.pad_token == tok.eos_token:
        vocab = tok.get_vocab()
        for candidate in ("<|pad|>", "<|endoftext|>", "<pad>", "<unk>", tok.unk_token):
            if candidate and candidate in vocab and candidate != tok.eos_token:
                tok.pad_token = candidate
                break
        else:
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
    return tok


def load_tokenizer(path: str | Path) -> Any:
    from transformers import AutoTokenizer

    return prepare_tokenizer(AutoTokenizer.from_pretrained(str(path)))


def device_and_dtype() -> tuple[str, Any]:
    """CUDA with bf16 where the GPU has it, else CPU in fp32 (bf16 on CPU was no faster, see docs)."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return "cpu", torch.float32


def load_causal_lm(path: str | Path, adapter: str | Path | None = None) -> Any:
    """A base model, with a saved adapter on it: a peft adapter of any kind, or anytune's bottleneck layers."""
    from transformers import AutoModelForCausalLM

    device, dtype = device_and_dtype()
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    if adapter is not None:
        from anytune_local.adapters import is_bottleneck, load_bottlenecks

        if is_bottleneck(adapter):
            model = load_bottlenecks(model, adapter)
        else:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter))
    return model.to(device).eval()


def quiet_libraries() -> None:
    """Silence what transformers, peft and bitsandbytes print on every run and that nobody can act on:
    per-file loading bars, a bitsandbytes warning about an optional hub-fetched CPU kernel, and transformers 5
    deprecation warnings raised inside peft and trl. Real warnings and errors still show."""
    import logging
    import os
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
    warnings.filterwarnings(
        "ignore", message=r".*gradient_checkpointing.*deprecated.*", category=FutureWarning
    )
    warnings.filterwarnings("ignore", message=r".*pin_memory.*no accelerator.*")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
