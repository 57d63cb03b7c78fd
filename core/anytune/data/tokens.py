"""Token counters: exact where a tokenizer can be had offline, a marked estimate otherwise.

`get_token_counter(spec)` takes:
- None or "approx": about four characters a token, and every figure marked as an estimate;
- a path to a tokenizer folder or a `tokenizer.json`: the Hugging Face `tokenizers` library (no torch);
- "tiktoken:<encoding>", e.g. "tiktoken:cl100k_base": OpenAI's tiktoken, if installed and cached.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

from anytune.errors import UsageError


class TokenCounter(Protocol):
    name: str
    exact: bool

    def count(self, text: str) -> int: ...


class ApproxCounter:
    """About four characters a token: OpenAI's rule of thumb for English. Always labelled an estimate."""

    name = "approx (4 chars/token)"
    exact = False

    def count(self, text: str) -> int:
        return math.ceil(len(text) / 4) if text else 0


class HFTokenizerCounter:
    exact = True

    def __init__(self, path: Path) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise UsageError(
                "counting with a Hugging Face tokenizer needs the `tokenizers` package",
                hint="pip install tokenizers  (or anytune[local])",
            ) from None
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.exists():
            raise UsageError(
                f"{path}: no tokenizer.json found", hint="give a tokenizer folder or its tokenizer.json"
            )
        self._tok = Tokenizer.from_file(str(file))
        self.name = f"tokenizers:{path}"

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)


class TiktokenCounter:
    exact = True

    def __init__(self, encoding: str) -> None:
        try:
            import tiktoken
        except ImportError:
            raise UsageError(
                "counting with tiktoken needs the `tiktoken` package", hint="pip install tiktoken"
            ) from None
        try:
            self._enc = tiktoken.get_encoding(encoding)
        except Exception as exc:
            raise UsageError(
                f"tiktoken encoding {encoding!r} is not available offline: {type(exc).__name__}",
                hint="put the encoding file in $TIKTOKEN_CACHE_DIR, or use --tokenizer approx",
            ) from None
        self.name = f"tiktoken:{encoding}"

    def count(self, text: str) -> int:
        return len(self._enc.encode(text, disallowed_special=()))


def get_token_counter(spec: str | None) -> TokenCounter:
    if spec is None or spec in ("", "approx"):
        return ApproxCounter()
    if spec.startswith("tiktoken:"):
        return TiktokenCounter(spec.split(":", 1)[1])
    path = Path(spec).expanduser()
    if path.exists():
        return HFTokenizerCounter(path)
    raise UsageError(
        f"tokenizer {spec!r} not found",
        hint="give a local tokenizer folder or tokenizer.json, tiktoken:<encoding>, or approx",
    )
