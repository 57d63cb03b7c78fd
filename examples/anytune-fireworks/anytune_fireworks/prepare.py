"""Turning validated data into Fireworks' dataset formats, and checking Fireworks' rules first.

Fireworks trains SFT on conversations (`messages`: system, user and assistant roles, a system message only
first, an optional per-message `weight` of 0 or 1) and DPO on OpenAI's preference layout (`input.messages`,
`preferred_output`, `non_preferred_output`). A dataset holds 3 to 3,000,000 examples; a file up to 150 MB
goes up in one request (larger ones need Fireworks' signed-URL upload, which this plugin does not do yet).
Every record Fireworks would refuse is named here with the line of the user's file, before any upload."""

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
    TokenCounter,
    as_messages,
    cache_dir,
    convert_record,
    counter_for_family,
    instruction_prompt,
    normalize_messages,
    prepare_splits,
    rft_example,
)

MAX_EXAMPLES = 3_000_000
MAX_UPLOAD_BYTES = 150 * 1024 * 1024
ROLES = ("system", "user", "assistant")


def _messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = normalize_messages(messages, keep=("weight",))
    for i, m in enumerate(out):
        if m.get("role") not in ROLES:
            raise ConversionError(
                f"role {str(m.get('role'))[:20]!r}: Fireworks takes system, user and assistant"
            )
        if m["role"] == "system" and i:
            raise ConversionError("a system message after the first; Fireworks takes one, first")
        if "weight" in m and m["weight"] not in (0, 1):
            raise ConversionError("a message weight other than 0 or 1")
    return out


def to_fireworks(record: dict[str, Any], fmt: DataFormat, rft: bool = False) -> tuple[str, dict[str, Any]]:
    """(kind, Fireworks record) for one valid anytune record; ConversionError if Fireworks would refuse it.
    For RFT: the prompt as `messages`, the answer as `ground_truth` and the line's other fields beside them
    (Fireworks hands a row's fields to the evaluator)."""
    if rft:
        prompt, item = rft_example(record, fmt)
        fields = {k: v for k, v in item.items() if k not in ("reference", "messages")}
        return "rl", {"messages": _messages(prompt), "ground_truth": item["reference"], **fields}
    if fmt in (DataFormat.PREFERENCE, DataFormat.OPENAI_PREFERENCE):
        out = convert_record(record, fmt, DataFormat.OPENAI_PREFERENCE)
        return "preference", {
            "input": {"messages": _messages(out["input"]["messages"])},
            "preferred_output": _messages(out["preferred_output"]),
            "non_preferred_output": _messages(out["non_preferred_output"]),
        }
    if fmt is DataFormat.INSTRUCTION:
        messages = [
            {"role": "user", "content": instruction_prompt(record)},
            {"role": "assistant", "content": record["output"]},
        ]
    elif fmt is DataFormat.COMPLETION:
        messages = as_messages(record["prompt"], "user") + as_messages(record["completion"], "assistant")
    elif fmt is DataFormat.CHAT:
        messages = record["messages"]
    else:
        raise ConversionError(f"{fmt.value} data: Fireworks fine-tunes on conversations or preference pairs")
    messages = _messages(messages)
    if not any(m["role"] == "assistant" for m in messages):
        raise ConversionError("no assistant message to learn from")
    return "chat", {"messages": messages}


def prepare(provider: str, spec: JobSpec, data: DataBundle, family: str | None, context: int) -> PreparedData:
    """Every split as a Fireworks dataset file, with its billable tokens and the lines Fireworks would refuse."""
    counter, render, template = counter_for_family(family)
    return prepare_splits(
        provider,
        data,
        lambda ref, split: _prepare_split(
            ref, split, render, counter, context, spec.method_type is Method.RFT
        ),
        counter=counter,
        notes=[f"examples rendered with the {template} chat template"],
    )


def _texts(kind: str, out: dict[str, Any], render: Any) -> list[str]:
    if kind == "preference":
        prompt = out["input"]["messages"]
        return [render(prompt + out["preferred_output"]), render(prompt + out["non_preferred_output"])]
    return [render(out["messages"])]


def _prepare_split(
    ref: DatasetRef, split: str, render: Any, counter: TokenCounter, context: int, rft: bool = False
) -> tuple[Any, int, int, list[Problem]]:
    field = f"data.{split}"
    problems: list[Problem] = []
    long = 0

    def check(lines: list[int], counts: list[int]) -> None:
        nonlocal long
        for line, n in zip(lines, counts, strict=True):
            if n > context and long < 20:
                long += 1
                problems.append(
                    Problem(
                        "warning",
                        field,
                        f"{n:,} tokens, over the {context:,}-token max context length; Fireworks cuts it",
                        file=ref.path,
                        line=line,
                    )
                )

    counts = BatchCounter[int](counter, check, special=True)
    with PreparedWriter(cache_dir("fireworks", "datasets"), format="") as writer, counts:
        for line, record in RecordValidator(ref.path, format=ref.format, collect_stats=False):
            try:
                kind, out = to_fireworks(record, ref.format, rft)
            except ConversionError as exc:
                problems.append(Problem("error", field, str(exc), file=ref.path, line=line))
                continue
            writer.format = kind
            writer.write(out)
            counts.add(line, _texts(kind, out, render))
        counts.close()
        problems.sort(key=lambda p: p.line or 0)
        tokens, examples = counts.tokens, counts.items
        if examples > MAX_EXAMPLES:
            problems.append(
                Problem(
                    "error", field, f"{examples:,} examples; Fireworks takes {MAX_EXAMPLES:,}", file=ref.path
                )
            )
        if writer.size > MAX_UPLOAD_BYTES:
            problems.append(
                Problem(
                    "error",
                    field,
                    f"{writer.size / 2**20:.0f} MB as a Fireworks dataset; this plugin uploads up to 150 MB "
                    "(Fireworks' one-request upload)",
                    file=ref.path,
                )
            )
        errors = [p for p in problems if p.is_error]
        result = None if errors or not examples else writer.finish()
    return result, tokens, examples, problems
