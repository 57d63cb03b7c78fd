"""Counting the tokens a provider bills: its own rendering of each example, counted with its tokenizer.

Providers bill different text for the same example. OpenAI counts chat tokens by a published rule (a few
tokens of framing per message); Together and a local run count the model's chat template applied to the
conversation. Each backend converts records to its own format and hands them here with the right counter
and rendering, so that every quote's token figure is the count of the text that will actually be billed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anytune.data.formats import DataFormat
from anytune.data.records import content_text
from anytune.data.tokens import TokenCounter, get_token_counter
from anytune.hookspecs import BillableTokens

Messages = list[dict[str, Any]]
Render = Callable[[Messages], str]
# `{% generation %}` ... `{% endgeneration %}` (any whitespace control) marks assistant text for masking
_GENERATION = re.compile(r"\{%-?\s*(?:end)?generation\s*-?%\}")

# OpenAI's chat framing, from its token-counting guide ("How to count tokens with tiktoken"): every message
# costs 3 tokens besides its role and content, a name 1 more, and the reply is primed with 3.
OPENAI_TOKENS_PER_MESSAGE = 3
OPENAI_TOKENS_PER_NAME = 1
OPENAI_REPLY_PRIMING = 3


# Tokens billed for one pass over a file, and how they were counted: the contract's type.
TokenCount = BillableTokens


def chatml(messages: Messages) -> str:
    return "".join(f"<|im_start|>{m['role']}\n{content_text(m.get('content'))}<|im_end|>\n" for m in messages)


def llama3(messages: Messages) -> str:
    body = "".join(
        f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{content_text(m.get('content'))}<|eot_id|>"
        for m in messages
    )
    return "<|begin_of_text|>" + body


TEMPLATES: dict[str, Render] = {"chatml": chatml, "llama3": llama3}


# the loop variable's plain fields: read on every message by most chat templates (`loop.first`, `loop.last`)
_LOOP_FIELDS = frozenset(
    ("first", "last", "index", "index0", "revindex", "revindex0", "length", "depth", "depth0")
)


def jinja_template(source: str, special: dict[str, str] | None = None) -> Render:
    """A Hugging Face chat template rendered as transformers renders it (sandboxed Jinja, same globals)."""
    from jinja2.runtime import LoopContext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Sandbox(ImmutableSandboxedEnvironment):
        def getattr(self, obj: Any, attribute: str) -> Any:
            # the sandbox's checks pass these (bools and ints of Jinja's own object) and cost a third of a
            # render: 0.2 s per 20,000 chats
            if type(obj) is LoopContext and attribute in _LOOP_FIELDS:
                return getattr(obj, attribute)
            return super().getattr(obj, attribute)

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    env = Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(x, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: __import__("datetime").datetime.now().strftime(fmt)
    # the generation markers render their body unchanged: drop the tags
    template = env.from_string(_GENERATION.sub("", source))
    extra = dict(special or {})
    # what `template.render` builds on every call, built once: its globals (a ChainMap, copied key by key
    # each time: half of a render, 1.5 s per 200,000 chats) as a plain dict under the call's variables
    names = dict(template.globals)
    root = getattr(template, "root_render_func", None)

    def render(messages: Messages) -> str:
        plain = messages  # the sandbox is immutable: the template cannot change them
        if not all(type(m.get("content")) is str for m in messages):
            plain = [{**m, "content": content_text(m.get("content"))} for m in messages]
        if root is None:  # a Jinja without it: its own way
            return template.render(messages=plain, add_generation_prompt=False, **extra)
        variables = {**names, **extra, "messages": plain, "add_generation_prompt": False}
        context = env.context_class(env, variables, template.name, template.blocks, globals=names)
        try:
            return env.concat(root(context))  # type: ignore[attr-defined]
        except Exception:
            env.handle_exception()  # raises it again, as `render` does
            raise

    return render


@dataclass(frozen=True)
class HFTokenizerFiles:
    """A tokenizer folder read without transformers: the counter and its chat template."""

    counter: TokenCounter
    render: Render
    template: str

    @classmethod
    def load(cls, folder: Path, fallback_template: str | None = None) -> HFTokenizerFiles:
        counter = get_token_counter(str(folder))
        source = None
        jinja_file = folder / "chat_template.jinja"
        config: dict[str, Any] = {}
        config_file = folder / "tokenizer_config.json"
        if config_file.exists():
            config = json.loads(config_file.read_text(encoding="utf-8"))
        if jinja_file.exists():
            source = jinja_file.read_text(encoding="utf-8")
        elif isinstance(config.get("chat_template"), str):
            source = config["chat_template"]
        special = {k: v for k, v in config.items() if k in ("bos_token", "eos_token") and isinstance(v, str)}
        if source is None and fallback_template is not None:
            source = fallback_template
        if source is None:
            return cls(counter, chatml, "chatml (the tokenizer has no chat template)")
        return cls(counter, jinja_template(source, special), f"chat template of {folder.name}")


def chat_rule_pieces(record: dict[str, Any]) -> tuple[list[str], int]:
    """(texts to encode, fixed tokens) of one OpenAI-format record under OpenAI's chat token rule."""
    pieces: list[str] = []
    overhead = 0

    def add(messages: Messages) -> None:
        nonlocal overhead
        for m in messages:
            overhead += OPENAI_TOKENS_PER_MESSAGE
            pieces.append(str(m.get("role", "")))
            pieces.append(content_text(m.get("content")))
            if m.get("name"):
                overhead += OPENAI_TOKENS_PER_NAME
                pieces.append(str(m["name"]))
            for call in m.get("tool_calls") or []:
                pieces.append(json.dumps(call.get("function", call), ensure_ascii=False))
        overhead += OPENAI_REPLY_PRIMING

    if "messages" in record:
        add(record["messages"])
        for key in ("tools", "functions"):
            if record.get(key):
                pieces.append(json.dumps(record[key], ensure_ascii=False))
    else:
        # the file holds the prompt once and both answers: that is what is billed
        add(record["input"]["messages"] + record["preferred_output"])
        add(record["non_preferred_output"])
    return pieces, overhead


def chat_rule_counts(records: Sequence[dict[str, Any]], counter: TokenCounter) -> list[int]:
    """Tokens of each OpenAI-format record (chat or preference) by OpenAI's rule, encoded in one batch."""
    pieces: list[str] = []
    spans: list[tuple[int, int, int]] = []
    for record in records:
        texts, overhead = chat_rule_pieces(record)
        spans.append((len(pieces), len(texts), overhead))
        pieces.extend(texts)
    counts = _count(counter, pieces, special=False)
    return [overhead + sum(counts[start : start + n]) for start, n, overhead in spans]


def count_chat_rule(records: Iterable[dict[str, Any]], counter: TokenCounter) -> TokenCount:
    """OpenAI's rule over OpenAI-format records: chat (`messages`, `tools`) or preference (`input`,
    `preferred_output`, `non_preferred_output`)."""
    batch = list(records)
    tokens = sum(chat_rule_counts(batch, counter))
    return TokenCount(tokens=tokens, examples=len(batch), counter=counter.name, exact=counter.exact)


def count_texts(texts: Iterable[str], counter: TokenCounter, *, examples: int | None = None) -> TokenCount:
    """Tokens of rendered texts (special tokens in them count as one each)."""
    batch = list(texts)
    tokens = sum(_count(counter, batch, special=True))
    return TokenCount(
        tokens=tokens,
        examples=examples if examples is not None else len(batch),
        counter=counter.name,
        exact=counter.exact,
    )


def _count(counter: TokenCounter, texts: Sequence[str], *, special: bool, chunk: int = 4096) -> list[int]:
    out: list[int] = []
    for i in range(0, len(texts), chunk):
        out.extend(counter.count_many(texts[i : i + chunk], special=special))
    return out


def example_texts(record: dict[str, Any], fmt: DataFormat, render: Render) -> list[str]:
    """The texts one example is trained (and billed) as, rendered with `render` where they are chats:
    raw text as it is; a string prompt and completion joined; a preference pair as two sequences (the
    prompt with each answer); everything else as one conversation."""
    from anytune.data.convert import convert_record

    if fmt is DataFormat.TEXT:
        return [str(record["text"])]
    if fmt in (DataFormat.PREFERENCE, DataFormat.OPENAI_PREFERENCE):
        pair = convert_record(record, fmt, DataFormat.OPENAI_PREFERENCE)
        prompt = pair["input"]["messages"]
        return [render(prompt + pair["preferred_output"]), render(prompt + pair["non_preferred_output"])]
    if (
        fmt is DataFormat.COMPLETION
        and isinstance(record["prompt"], str)
        and isinstance(record["completion"], str)
    ):
        return [record["prompt"] + record["completion"]]
    return [render(convert_record(record, fmt, DataFormat.CHAT)["messages"])]


def count_examples(path: str, fmt: DataFormat, render: Render, counter: TokenCounter) -> TokenCount:
    """Tokens of every valid example of a data file, rendered with `render` and counted with `counter`."""
    from anytune.data.counting import BatchCounter
    from anytune.data.validate import RecordValidator

    with BatchCounter[None](counter, lambda _items, _counts: None, special=True) as counts:
        for _, record in RecordValidator(path, format=fmt, collect_stats=False):
            counts.add(None, example_texts(record, fmt, render))
    return TokenCount(tokens=counts.tokens, examples=counts.items, counter=counter.name, exact=counter.exact)


# Open-weight model families whose tokenizer ships with quicktok, and the chat template they render with.
FAMILIES: dict[str, tuple[str, str]] = {"llama3": ("llama3", "llama3"), "qwen": ("qwen3", "chatml")}
_FAMILY_PATTERNS = (
    (re.compile(r"llama[-_ ]?3", re.I), "llama3"),
    (re.compile(r"qwen[-_ ]?(2\.5|3)", re.I), "qwen"),
)


def family_of(model: str) -> str | None:
    """The tokenizer family of an open-weight model named like Meta-Llama-3.1-8B or Qwen2.5-7B-Instruct."""
    name = model.rsplit("/", 1)[-1]
    return next((family for pattern, family in _FAMILY_PATTERNS if pattern.search(name)), None)


def counter_for_family(family: str | None) -> tuple[TokenCounter, Render, str]:
    """(counter, chat rendering, template name) for a family; the 4-characters estimate when unknown."""
    from anytune.data.tokens import ApproxCounter
    from anytune.errors import UsageError

    if family in FAMILIES:
        encoding, template = FAMILIES[family]
        try:
            return get_token_counter(f"quicktok:{encoding}"), TEMPLATES[template], template
        except UsageError:
            pass
    return ApproxCounter(), chatml, "chatml"
