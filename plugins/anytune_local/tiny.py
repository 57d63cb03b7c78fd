"""A tiny Llama-shaped model with a tokenizer trained on the spot, for fast tests and dry runs.

No download: the tokenizer learns its byte-level BPE from the Python standard library's own source files
(the same on every machine with the same Python), and the weights are random. It learns quickly enough to
show a falling loss in seconds on a CPU. Its chat template is ChatML with `{% generation %}` markers, so
assistant-only loss works on it too.
"""

from __future__ import annotations

import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from anytune.plugin import cache_dir
from anytune_local.cache import build_once

CHATML_TEMPLATE = (
    "{%- for message in messages %}{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
    "{{- '\\n' }}{%- else %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]

VERSION = 1
HIDDEN, LAYERS, HEADS, KV_HEADS, VOCAB = 128, 2, 4, 2, 2048


def _corpus(limit: int = 200) -> Iterator[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.glob("*.py"))[:limit]:
        try:
            yield path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue


def tiny_folder() -> Path:
    """Where the tiny model is cached (it may not be built yet)."""
    return cache_dir("models") / f"tiny-llama-v{VERSION}-h{HIDDEN}-l{LAYERS}-v{VOCAB}"


def build_tiny_model(target: Path | None = None, log: Callable[[str], None] = lambda _m: None) -> Path:
    """Build (once, then reuse from the cache) the tiny model folder and return it."""
    target = target or tiny_folder()

    def build(folder: Path) -> None:
        log("building the tiny test model (tokenizer trained on the spot, random weights)")
        import torch
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=VOCAB,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(_corpus(), trainer)
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<|pad|>"
        )
        fast.chat_template = CHATML_TEMPLATE
        config = llama_config(
            fast, hidden=HIDDEN, layers=LAYERS, heads=HEADS, kv_heads=KV_HEADS, positions=1024
        )
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(folder)
        fast.save_pretrained(folder)

    return build_once(target, build)


def build_scaled_model(
    folder: Path,
    *,
    hidden: int,
    layers: int,
    heads: int,
    kv_heads: int,
    dtype: str = "float32",
    tokenizer_from: Path | None = None,
) -> Path:
    """A bigger Llama of the same family (the tiny tokenizer, random weights) for benchmarks and GPU checks,
    where speed and memory matter and what the weights say does not."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_from or build_tiny_model(folder.parent / "tiny"))
    config = llama_config(tok, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, positions=2048)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def llama_config(tok: Any, *, hidden: int, layers: int, heads: int, kv_heads: int, positions: int) -> Any:
    """A Llama config sized as asked, with the tokenizer's vocabulary and special tokens, embeddings tied."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=positions,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
