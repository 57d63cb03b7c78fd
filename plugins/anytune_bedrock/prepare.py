"""Turning validated data into the layout each Bedrock model trains on, and checking Bedrock's limits first.

- Nova (and the retired Claude 3 Haiku): `bedrock-conversation-2024`, `{"schemaVersion", "system": [{"text"}],
  "messages": [{"role", "content": [{"text"}]}]}`: turns alternate, start with the user and end with the
  assistant; a system prompt only first.
- Llama: `{"prompt", "completion"}` for fine-tuning (the conversation before the last answer, and the answer);
  `{"input"}` for continued pre-training on raw text.

Every record Bedrock would refuse (a broken alternation, more tokens than the model takes per record) is named
with the line of the user's file, and the record counts are checked against the model's range, before
anything reaches S3."""

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
    Method,
    PreparedData,
    PreparedWriter,
    Problem,
    RecordValidator,
    as_messages,
    cache_dir,
    content_text,
    counter_for_family,
    instruction_prompt,
    prepare_splits,
    rft_example,
)
from anytune_bedrock.catalog import BedrockModel

SCHEMA = "bedrock-conversation-2024"
MAX_FILE_BYTES = 1024**3  # one training file, per Bedrock's quotas page


def _messages(record: dict[str, Any], fmt: DataFormat) -> list[dict[str, Any]]:
    if fmt is DataFormat.INSTRUCTION:
        return [
            {"role": "user", "content": instruction_prompt(record)},
            {"role": "assistant", "content": record["output"]},
        ]
    if fmt is DataFormat.COMPLETION:
        return as_messages(record["prompt"], "user") + as_messages(record["completion"], "assistant")
    if fmt is DataFormat.CHAT:
        return list(record["messages"])
    raise ConversionError(f"{fmt.value} data cannot be a Bedrock fine-tuning record")


def _turns(messages: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, str]]]:
    system = None
    turns = []
    for i, m in enumerate(messages):
        role, text = m.get("role"), content_text(m.get("content"))
        if role == "system":
            if i:
                raise ConversionError("a system message after the first; Bedrock takes one, first")
            system = text
        elif role in ("user", "assistant"):
            if not text.strip():  # an image, tool calls: nothing Bedrock's text models train on
                said = "the answer" if role == "assistant" else "a user message"
                raise ConversionError(
                    f"{said} has no text (only images or tool calls); Bedrock trains on text"
                )
            turns.append({"role": str(role), "text": text})
        else:
            raise ConversionError(f"role {str(role)[:20]!r}: Bedrock takes system, user and assistant")
    if not turns or turns[0]["role"] != "user":
        raise ConversionError("a conversation must start with a user message for Bedrock")
    for a, b in itertools.pairwise(turns):
        if a["role"] == b["role"]:
            raise ConversionError(f"two {a['role']} messages in a row; Bedrock needs turns to alternate")
    if turns[-1]["role"] != "assistant":
        raise ConversionError("a conversation must end with the assistant's answer for Bedrock")
    return system, turns


def to_bedrock(
    record: dict[str, Any], fmt: DataFormat, layout: str, method: Method
) -> tuple[dict[str, Any], list[str]]:
    """(Bedrock record, the texts it bills) for one valid anytune record; ConversionError if Bedrock would
    refuse it."""
    if method is Method.RFT:  # OpenAI's chat layout, the grader's item as `reference_answer`
        prompt, item = rft_example(record, fmt)
        messages = [{"role": m["role"], "content": content_text(m.get("content"))} for m in prompt]
        if not messages or messages[-1]["role"] != "user":
            raise ConversionError("an RFT prompt must end with the user's message for Bedrock")
        return {"messages": messages, "reference_answer": item}, [m["content"] for m in messages]
    if method is Method.CPT:
        if fmt is not DataFormat.TEXT:
            raise ConversionError('continued pre-training takes raw text records ({"text": ...})')
        return {"input": record["text"]}, [record["text"]]
    system, turns = _turns(_messages(record, fmt))
    if layout == "prompt-completion":
        context = ([system] if system else []) + [t["text"] for t in turns[:-1]]
        prompt, completion = "\n\n".join(context), turns[-1]["text"]
        return {"prompt": prompt, "completion": completion}, [prompt, completion]
    out: dict[str, Any] = {
        "schemaVersion": SCHEMA,
        "messages": [{"role": t["role"], "content": [{"text": t["text"]}]} for t in turns],
    }
    if system:
        out["system"] = [{"text": system}]
    return out, ([system] if system else []) + [t["text"] for t in turns]


def prepare(provider: str, spec: JobSpec, data: DataBundle, model: BedrockModel) -> PreparedData:
    counter, _render, _template = counter_for_family(model.family)
    return prepare_splits(
        provider,
        data,
        lambda ref, split: _prepare_split(ref, split, spec, model, counter),
        counter=counter,
        notes=[] if counter.exact else [f"no offline tokenizer for {model.family}: an estimate"],
    )


def _prepare_split(
    ref: DatasetRef, split: str, spec: JobSpec, model: BedrockModel, counter: Any
) -> tuple[Any, int, int, list[Problem]]:
    field = f"data.{split}"
    problems: list[Problem] = []
    method = spec.method_type
    written = kept = 0

    def write(items: list[tuple[int, dict[str, Any]]], counts: list[int]) -> None:
        nonlocal written, kept
        for (line, out), n in zip(items, counts, strict=True):
            if n > model.max_record_tokens:
                problems.append(
                    Problem(
                        "error",
                        field,
                        f"{'~' if not counter.exact else ''}{n:,} tokens; {model.id} takes "
                        f"{model.max_record_tokens:,} per record",
                        file=ref.path,
                        line=line,
                    )
                )
                continue
            writer.write(out)
            written += n
            kept += 1

    counts = BatchCounter[tuple[int, dict[str, Any]]](counter, write, special=True)
    with PreparedWriter(cache_dir("bedrock", "data"), format=model.layout) as writer, counts:
        for line, record in RecordValidator(ref.path, format=ref.format, collect_stats=False):
            try:
                out, texts = to_bedrock(record, ref.format, model.layout, method)
            except ConversionError as exc:
                problems.append(Problem("error", field, str(exc), file=ref.path, line=line))
                continue
            counts.add((line, out), texts)
        counts.close()
        problems.sort(key=lambda p: p.line or 0)
        tokens, examples = written, kept
        low, high = model.records
        if split == "train" and not low <= examples <= high and not problems:
            problems.append(
                Problem(
                    "error",
                    field,
                    f"{examples:,} records; {model.id} trains on {low:,} to {high:,}",
                    file=ref.path,
                )
            )
        if writer.size > MAX_FILE_BYTES:
            problems.append(Problem("error", field, "over 1 GB; Bedrock takes 1 GB per file", file=ref.path))
        result = None if any(p.is_error for p in problems) else writer.finish()
    return result, tokens, examples, problems
