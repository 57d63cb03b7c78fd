"""Turning validated data into the JSONL OpenAI takes, and checking OpenAI's own limits first.

Every anytune format converts: chat stays chat, instruction and completion become chat, preference data
becomes OpenAI's `input` / `preferred_output` / `non_preferred_output`. One pass over each split converts
each record once, counts its tokens by OpenAI's chat rule with the model's encoding (the per-example cap
and the quote both come from that count), names every line OpenAI would refuse, and writes the file under
a name derived from its content, which is how an upload is found again instead of being repeated.
"""

from __future__ import annotations

from typing import Any

from anytune.plugin import (
    ApproxCounter,
    BatchCounter,
    BillableTokens,
    ConversionError,
    DataBundle,
    DataFormat,
    DatasetRef,
    JobSpec,
    Method,
    PreparedData,
    PreparedFile,
    PreparedWriter,
    Problem,
    RecordValidator,
    TokenCounter,
    UsageError,
    cache_dir,
    chat_rule_pieces,
    convert_record,
    get_token_counter,
)
from anytune_openai.catalog import OpenAIModel
from anytune_openai.graders import rft_line

MAX_FILE_BYTES = 512 * 1024 * 1024
_CHAT_KEYS = ("messages", "tools", "parallel_tool_calls", "functions")
_PREFERENCE_KEYS = ("input", "preferred_output", "non_preferred_output")


def _openai_record(record: dict[str, Any], fmt: DataFormat, method: Method) -> dict[str, Any]:
    if method is Method.RFT:
        line = rft_line(record, fmt)
        if not line["messages"] or line["messages"][-1].get("role") != "user":
            raise ConversionError(
                "an RFT prompt must end with the user's message (the answer is the model's)"
            )
        return line
    target = DataFormat.OPENAI_PREFERENCE if method is Method.DPO else DataFormat.CHAT
    out = convert_record(record, fmt, target)
    keep = _PREFERENCE_KEYS if target is DataFormat.OPENAI_PREFERENCE else _CHAT_KEYS
    return {k: out[k] for k in keep if k in out}


def billing_counter(model: OpenAIModel) -> TokenCounter:
    """The model's own encoding (bundled with quicktok, identical to tiktoken), or a marked estimate."""
    try:
        return get_token_counter(f"quicktok:{model.encoding}")
    except UsageError:
        return ApproxCounter()


def prepare(
    provider: str,
    spec: JobSpec,
    data: DataBundle,
    model: OpenAIModel,
    max_bytes: int | None = MAX_FILE_BYTES,
    rft_needs_validation: bool = False,
) -> PreparedData:
    """Every split OpenAI trains on, as an OpenAI file, with its billed tokens and OpenAI's refusals.
    `max_bytes`: the largest file the service takes (None: no limit, e.g. Azure importing from Blob Storage).
    `rft_needs_validation`: an RFT job without a validation file is refused (Azure's rule)."""
    prepared = PreparedData(provider=provider, data=data)
    if rft_needs_validation and spec.method_type is Method.RFT and data.validation is None:
        prepared.problems.append(
            Problem(
                "error",
                "data.validation",
                "reinforcement fine-tuning here needs a validation file: set data.validation, or data.split "
                "to carve one from the training data",
            )
        )
    counter = billing_counter(model)
    for split in ("train", "validation"):
        ref = getattr(data, split)
        if ref is None:
            continue
        prepared_file, tokens, problems = _prepare_split(
            ref, split, spec.method_type, model, counter, max_bytes
        )
        prepared.problems.extend(problems)
        if prepared_file is not None:
            prepared.files[split] = prepared_file
        prepared.tokens[split] = tokens
    return prepared


def _prepare_split(
    ref: DatasetRef,
    split: str,
    method: Method,
    model: OpenAIModel,
    counter: TokenCounter,
    max_bytes: int | None,
) -> tuple[PreparedFile | None, BillableTokens, list[Problem]]:
    about = "" if counter.exact else "about "
    field = f"data.{split}"
    problems: list[Problem] = []

    def check(items: list[tuple[int, int]], counts: list[int]) -> None:
        for (line, overhead), n in zip(items, counts, strict=True):
            if n + overhead > model.max_example_tokens:
                problems.append(
                    Problem(
                        "error",
                        field,
                        f"{about}{n + overhead:,} tokens; {model.id} trains on at most "
                        f"{model.max_example_tokens:,} per example",
                        file=ref.path,
                        line=line,
                    )
                )

    folder = cache_dir("openai", "uploads")
    overheads = 0  # OpenAI's fixed tokens per message and per example
    counts = BatchCounter[tuple[int, int]](counter, check)
    with PreparedWriter(folder, format="preference" if method is Method.DPO else "chat") as writer, counts:
        for line, record in RecordValidator(ref.path, format=ref.format, collect_stats=False):
            try:
                row = _openai_record(record, ref.format, method)
            except ConversionError as exc:
                problems.append(
                    Problem("error", field, f"cannot be sent to OpenAI: {exc}", file=ref.path, line=line)
                )
                continue
            writer.write(row)
            pieces, overhead = chat_rule_pieces(row)
            counts.add((line, overhead), pieces)
            overheads += overhead
        counts.close()
        problems.sort(key=lambda p: p.line or 0)  # conversion and length problems, in the file's order
        if max_bytes is not None and writer.size > max_bytes:
            problems.append(
                Problem(
                    "error",
                    field,
                    f"the converted file ({writer.size:,} bytes) is over the {max_bytes:,}-byte limit for one file",
                    file=ref.path,
                )
            )
        result = None if any(p.is_error for p in problems) else writer.finish()
    total, examples = counts.tokens + overheads, counts.items
    tokens = BillableTokens(tokens=total, examples=examples, counter=counter.name, exact=counter.exact)
    return result, tokens, problems
