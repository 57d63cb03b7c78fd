"""Turning validated data into Together's formats, and checking Together's rules first.

Together takes one of four formats per file: conversational (`messages`), instruction (`prompt` /
`completion`), generic text (`text`) and preference (OpenAI's `input` / `preferred_output` /
`non_preferred_output`). Conversations must start with a system or user message and alternate user and
assistant turns; that is checked here, with the line of the user's file, before any upload. The file is named
after its content hash; Together itself recognises a repeated upload by its sha256 checksum. The rows of
one file must all map to one format: a file mixing plain-string and message completions is refused with
the line that breaks the rule.
"""

from __future__ import annotations

import itertools
from typing import Any

from anytune.plugin import (
    BatchCounter,
    ConversionError,
    DataBundle,
    DataFormat,
    DatasetRef,
    JobSpec,
    PreparedData,
    PreparedFile,
    PreparedWriter,
    Problem,
    RecordValidator,
    TokenCounter,
    as_messages,
    cache_dir,
    convert_record,
    counter_for_family,
    instruction_prompt,
    normalize_messages,
    prepare_splits,
)


def _plain(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Together's conversational messages: role, content, and a per-message `weight` where set."""
    return normalize_messages(messages, keep=("weight",))


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


def prepare(provider: str, spec: JobSpec, data: DataBundle, family: str | None) -> PreparedData:
    """Every split Together trains on, as a Together file, with the tokens it processes per pass and the
    lines Together would refuse."""
    counter, render, template = counter_for_family(family)
    bos = "<|begin_of_text|>" if family == "llama3" else ""
    return prepare_splits(
        provider,
        data,
        lambda ref, split: _prepare_split(ref, split, render, bos, counter),
        counter=counter,
        notes=[f"conversations rendered with the {template} chat template"],
    )


def _billed_texts(kind: str, out: dict[str, Any], render: Any, bos: str) -> list[str]:
    """What Together trains on for one record: raw text and instructions after the begin-of-text token,
    conversations through the model's chat template, the prompt with each answer of a preference pair."""
    if kind == "general":
        return [bos + out["text"]]
    if kind == "instruction":
        return [bos + out["prompt"] + out["completion"]]
    if kind == "preference":
        prompt = out["input"]["messages"]
        return [render(prompt + out["preferred_output"]), render(prompt + out["non_preferred_output"])]
    return [render(out["messages"])]


def _prepare_split(
    ref: DatasetRef, split: str, render: Any, bos: str, counter: TokenCounter
) -> tuple[PreparedFile | None, int, int, list[Problem]]:
    field = f"data.{split}"
    problems: list[Problem] = []
    counts = BatchCounter[None](counter, lambda _items, _counts: None, special=True)
    first: tuple[str, int] | None = None  # Together takes one format per file: the first row's decides
    writer = PreparedWriter(cache_dir("together", "uploads"), format="")
    with writer, counts:
        for line, record in RecordValidator(ref.path, format=ref.format, collect_stats=False):
            try:
                kind, out = to_together(record, ref.format)
            except ConversionError as exc:
                problems.append(Problem("error", field, str(exc), file=ref.path, line=line))
                continue
            if first is None:
                first = (kind, line)
                writer.format = kind
            elif kind != first[0]:
                problems.append(
                    Problem(
                        "error",
                        field,
                        f"a {kind} example, but line {first[1]} is a {first[0]} one; Together takes one format "
                        "per file (write every completion as plain strings, or every one as messages)",
                        file=ref.path,
                        line=line,
                    )
                )
                continue
            writer.write(out)
            counts.add(None, _billed_texts(kind, out, render, bos))
        counts.close()
        if first is None and not problems:
            problems.append(Problem("error", field, "no examples", file=ref.path))
        result = None if problems else writer.finish()
    return result, counts.tokens, counts.items, problems
