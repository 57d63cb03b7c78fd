"""Turning validated data into Together's formats, and checking Together's rules first.

Together takes one of four formats per file: conversational (`messages`), instruction (`prompt` /
`completion`), generic text (`text`) and preference (OpenAI's `input` / `preferred_output` /
`non_preferred_output`). Conversations must start with a system or user message and alternate user and
assistant turns; that is checked here, with the line of the user's file, before any upload. The file is named
after its content hash; Together itself recognises a repeated upload by its sha256 checksum.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anytune.cost.billing import TokenCount, count_texts, counter_for_family
from anytune.data.convert import ConversionError, convert_record, write_jsonl_atomic
from anytune.data.formats import DataFormat
from anytune.data.records import as_messages, content_text, instruction_prompt
from anytune.data.validate import RecordValidator
from anytune.errors import DataError
from anytune.hookspecs import DatasetRef
from anytune.settings import cache_dir


@dataclass(frozen=True)
class PreparedFile:
    path: Path
    rows: int
    kind: str  # conversation | instruction | general | preference


def _plain(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        message = {"role": m["role"], "content": content_text(m.get("content"))}
        if "weight" in m:
            message["weight"] = m["weight"]
        out.append(message)
    return out


def _alternation_problem(messages: list[dict[str, Any]]) -> str | None:
    roles = [m.get("role") for m in messages]
    if not roles or roles[0] not in ("system", "user"):
        return "a conversation must start with a system or user message for Together"
    turns = [r for r in roles if r != "system"]
    for a, b in itertools.pairwise(turns):
        if a == b and a in ("user", "assistant"):
            return f"two {a} messages in a row; Together needs user and assistant turns to alternate"
    return None


def to_together(record: dict[str, Any], fmt: DataFormat) -> tuple[str, dict[str, Any]]:
    """(Together format, record) for one valid anytune record; ConversionError if it cannot be expressed."""
    if fmt is DataFormat.TEXT:
        return "general", {"text": record["text"]}
    if fmt in (DataFormat.PREFERENCE, DataFormat.OPENAI_PREFERENCE):
        out = convert_record(record, fmt, DataFormat.OPENAI_PREFERENCE)
        return "preference", {
            "input": {"messages": _plain(out["input"]["messages"])},
            "preferred_output": _plain(out["preferred_output"]),
            "non_preferred_output": _plain(out["non_preferred_output"]),
        }
    if fmt is DataFormat.INSTRUCTION:
        return "instruction", {"prompt": instruction_prompt(record), "completion": record["output"]}
    if (
        fmt is DataFormat.COMPLETION
        and isinstance(record["prompt"], str)
        and isinstance(record["completion"], str)
    ):
        return "instruction", {"prompt": record["prompt"], "completion": record["completion"]}
    if fmt is DataFormat.COMPLETION:
        messages = as_messages(record["prompt"], "user") + as_messages(record["completion"], "assistant")
    else:
        messages = record["messages"]
    messages = _plain(messages)
    problem = _alternation_problem(messages)
    if problem:
        raise ConversionError(problem)
    return "conversation", {"messages": messages}


def count_billed_tokens(ref: DatasetRef, family: str | None) -> TokenCount:
    """Tokens Together processes for one pass over `ref`: each record in the format it is uploaded in, with the
    model family's chat template for conversations, its begin-of-text token for raw text and instructions,
    and the prompt with each answer for preference pairs."""
    counter, render, template = counter_for_family(family)
    bos = "<|begin_of_text|>" if family == "llama3" else ""
    texts: list[str] = []
    examples = 0
    for _, record in RecordValidator(ref.path, format=ref.format, collect_stats=False):
        try:
            kind, out = to_together(record, ref.format)
        except ConversionError:
            continue  # refused at submit, with its line; the quote prices what can be sent
        examples += 1
        if kind == "general":
            texts.append(bos + out["text"])
        elif kind == "instruction":
            texts.append(bos + out["prompt"] + out["completion"])
        elif kind == "preference":
            prompt = out["input"]["messages"]
            texts += [render(prompt + out["preferred_output"]), render(prompt + out["non_preferred_output"])]
        else:
            texts.append(render(out["messages"]))
    count = count_texts(texts, counter, examples=examples)
    count.notes.append(f"conversations rendered with the {template} chat template")
    return count


def prepare_file(ref: DatasetRef, split: str) -> PreparedFile:
    problems: list[str] = []
    rows: list[dict[str, Any]] = []
    kinds: set[str] = set()
    validator = RecordValidator(ref.path, format=ref.format, collect_stats=False)
    for line, record in validator:
        try:
            kind, out = to_together(record, ref.format)
        except ConversionError as exc:
            problems.append(f"{ref.path}:{line}: {exc}")
            continue
        kinds.add(kind)
        rows.append(out)
    if validator.report.errors:
        problems.append(
            f"{ref.path}: {validator.report.errors} invalid record(s); run `anytune validate {ref.path}`"
        )
    if not rows and not problems:
        problems.append(f"{ref.path}: no examples")
    if problems:
        raise DataError(
            f"{ref.path}: the {split} data does not meet Together's rules ({len(problems)} problem(s)); "
            "nothing was uploaded",
            details=problems[:200],
        )
    folder = cache_dir("together", "uploads")
    tmp = folder / f".{ref.fingerprint.removeprefix('sha256:')}.jsonl"
    write_jsonl_atomic(tmp, rows)
    final = folder / f"anytune-{hashlib.sha256(tmp.read_bytes()).hexdigest()[:32]}.jsonl"
    tmp.replace(final)
    return PreparedFile(final, len(rows), kinds.pop())
