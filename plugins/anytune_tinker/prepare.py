"""A Tinker job's data as the loop reads it: each line a chat (`messages`) ending with the answer to learn,
written to a content-named file, counted with the base model's tokenizer family (an estimate: the loop counts
the exact tokens, step by step, as it renders them)."""

from __future__ import annotations

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
    cache_dir,
    convert_record,
    counter_for_family,
    family_of,
    prepare_splits,
    rft_example,
)


def rft_line(record: dict[str, Any], fmt: DataFormat) -> dict[str, Any]:
    """An RFT line: the prompt the policy answers, and the item its grader reads."""
    prompt, item = rft_example(record, fmt)
    if not prompt or prompt[-1].get("role") != "user":
        raise ConversionError("an RFT prompt must end with the user's message")
    return {"messages": prompt, "item": item}


def chat_line(record: dict[str, Any], fmt: DataFormat) -> dict[str, Any]:
    messages = convert_record(record, fmt, DataFormat.CHAT)["messages"]
    if not messages or messages[-1].get("role") != "assistant":
        raise ConversionError("a Tinker SFT line must end with the assistant's answer")
    return {"messages": messages}


def prepare(provider: str, spec: JobSpec, data: DataBundle) -> PreparedData:
    counter, render, template = counter_for_family(family_of(spec.model_for(provider)))
    return prepare_splits(
        provider,
        data,
        lambda ref, split: _prepare_split(
            ref, split, counter, render, rft_line if spec.method_type is Method.RFT else chat_line
        ),
        counter=counter,
        notes=[f"examples rendered with the {template} chat template to count them; the loop counts exactly"],
    )


def _prepare_split(
    ref: DatasetRef, split: str, counter: Any, render: Any, convert: Any
) -> tuple[Any, int, int, list[Problem]]:
    problems: list[Problem] = []
    counts = BatchCounter[int](counter, lambda _lines, _counts: None, special=True)
    with PreparedWriter(cache_dir("tinker", "data"), format="chat") as writer, counts:
        for line, record in RecordValidator(ref.path, format=ref.format, collect_stats=False):
            try:
                out = convert(record, ref.format)
            except ConversionError as exc:
                problems.append(Problem("error", f"data.{split}", str(exc), file=ref.path, line=line))
                continue
            writer.write(out)
            counts.add(line, [render(out["messages"])])
        counts.close()
        result = None if problems or not counts.items else writer.finish()
    return result, counts.tokens, counts.items, problems
