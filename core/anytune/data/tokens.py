"""Token counters: exact where a tokenizer can be had offline, a marked estimate otherwise.

`get_token_counter(spec)` takes:
- None or "approx": about four characters a token, and every figure marked as an estimate;
- "quicktok:<encoding>" (cl100k_base, o200k_base, o200k_harmony, llama3, qwen3): the vocabularies bundled in
  the `quicktok-v1` wheel, whose ids match tiktoken's exactly; nothing is downloaded;
- "tiktoken:<encoding>": OpenAI's tiktoken if installed and its file cached, else the same encoding from
  quicktok where it bundles it;
- a path to a tokenizer folder or a `tokenizer.json`: the Hugging Face `tokenizers` library (no torch); a
  GPT-2-style byte-level BPE (SmolLM2) is then counted word by word once its first texts agreed with it.

`count_many` is the fast path: quotes count every example of a data set, so counters take them in batches.
With `special=True`, special tokens written in the text (`<|im_start|>`) count as the one token they are.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from anytune.errors import UsageError

QUICKTOK_ENCODINGS = ("cl100k_base", "o200k_base", "o200k_harmony", "llama3", "qwen3")
_SPECIAL_SPLIT = re.compile(r"(<\|[^<>|\s]{1,64}\|>|</?(?:think|tool_call|tool_response)>)")


class TokenCounter(Protocol):
    """`releases_gil` (optional, default True): whether `count_many` lets other threads run while it
    counts; BatchCounter counts on a background thread only for counters that do."""

    name: str
    exact: bool

    def count(self, text: str) -> int: ...

    def count_many(self, texts: Sequence[str], special: bool = False) -> list[int]: ...


class ApproxCounter:
    """About four characters a token: OpenAI's rule of thumb for English. Always labelled an estimate."""

    name = "approx (4 chars/token)"
    exact = False

    def count(self, text: str) -> int:
        return math.ceil(len(text) / 4) if text else 0

    def count_many(self, texts: Sequence[str], special: bool = False) -> list[int]:
        return [self.count(t) for t in texts]


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
        if not file.is_file():
            raise UsageError(f"{file}: not a file", hint="give a tokenizer folder or its tokenizer.json")
        try:
            self._tok = Tokenizer.from_file(str(file))
        except Exception as exc:  # the library raises a bare Exception for any file it cannot take
            raise UsageError(
                f"{file}: not a tokenizer the `tokenizers` library reads ({str(exc)[:200]})",
                hint="give the model's own tokenizer.json (or its folder), quicktok:<encoding>, or approx",
            ) from None
        self.name = f"tokenizers:{path}"
        self._fast = _byte_level_bpe(file)  # None, or a faster count of the same vocabulary (unverified)
        self._verified = False
        self._checked_chars = 0  # text counted both ways with equal counts, so far

    @property
    def releases_gil(self) -> bool:
        """False once the word-cached count took over (Python); `tokenizers` counts with the GIL released."""
        return not (self._fast is not None and self._verified)

    def count(self, text: str) -> int:
        return self.count_many([text])[0]

    def count_many(self, texts: Sequence[str], special: bool = False) -> list[int]:
        # added special tokens written in the text are always matched as single tokens by `tokenizers`
        if self._fast is not None and self._verified:
            return self._fast.count_many(texts)
        counts = [len(e.ids) for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]
        if self._fast is not None:
            # the first 10,000 characters are counted both ways: then tiktoken alone, if every count agreed
            if self._fast.count_many(texts) != counts:
                self._fast = None
            else:
                self._checked_chars += sum(len(t) for t in texts)
                self._verified = self._checked_chars >= 10_000
        return counts


# GPT-2's pre-tokenizer, which `tokenizers` applies for ByteLevel(use_regex=True)
_GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def _byte_level_bpe(file: Path) -> WordCachedBPE | None:
    """A counter over the vocabulary of a GPT-2-style byte-level BPE tokenizer.json (SmolLM2, GPT-2,
    StarCoder...): tiktoken with GPT-2's pattern, each word counted once. tiktoken merges by token rank, so it
    equals the BPE only where the ranks follow the merges: the caller checks it against `tokenizers` on
    real text before trusting it. None when tiktoken is not installed or the tokenizer is of another kind."""
    try:
        import tiktoken
    except ImportError:
        return None
    import json

    try:
        spec = json.loads(file.read_text(encoding="utf-8"))
        pre, model = spec.get("pre_tokenizer") or {}, spec.get("model") or {}
        if spec.get("normalizer") or model.get("type") != "BPE" or model.get("byte_fallback"):
            return None
        if pre.get("type") != "ByteLevel" or not pre.get("use_regex", True) or pre.get("add_prefix_space"):
            return None
        decode = {char: byte for byte, char in _bytes_to_unicode().items()}
        special = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
        ranks = {
            bytes(decode[c] for c in token): rank
            for token, rank in model["vocab"].items()
            if token not in special
        }
        encoding = tiktoken.Encoding(
            file.parent.name, pat_str=_GPT2_PATTERN, mergeable_ranks=ranks, special_tokens=special
        )
    except Exception:  # a vocabulary tiktoken cannot take (a token that is not byte-level, a duplicate rank)
        return None
    return WordCachedBPE(encoding, special)


class _Words(dict[str, "int | None"]):
    """Counts of the words met so far; a word seen for the first time is counted by `count`. Bounded: real
    text repeats a few hundred thousand words, and a file of random strings must not grow it without end."""

    LIMIT = 1 << 18
    LONGEST = 64  # longer words are counted each time they come (a blob of base64 is no word)

    def __init__(self, count: Callable[[str], int | None]) -> None:
        super().__init__()
        self._count = count

    def __missing__(self, word: str) -> int | None:
        n = self._count(word)
        if len(word) <= self.LONGEST:
            if len(self) >= self.LIMIT:
                self.clear()
            self[word] = n
        return n


_PART = "\x00"  # marks the first word of a piece between special tokens when the pieces are joined
_JOIN = " " + _PART


class WordCachedBPE:
    """Counts exactly what tiktoken counts with GPT-2's pre-tokenizer, 3-5x faster, by counting each word
    once. A text is cut at every space followed by a character other than whitespace: GPT-2's pattern always
    starts a piece there (a space joins the letters, digits or symbols after it, and a run of whitespace
    before it stops short of its last space), and no piece before it reaches past it, so the text's count is
    the sum of its words' counts. Where a space is followed by whitespace or ends the text that cut would not
    be clean: the text between two special tokens is then counted whole. It holds the GIL (dict lookups),
    but for a quarter of the time tiktoken takes over the same text."""

    def __init__(self, encoding: Any, special: dict[str, int]) -> None:
        self._encode = encoding.encode_ordinary
        names = sorted(special, key=len, reverse=True)
        self._special = re.compile("(" + "|".join(map(re.escape, names)) + ")") if names else None
        self._first = _Words(lambda word: len(self._encode(word)))
        self._after_space = _Words(self._word_after_space)

    def _word_after_space(self, word: str) -> int | None:
        # None where the space before `word` is not a clean cut: summing it fails and the text is counted whole
        if word[:1] == _PART:  # the first word of the next piece between special tokens (see count_many)
            return self._first[word[1:]]
        if not word or word[0].isspace():
            return None
        return len(self._encode(" " + word))

    def _sum_words(self, text: str) -> int:
        """TypeError where a word's count is None (a space before whitespace, or at the end)."""
        words = text.split(" ")
        return self._first[words[0]] + sum(map(self._after_space.__getitem__, words[1:]))  # type: ignore[arg-type]

    def _count_plain(self, text: str) -> int:
        if _PART in text:  # the mark would be read as one: this text is counted whole (the words are not)
            return len(self._encode(text))
        try:
            return self._sum_words(text)
        except TypeError:
            return len(self._encode(text))

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Counts with every special token written in the text counted as the one token it is."""
        if self._special is None:
            return [self._count_plain(t) if t else 0 for t in texts]
        out = []
        for text in texts:
            parts = self._special.split(text)
            n = (len(parts) - 1) // 2
            if n and _PART not in text:
                # the pieces between special tokens joined by " " + _PART: one split and one sum for the
                # whole text, each piece's first word marked so it is counted as a first word (a rendered
                # chat has a dozen pieces; one Python call per piece took a quarter of the count)
                try:
                    out.append(n + self._sum_words(_JOIN.join(parts[::2])))
                    continue
                except TypeError:  # an unclean cut in some piece: each piece on its own, below
                    pass
            for plain in parts[::2]:
                if plain:
                    n += self._count_plain(plain)
            out.append(n)
        return out


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table of the printable character that stands for each byte in a byte-level vocabulary."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class QuicktokCounter:
    """One of the encodings bundled in quicktok-v1 (MIT), identical to tiktoken's for cl100k and o200k."""

    exact = True

    def __init__(self, encoding: str) -> None:
        encoding = {"llama3_base": "llama3", "qwen3_base": "qwen3"}.get(encoding, encoding)
        if encoding not in QUICKTOK_ENCODINGS:
            raise UsageError(
                f"quicktok has no encoding {encoding!r}", hint=f"use one of {', '.join(QUICKTOK_ENCODINGS)}"
            )
        try:
            import quicktok
        except ImportError:
            raise UsageError(
                "exact token counts need the `quicktok-v1` package", hint="pip install quicktok-v1"
            ) from None
        self._quicktok = quicktok
        self._enc = quicktok.get_encoding(encoding)
        self.name = f"quicktok:{encoding}"

    def count(self, text: str) -> int:
        return self.count_many([text])[0]

    def count_many(self, texts: Sequence[str], special: bool = False) -> list[int]:
        if not texts:
            return []
        if not special:
            return self._quicktok.count_batch(self._enc, list(texts)).tolist()  # type: ignore[no-any-return]
        # quicktok's own special-token scan is slow for vocabularies with hundreds of them (llama3: 5 s for
        # 10k chats). Special tokens split the text anyway, so: count the pieces between them, add one each.
        # `split` on the candidates (a capture group) does the scanning in C: odd items are the candidates.
        # Where every candidate is a special token (a rendered chat) the rest stays in C too: this runs on the
        # counting thread holding the GIL, and a Python loop over the parts took 1.7 s of a 200k-chat pass
        import numpy as np

        specials = self._enc.special_tokens_set
        pieces: list[str] = []
        owner: list[int] = []
        totals = [0] * len(texts)
        for i, text in enumerate(texts):
            parts = _SPECIAL_SPLIT.split(text)
            candidates = parts[1::2]
            if specials.issuperset(candidates):
                between = list(filter(None, parts[::2]))
                totals[i] = len(candidates)
            else:  # some look like one and are not: they are ordinary text, joined to their neighbours
                between, run = [], parts[0]
                for k in range(1, len(parts), 2):
                    if parts[k] in specials:
                        between.append(run)
                        totals[i] += 1
                        run = parts[k + 1]
                    else:
                        run += parts[k] + parts[k + 1]
                between.append(run)
                between = [b for b in between if b]
            pieces.extend(between)
            owner.extend([i] * len(between))
        if pieces:
            counts = self._quicktok.count_batch(self._enc, pieces)
            summed = np.bincount(np.asarray(owner, dtype=np.int64), weights=counts, minlength=len(texts))
            return [t + int(n) for t, n in zip(totals, summed.tolist(), strict=True)]
        return totals


class TiktokenCounter:
    exact = True

    def __init__(self, encoding: str) -> None:
        import tiktoken  # ImportError handled by get_token_counter

        self._enc = tiktoken.get_encoding(encoding)
        self.name = f"tiktoken:{encoding}"

    def count(self, text: str) -> int:
        return len(self._enc.encode(text, disallowed_special=()))

    def count_many(self, texts: Sequence[str], special: bool = False) -> list[int]:
        allowed = "all" if special else set()
        return [len(ids) for ids in self._enc.encode_batch(list(texts), allowed_special=allowed)]


def _tiktoken(encoding: str) -> TokenCounter:
    try:
        return TiktokenCounter(encoding)
    except Exception as exc:
        if encoding in QUICKTOK_ENCODINGS:
            return QuicktokCounter(encoding)
        reason = (
            "not installed"
            if isinstance(exc, ImportError)
            else f"not available offline ({type(exc).__name__})"
        )
        raise UsageError(
            f"tiktoken encoding {encoding!r}: {reason}",
            hint="put the encoding file in $TIKTOKEN_CACHE_DIR, or use --tokenizer approx",
        ) from None


def get_token_counter(spec: str | None) -> TokenCounter:
    if spec is None or spec in ("", "approx"):
        return ApproxCounter()
    if spec.startswith("quicktok:"):
        return QuicktokCounter(spec.split(":", 1)[1])
    if spec.startswith("tiktoken:"):
        return _tiktoken(spec.split(":", 1)[1])
    path = Path(spec).expanduser()
    if path.exists():
        return HFTokenizerCounter(path)
    raise UsageError(
        f"tokenizer {spec!r} not found",
        hint="give a local tokenizer folder or tokenizer.json, quicktok:<encoding>, tiktoken:<encoding>, or approx",
    )
